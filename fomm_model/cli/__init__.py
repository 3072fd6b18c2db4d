"""The ``fomm`` command line: one subcommand per module, each a thin layer over the library.

A subcommand module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Sequence

from .. import __version__

# Subcommand modules, in the order `fomm --help` lists them.
COMMANDS = ("demo", "animate", "motion", "train", "synthetic", "checkpoints")


class UserError(Exception):
    """An error the user can fix; printed without a traceback."""


def check_outputs(inputs: Sequence[Path], files: Sequence[Path] = (), folders: Sequence[Path] = ()) -> None:
    """Refuse, before any work, outputs that would replace an input (or a folder holding one),
    land inside an input folder (of frames) or inside another output (a frames folder is
    replaced whole when it is written), take each other's names, or go where nothing can be
    written; and file outputs where a folder is. Such runs would otherwise fail, or destroy
    the user's files, only at the end."""
    outputs = [*files, *folders]
    taken: dict[Path, Path] = {}
    for output in outputs:
        target = output.resolve()
        for given in inputs:
            source = given.resolve()
            if target == source or target in source.parents:
                raise UserError(f"{output} would replace the input {given}: choose another output name")
            if source in target.parents and source.is_dir():
                raise UserError(f"{output} is inside the input folder {given}: write it somewhere else")
        if target in taken:
            raise UserError(f"{output} is named for two outputs: give each output its own name")
        taken[target] = output
    for inner in outputs:
        for outer in folders:
            if outer.resolve() in inner.resolve().parents:
                raise UserError(f"{inner} is inside the output folder {outer}, which is written whole: put it elsewhere")
    for output in files:
        if output.is_dir():
            raise UserError(f"{output} is a folder: give a file name for the output")
    for output in folders:
        if output.exists() and not output.is_dir():
            raise UserError(f"{output} is a file: give a folder name for the output")
    for output in outputs:
        blocking = next((folder for folder in output.parents if folder.exists() and not folder.is_dir()), None)
        if blocking is not None:
            raise UserError(f"cannot write {output}: {blocking} is a file, not a folder")
    for output in outputs:
        existing = next(folder for folder in output.resolve().parents if folder.exists())
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UserError(f"cannot write {output}: {existing} is read-only or not yours to write in; choose another folder")


def check_reference(args: argparse.Namespace) -> None:
    """``--reference``/``--best-frame`` choose where relative motion starts: with ``--absolute``
    they would be ignored while the run seemed to honour them."""
    if not args.relative and args.reference != "first":
        raise UserError(f"--reference {args.reference} sets where relative motion starts; --absolute has no such frame: drop one of them")


def counted(number: int, noun: str) -> str:
    """``3 frames``, ``1 frame``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def check_positive(args: argparse.Namespace, *options: str) -> None:
    """Refuse counts below 1 among ``options`` (attribute names; unset ones pass)."""
    for option in options:
        value = getattr(args, option)
        if value is not None and value < 1:
            raise UserError(f"--{option.replace('_', '-')} must be at least 1, got {value}")


def check_fps(fps: float | None) -> None:
    """``--fps``, when given, is a frame rate a video can have."""
    from ..video import check_frame_rate

    if fps is not None:
        check_frame_rate(fps, "--fps")


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device``, defaulting to the GPU when torch sees one (as training does)."""
    parser.add_argument("--device", help="torch device, e.g. cpu, cuda or cuda:1 (default: cuda when available, else cpu)")


def chosen_device(args: argparse.Namespace) -> str:
    """``--device`` checked by allocating on it, so a device this torch lacks is one clear line."""
    import torch

    if not args.device:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.empty(0, device=args.device)
    except (RuntimeError, AssertionError) as exc:
        seen = ", ".join(["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())])
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--device {args.device} cannot be used ({reason}); this torch sees: {seen}") from None
    return args.device


def reference_frame(text: str) -> str | int:
    """``--reference``: "first", "best" or a 0-based driving frame index."""
    if text in ("first", "best"):
        return text
    try:
        index = int(text)
    except ValueError:
        index = -1
    if index < 0:
        raise argparse.ArgumentTypeError(f'expected "first", "best" or a frame index >= 0, got {text!r}')
    return index


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fomm",
        description="First Order Motion Model: animate images, train models, convert checkpoints.",
    )
    parser.add_argument("--version", action="version", version=f"fomm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()  # imports the subcommands, and with them torch: seconds
    except KeyboardInterrupt:
        print("fomm: interrupted", file=sys.stderr)
        return 130
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    from ..checkpoint import CheckpointError
    from ..config import ConfigError

    try:
        with warnings.catch_warnings():
            warnings.showwarning = functools.partial(_show_warning, args.command)
            return int(args.func(args) or 0)
    except BrokenPipeError:  # `fomm info x | head`: the reader has gone; leave quietly like other tools
        if sys.stdout is sys.__stdout__:  # so that the interpreter's last flush does not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (UserError, CheckpointError, ConfigError, ValueError, FloatingPointError) as exc:  # the last: training diverged
        print(f"fomm {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # missing files, permissions, full disks, a file where a folder should be
        print(f"fomm {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fomm {args.command}: interrupted", file=sys.stderr)
        return 130


def _show_warning(command: str, message: Warning | str, *_: object, **__: object) -> None:
    """Library warnings as one line of the command's own, not Python's file:line form."""
    print(f"fomm {command}: warning: {message}", file=sys.stderr)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM (a process manager, or the Blender add-on's Cancel) unwinds like Ctrl-C, so
    temporary files are removed and nothing half-written is left behind."""
    raise KeyboardInterrupt


def describe_os_error(error: OSError) -> str:
    """One line naming the file and what went wrong ("cannot use out/clip.mp4: Permission
    denied"), instead of Python's "[Errno 13] ..." form; errors raised with a message of our
    own (no file name attached) are shown as they are."""
    if error.filename is None:
        return str(error)
    names = f"{error.filename}" + (f" -> {error.filename2}" if error.filename2 is not None else "")
    return f"cannot use {names}: {error.strerror or error}"

