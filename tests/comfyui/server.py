"""Start a real ComfyUI server with this pack installed, and talk to it over HTTP.

Each :class:`ComfyServer` is a disposable instance: its own base directory (custom_nodes,
models, input, output, user), the repository linked in as ``custom_nodes/comfyui-fomm`` the
way a user's git clone sits there, a loopback port, and ``--cpu``. Standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .install import REPO, ComfyInstall

PACK_NAME = "comfyui-fomm"


class ServerError(RuntimeError):
    """The server did not start, refused a prompt, or a prompt failed; carries the log tail."""


@dataclass
class PromptResult:
    prompt_id: str
    status: str  # "success" or "error"
    messages: list[tuple[str, dict[str, Any]]]
    outputs: dict[str, dict[str, Any]]

    def message(self, kind: str) -> dict[str, Any] | None:
        return next((data for name, data in self.messages if name == kind), None)

    @property
    def cached_nodes(self) -> list[str]:
        return (self.message("execution_cached") or {}).get("nodes", [])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ComfyServer:
    """A running ComfyUI process; use as a context manager or call :meth:`stop`."""

    def __init__(self, install: ComfyInstall, base: Path, extra_args: tuple[str, ...] = ()):
        self.install = install
        self.base = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        for folder in ("custom_nodes", "input", "output", "temp", "user", "models/fomm"):
            (base / folder).mkdir(parents=True, exist_ok=True)
        link = base / "custom_nodes" / PACK_NAME
        if not link.exists():
            link.symlink_to(REPO, target_is_directory=True)
        self.log_path = base / "server.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [
                str(install.python), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                "--disable-auto-launch", "--base-directory", str(base),
                "--database-url", f"sqlite:///{base / 'user' / 'comfyui.db'}", *extra_args,
            ],
            cwd=install.code, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    # ------------------------------------------------------------------ lifecycle
    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"ComfyUI exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.get("/system_stats", timeout=2)
                break
            except (OSError, ServerError):
                time.sleep(0.5)
        else:
            raise ServerError(f"ComfyUI did not answer within {timeout:.0f} s:\n{self.log_tail()}")
        self.check_pack_imported()

    def check_pack_imported(self) -> None:
        failed = [line for line in self.log().splitlines() if "IMPORT FAILED" in line and PACK_NAME in line]
        if failed:
            raise ServerError(f"ComfyUI could not import the pack:\n{self.log_tail(120)}")
        if "FOMM_LoadModel" not in self.get("/object_info/FOMM_LoadModel"):
            raise ServerError(f"the pack's nodes are not registered:\n{self.log_tail(120)}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()

    def __enter__(self) -> "ComfyServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                 timeout: float = 30) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def get(self, path: str, timeout: float = 30) -> Any:
        status, data = self._request("GET", path, timeout=timeout)
        if status != 200:
            raise ServerError(f"GET {path} -> HTTP {status}: {data[:300]!r}")
        return json.loads(data)

    def get_bytes(self, path: str) -> bytes:
        status, data = self._request("GET", path, timeout=120)
        if status != 200:
            raise ServerError(f"GET {path} -> HTTP {status}")
        return data

    def post(self, path: str, payload: Any = None) -> tuple[int, Any]:
        body = json.dumps(payload if payload is not None else {}).encode()
        status, data = self._request("POST", path, body, {"Content-Type": "application/json"})
        return status, (json.loads(data) if data.strip().startswith((b"{", b"[")) else data)

    def queue(self, prompt: dict[str, Any]) -> str:
        status, answer = self.post("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})
        if status != 200:
            raise ServerError(f"the server refused the prompt (HTTP {status}): {json.dumps(answer)[:3000]}")
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600) -> PromptResult:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            status = (entry or {}).get("status", {})
            if status.get("completed") or status.get("status_str") in ("success", "error"):
                return PromptResult(prompt_id, status.get("status_str", ""), [tuple(m) for m in status.get("messages", [])],
                                    entry.get("outputs", {}))
            if not self.alive():
                raise ServerError(f"ComfyUI died while running {prompt_id}:\n{self.log_tail()}")
            time.sleep(0.25)
        raise ServerError(f"prompt {prompt_id} did not finish within {timeout:.0f} s:\n{self.log_tail()}")

    def run(self, prompt: dict[str, Any], timeout: float = 600) -> PromptResult:
        """Queue a prompt and wait; raise with the node's error message unless it succeeded."""
        result = self.wait(self.queue(prompt), timeout)
        if result.status != "success":
            error = result.message("execution_error") or {}
            raise ServerError(
                f"prompt failed at node {error.get('node_id')} ({error.get('node_type')}): "
                f"{error.get('exception_type')}: {error.get('exception_message')}\n{''.join(error.get('traceback') or [])}"
            )
        return result

    def output_files(self, result: PromptResult, node_id: str, key: str = "images") -> list[Path]:
        """Files a node's ``ui`` output points at, as paths in this instance's folders."""
        files = []
        for item in result.outputs.get(node_id, {}).get(key, []):
            folder = {"output": "output", "temp": "temp", "input": "input"}[item.get("type", "output")]
            files.append(self.base / folder / item.get("subfolder", "") / item["filename"])
        return files

    def interrupt(self) -> None:
        status, answer = self.post("/interrupt")
        if status != 200:
            raise ServerError(f"POST /interrupt -> HTTP {status}: {answer!r}")
