"""Running ``fomm motion`` in an external Python without blocking Blender (no bpy here).

Blender's own Python has no torch, so the add-on starts the project's command line in the
Python the user names in the preferences, reads its ``--progress lines`` output on a
background thread, and lets the UI poll the job from a timer. Nothing here blocks: cancelling
sends the process a stop request and returns, and the next poll collects the process.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .motion_format import MOTION_SUFFIX, side_files

# Stages `fomm motion --progress lines` reports, in order; each takes an equal share.
_STAGES = ("motion",)
# A cancelled process that has not exited this many seconds after the stop request is killed.
KILL_AFTER = 5.0


def unused_motion_path(folder: Path, base: str) -> Path:
    """``<folder>/<base>.fomm.json``, or ``<base>.001.fomm.json``... when that name or the
    side files ``fomm motion`` writes beside it (``<name>.source.png``, ``<name>_frames/``)
    are taken."""
    for number in range(1000):
        path = folder / (f"{base}{MOTION_SUFFIX}" if number == 0 else f"{base}.{number:03d}{MOTION_SUFFIX}")
        if not any(taken.exists() for taken in (path, *side_files(path))):
            return path
    raise ValueError(f"{folder} already holds 1000 motion files named {base}.*: remove old ones or choose a Motion File")


@dataclass(frozen=True)
class RunRequest:
    python: str
    source: str
    driving: str
    output: str
    checkpoint: str = "default"
    absolute: bool = False
    flow: bool = False
    frames: bool = False
    max_frames: int = 0  # 0: every frame

    def command(self) -> list[str]:
        command = [
            self.python, "-m", "fomm_model", "motion", self.source, self.driving,
            "-o", self.output, "--checkpoint", self.checkpoint, "--progress", "lines",
        ]
        if self.absolute:
            command.append("--absolute")
        if self.flow:
            command.append("--flow")
        if self.frames:
            command.append("--frames")
        if self.max_frames:
            command += ["--max-frames", str(self.max_frames)]
        return command

    def problems(self) -> list[str]:
        """What keeps this request from running, in words for the user."""
        found = []
        if not self.python:
            found.append("set the Python that has the fomm package in Preferences > Add-ons > FOMM Motion")
        elif Path(self.python).is_dir():
            found.append(
                f"the Python set in Preferences > Add-ons > FOMM Motion ({self.python}) is a folder: choose the python "
                "program in it (bin/python, or Scripts\\python.exe on Windows)"
            )
        elif not Path(self.python).is_file():
            found.append(f"the Python {self.python} set in the add-on preferences does not exist")
        elif Path(self.python).stem.lower() == "fomm":
            found.append(
                f"the Python set in Preferences > Add-ons > FOMM Motion is the fomm command ({self.python}): "
                f"choose the python beside it ({Path(self.python).with_name('python')})"
            )
        elif sys.platform != "win32" and not os.access(self.python, os.X_OK):
            found.append(
                f"the Python set in Preferences > Add-ons > FOMM Motion ({self.python}) is not a program: choose "
                "the python of the environment fomm is installed in (e.g. the project's .venv/bin/python)"
            )
        if not self.source or not Path(self.source).is_file():
            found.append(f"source image {self.source or '(not set)'} not found")
        if not self.driving or not Path(self.driving).exists():  # a video, or a folder of frames
            found.append(f"driving video {self.driving or '(not set)'} not found")
        if not self.output:
            found.append("choose where to write the motion file")
        elif Path(self.output).suffix.lower() != ".json":
            found.append(f"the Motion File {self.output} is not named .json: name it like take.fomm.json")
        return found


class FommJob:
    """One ``fomm motion`` process: progress, messages, cancel."""

    def __init__(self, request: RunRequest):
        problems = request.problems()
        if problems:
            raise ValueError("; ".join(problems))
        try:
            Path(request.output).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(
                f"cannot make the folder for the motion file {request.output} ({exc.strerror}): choose another Motion File"
            ) from None
        self.request = request
        self.fraction = 0.0
        self.stage = "starting"
        self.cancelled = False
        self._cancelled_at: float | None = None
        self._errors: collections.deque[str] = collections.deque(maxlen=40)
        self._warnings: list[str] = []
        self._process = subprocess.Popen(
            request.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            # The command's messages are UTF-8 whatever the system's code page (Windows), and a
            # stray byte must not stop the reader threads.
            text=True, encoding="utf-8", errors="replace", bufsize=1, env={**os.environ, "PYTHONUTF8": "1"},
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0,
        )
        self._readers = [
            threading.Thread(target=self._read_progress, daemon=True),
            threading.Thread(target=self._read_errors, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def running(self) -> bool:
        """Whether the process is still alive. Polled by Blender's timer, so this is also where
        a cancelled process that ignored the stop request for :data:`KILL_AFTER` seconds is
        killed (its exit is collected by a later poll)."""
        if self._process.poll() is not None:
            return False
        if self._cancelled_at is not None and time.monotonic() - self._cancelled_at > KILL_AFTER:
            self._process.kill()
        return True

    @property
    def succeeded(self) -> bool:
        """Exited 0 and wrote the motion file (a Python that is no fomm may exit 0 having done nothing)."""
        return not self.running and self._process.returncode == 0 and not self.cancelled and Path(self.request.output).is_file()

    def wait(self, timeout: float | None = None) -> int:
        """Block until the process exits (background mode and tests; the UI polls instead)."""
        code = self._process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def cancel(self) -> None:
        """Ask the process to stop and return at once: Blender's UI thread must not wait.
        ``running`` turns False when it has exited."""
        if self._process.poll() is not None or self.cancelled:
            return
        self.cancelled = True
        self._cancelled_at = time.monotonic()
        self._process.terminate()

    def error(self) -> str:
        """The command's own error message (its last stderr line), or what its exit means."""
        if self.cancelled:
            return "cancelled"
        for reader in self._readers:  # the process has exited; let the readers take its last lines
            reader.join(1)
        code = self._process.returncode
        if code == 0:
            return (
                f"{self.request.python} exited without writing {self.request.output}: in Preferences > Add-ons > "
                "FOMM Motion choose the python of the environment fomm is installed in"
            )
        if code is not None and code < 0 and -code == getattr(signal, "SIGKILL", 9):  # whatever it printed before
            return "fomm motion was killed (out of memory?): try a shorter video (Max Frames) or close other programs"
        lines = [line.strip() for line in self._errors if line.strip()]
        for line in reversed(lines):
            if "error:" in line:  # the command's own message
                return line
        missing = next((line for line in lines if "No module named" in line), None)
        if missing is not None:  # "python -m fomm_model" without the package, or without torch
            return (
                f"{self.request.python} cannot run fomm ({missing}): in Preferences > Add-ons > FOMM Motion choose "
                "the python of the environment fomm is installed in (e.g. the project's .venv), or pip install fomm there"
            )
        return lines[-1] if lines else f"fomm motion exited with status {code}"

    def warnings(self) -> list[str]:
        """The command's warnings (``fomm motion: warning: ...``), once it has exited: a run that
        succeeds may still have something to say (keypoints in a line, so that the movement scale
        cannot be adapted, say)."""
        for reader in self._readers:
            reader.join(1)
        return list(self._warnings)

    def _read_progress(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            parts = line.split()
            if len(parts) == 4 and parts[0] == "progress" and parts[1] in _STAGES:
                stage, done, total = parts[1], int(parts[2]), parts[3]
                within = done / int(total) if total.isdigit() and int(total) > 0 else 0.0
                self.stage = stage
                self.fraction = (_STAGES.index(stage) + min(within, 1.0)) / len(_STAGES)

    def _read_errors(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            self._errors.append(line)
            if ": warning: " in line:  # kept apart: the last 40 lines may no longer hold an early one
                self._warnings.append(line.strip())
