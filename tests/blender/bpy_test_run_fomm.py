"""Run FOMM from Blender: the project's command line in the torch Python, then the import.

A headless Blender has no event loop, so the operator runs to the end there (execute); the
modal loop a user gets is driven here by calling the operator's own ``modal`` with timer and
Esc events, on a stand-in for the operator instance (bpy cannot create one from Python),
against the real window manager, workspace and scene.
"""

from __future__ import annotations

import json
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import bpy
import pytest

from helpers import snapshot


@pytest.fixture
def run_settings(scene, addon, manifest, tmp_path):
    addon.operators.preferences(bpy.context).python = manifest["python"]
    settings = scene.fomm_run
    settings.source = manifest["source"]
    settings.driving = manifest["driving"]
    settings.checkpoint = manifest["checkpoint"]
    settings.output = str(tmp_path / "from_blender.json")
    settings.max_frames = 4
    yield settings
    addon.operators.preferences(bpy.context).python = ""


def test_run_fomm_writes_and_imports_the_motion(run_settings, scene) -> None:
    run_settings.deform = "FLOW_CACHE"  # asks the command for the dense flow too
    assert bpy.ops.fomm_motion.run() == {"FINISHED"}
    written = json.loads(Path(run_settings.output).read_text())
    assert written["num_frames"] == 4 and "flow" in written and "frames" not in written
    plane = bpy.data.objects["FOMM from_blender"]
    assert plane.modifiers["FOMM Flow"].type == "MESH_CACHE"
    assert (scene.frame_start, scene.frame_end) == (1, 4)


def test_a_second_run_never_rewrites_the_files_an_earlier_import_plays(run_settings, tmp_path) -> None:
    """Without a Motion File each run writes beside the .blend under a new name (numbered
    like Blender's data-blocks), so the first plane keeps its own texture and frames."""
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    run_settings.output = ""
    run_settings.deform, run_settings.texture = "NONE", "FRAMES"
    assert bpy.ops.fomm_motion.run() == {"FINISHED"}
    first = tmp_path / "source_driving_frames"
    files = {path.name: path.read_bytes() for path in first.iterdir()}
    assert len(files) == 4 and (tmp_path / "source_driving.fomm.json").is_file()
    run_settings.max_frames, run_settings.absolute = 3, True
    assert bpy.ops.fomm_motion.run() == {"FINISHED"}
    assert {path.name: path.read_bytes() for path in first.iterdir()} == files
    assert len(list((tmp_path / "source_driving.001_frames").iterdir())) == 3
    planes = [bpy.data.objects[f"FOMM {name}"] for name in ("source_driving", "source_driving.001")]
    folders = [Path(bpy.path.abspath(plane.active_material.node_tree.nodes.active.image.filepath)).parent for plane in planes]
    assert folders == [first, tmp_path / "source_driving.001_frames"]


def test_run_fomm_reports_the_commands_error(run_settings, tmp_path) -> None:
    run_settings.checkpoint = str(tmp_path / "no-such-checkpoint.pth.tar")
    before = snapshot()
    with pytest.raises(RuntimeError, match="no-such-checkpoint"):
        bpy.ops.fomm_motion.run()
    assert snapshot() == before
    assert not Path(run_settings.output).exists()


def test_the_run_takes_a_folder_of_frames_and_an_empty_or_capitalised_default(run_settings, tmp_path) -> None:
    """fomm motion reads a folder of frames as the driving video, so the panel lets one
    through; an empty Checkpoint field, or "Default", means the embedded model."""
    frames = tmp_path / "frames"
    frames.mkdir()
    run_settings.driving = str(frames)
    request = run_settings.request(bpy.path.abspath(run_settings.source))  # any existing file will do as python here
    assert not [problem for problem in request.problems() if "driving" in problem]
    for text, expected in (("", "default"), ("  Default ", "default"), ("DEFAULT", "default")):
        run_settings.checkpoint = text
        assert run_settings.request("python").checkpoint == expected
    run_settings.checkpoint = str(tmp_path / "model.safetensors")
    assert run_settings.request("python").checkpoint == str(tmp_path / "model.safetensors")


def test_run_fomm_needs_the_python_preference(run_settings, addon) -> None:
    addon.operators.preferences(bpy.context).python = ""
    with pytest.raises(RuntimeError, match="set the Python that has the fomm package"):
        bpy.ops.fomm_motion.run()


def test_run_fomms_import_is_one_undo_step(run_settings) -> None:
    bpy.ops.ed.undo_push(message="before Run FOMM")
    before = snapshot()
    # ("EXEC_DEFAULT", True): as from the panel; a plain Python call suppresses nested undo steps
    assert bpy.ops.fomm_motion.run("EXEC_DEFAULT", True) == {"FINISHED"}
    assert snapshot() != before
    bpy.ops.ed.undo()
    assert snapshot() == before


# ------------------------------------------------------------------------------ modal loop
@dataclass(frozen=True)
class Event:
    """The one field of Blender's event that the operator reads."""

    type: str


class StandIn:
    """FOMM_OT_run's own methods on a plain object, with its reports recorded."""

    def __init__(self, operator: type) -> None:
        for name in ("modal", "cancel", "_start", "_finish", "_stop_progress"):
            setattr(self, name, getattr(operator, name).__get__(self))
        self._timer = None
        self.reports: list[tuple[set[str], str]] = []

    def report(self, kind: set[str], message: str) -> None:
        self.reports.append((kind, message))


class StatusRecorder:
    """The workspace, with what the operator writes to the status bar also recorded."""

    def __init__(self, workspace: bpy.types.WorkSpace, texts: list[str | None], where: list[str]) -> None:
        self.workspace, self.texts, self.where = workspace, texts, where

    def status_text_set(self, text: str | None) -> None:
        self.texts.append(text)
        self.where.append(self.workspace.name)
        self.workspace.status_text_set(text)


class WatchedContext:
    """bpy.context, except that the status bar text is recorded on its way to Blender, with the
    workspace it went to (``active``: the workspace the artist is in)."""

    def __init__(self) -> None:
        self.status: list[str | None] = []
        self.written_to: list[str] = []
        self.active = bpy.context.workspace

    def __getattr__(self, name: str):
        return getattr(bpy.context, name)

    @property
    def workspace(self) -> StatusRecorder:
        return StatusRecorder(self.active, self.status, self.written_to)


def tick_until(operator: StandIn, context: WatchedContext, done, timeout: float) -> set[str]:
    """Timer events every 50 ms until ``done(result)``; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = operator.modal(context, Event("TIMER"))
        if done(result):
            return result
        assert result == {"PASS_THROUGH"}
        assert time.monotonic() < deadline, f"no end after {timeout} s: {context.status[-3:]}"
        time.sleep(0.05)


def start_modal(addon) -> tuple[StandIn, WatchedContext]:
    operators = addon.operators
    operator, context = StandIn(operators.FOMM_OT_run), WatchedContext()
    assert operator._start(context) is not None, operator.reports
    operator._timer = operators.begin_progress(context)  # what _go_modal does before modal_handler_add
    return operator, context


STATUS = re.compile(r"FOMM: (starting|motion) \d+% \(Esc to cancel\)")


def test_modal_run_shows_progress_then_imports(run_settings, addon, scene) -> None:
    operator, context = start_modal(addon)
    assert operator.modal(context, Event("MOUSEMOVE")) == {"PASS_THROUGH"}  # Blender stays usable
    result = tick_until(operator, context, lambda result: result != {"PASS_THROUGH"}, timeout=300)
    assert result == {"FINISHED"}, operator.reports
    assert context.status and all(STATUS.fullmatch(text) for text in context.status[:-1]), context.status
    assert context.status[-1] is None  # the status bar is given back
    assert operator._timer is None and "job" not in addon.operators._jobs
    assert bpy.data.objects["FOMM from_blender"].parent is not None  # imported with its rig
    assert (scene.frame_start, scene.frame_end) == (1, 4)


def test_the_status_bar_of_the_runs_workspace_is_used_after_a_switch(run_settings, addon) -> None:
    """The text belongs to a workspace: after the artist switches, ticks and the final clear
    still go to the one the run started in, or its text would stay there for good."""
    operator, context = start_modal(addon)
    started_in = context.active.name
    context.active = next(space for space in bpy.data.workspaces if space.name != started_in)
    result = tick_until(operator, context, lambda result: result != {"PASS_THROUGH"}, timeout=300)
    assert result == {"FINISHED"}, operator.reports
    assert context.status[-1] is None and set(context.written_to) == {started_in}


def test_escape_cancels_the_modal_run_without_waiting(run_settings, addon, manifest) -> None:
    run_settings.driving = manifest["long_driving"]
    run_settings.max_frames = 0
    before = snapshot()
    operator, context = start_modal(addon)
    job = addon.operators._jobs["job"]
    tick_until(operator, context, lambda _: job.stage == "motion", timeout=120)  # the model is at work
    operator.modal(context, Event("TIMER"))
    assert job.running and job.fraction < 1 and context.status[-1].startswith("FOMM: motion")
    started = time.monotonic()
    assert operator.modal(context, Event("ESC")) == {"RUNNING_MODAL"}
    assert time.monotonic() - started < 0.5, "Esc blocked Blender's UI thread"
    assert job.cancelled and context.status[-1] == "FOMM: cancelling..."
    result = tick_until(operator, context, lambda result: result != {"PASS_THROUGH"}, timeout=addon.runner.KILL_AFTER + 10)
    assert result == {"CANCELLED"} and operator.reports == [({"WARNING"}, "Run FOMM: cancelled")]
    assert context.status[-1] is None and "job" not in addon.operators._jobs
    assert snapshot() == before
    assert not Path(run_settings.output).exists()


def test_escape_that_stops_the_playback_does_not_cancel_the_run(run_settings, addon) -> None:
    operator, context = start_modal(addon)
    job = addon.operators._jobs["job"]
    context.screen = PlayingScreen()
    assert operator.modal(context, Event("ESC")) == {"PASS_THROUGH"}  # Blender's keymap stops the playback
    assert not job.cancelled
    operator.cancel(context)


@dataclass(frozen=True)
class PlayingScreen:
    is_animation_playing: bool = True
    areas: tuple = ()


def test_a_run_that_ends_in_edit_mode_says_where_the_motion_is(run_settings, addon, scene) -> None:
    """The artist went on modelling: the import (Object Mode only) waits for them, and the
    message says where the file is."""
    operator, context = start_modal(addon)
    bpy.ops.mesh.primitive_plane_add()
    bpy.ops.object.mode_set(mode="EDIT")
    result = tick_until(operator, context, lambda result: result != {"PASS_THROUGH"}, timeout=300)
    assert result == {"CANCELLED"} and Path(run_settings.output).is_file()
    [(kind, message)] = operator.reports
    assert kind == {"WARNING"} and run_settings.output in message and "Object Mode" in message
    bpy.ops.object.mode_set(mode="OBJECT")
    assert bpy.ops.import_scene.fomm_motion(filepath=run_settings.output) == {"FINISHED"}


def test_a_run_that_rewrites_a_set_motion_file_says_so(run_settings, addon) -> None:
    """A Motion File that is there already (an earlier run's, whose plane shows its texture) is
    rewritten, and the run says so once it has imported."""
    Path(run_settings.output).write_text("{}")
    operator, context = start_modal(addon)
    result = tick_until(operator, context, lambda result: result != {"PASS_THROUGH"}, timeout=300)
    assert result == {"FINISHED"}, operator.reports
    [(kind, message)] = operator.reports
    assert kind == {"WARNING"} and "rewrote from_blender.json and its texture:" in message and "planes imported from it" in message


def test_options_are_those_the_run_started_with(run_settings, addon) -> None:
    """Switching Deform to Flow cache during a run (the command was not asked for the flow)
    must not spoil the import: the run imports with the options it started with."""
    operator, context = start_modal(addon)
    run_settings.deform = "FLOW_CACHE"
    result = tick_until(operator, context, lambda result: result != {"PASS_THROUGH"}, timeout=300)
    assert result == {"FINISHED"}, operator.reports
    assert bpy.data.objects["FOMM from_blender"].parent is not None  # rigged, as when it started


def test_a_dropped_modal_loop_stops_its_job(run_settings, addon, manifest) -> None:
    """File > New/Open drops modal operators through their cancel(): the job stops with it
    and the panel is free for the next run."""
    run_settings.driving = manifest["long_driving"]
    run_settings.max_frames = 0
    operator, context = start_modal(addon)
    job = addon.operators._jobs["job"]
    operator.cancel(context)
    assert job.cancelled and "job" not in addon.operators._jobs
    assert operator._timer is None and context.status[-1] is None
    assert operator.modal(context, Event("TIMER")) == {"CANCELLED"}  # a stale tick finds nothing to collect
    job.wait(addon.runner.KILL_AFTER + 10)
    assert not job.running and not Path(run_settings.output).exists()


# ------------------------------------------------------------------------------ runner
@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ('echo "$0: No module named fomm_model" >&2; exit 1', "cannot run fomm ("),
        ("echo 'fomm motion: error: le fichier vidéo est illisible' >&2; exit 1", "le fichier vidéo est illisible"),
        ("echo 'UserWarning: something' >&2; kill -9 $$", "killed (out of memory?)"),
        ("exit 0", "exited without writing"),  # imported nothing before, with a doubled "Error: Error:"
    ],
)
def test_failures_are_explained(addon, manifest, tmp_path, script: str, expected: str) -> None:
    runner = addon.runner
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    job = runner.FommJob(runner.RunRequest(
        python=str(python), source=manifest["source"], driving=manifest["driving"], output=str(tmp_path / "x.json"),
    ))
    job.wait(30)
    assert not job.succeeded and expected in job.error()


@pytest.mark.parametrize(
    ("name", "mode", "expected"),
    [("fomm", 0o755, "is the fomm command"), ("source.png", 0o644, "is not a program")],
)
def test_a_python_preference_that_is_no_python_is_explained(addon, manifest, tmp_path, name, mode, expected) -> None:
    wrong = tmp_path / name
    wrong.write_text("#!/bin/sh\nexit 2\n")
    wrong.chmod(mode)
    request = addon.runner.RunRequest(python=str(wrong), source=manifest["source"], driving=manifest["driving"], output="x.json")
    with pytest.raises(ValueError, match=expected):
        addon.runner.FommJob(request)


def test_the_commands_warnings_are_kept_for_after_the_import(addon, manifest, tmp_path) -> None:
    runner = addon.runner
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho 'fomm motion: warning: cut.mp4: only 9 of the 20 frames' >&2\necho other >&2\n")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    job = runner.FommJob(runner.RunRequest(
        python=str(python), source=manifest["source"], driving=manifest["driving"], output=str(tmp_path / "x.json"),
    ))  # fmt: skip
    job.wait(30)
    assert job.warnings() == ["fomm motion: warning: cut.mp4: only 9 of the 20 frames"]


def test_a_python_folder_or_a_motion_file_that_cannot_be_written_is_explained(addon, manifest, tmp_path) -> None:
    runner = addon.runner
    request = runner.RunRequest(python=str(tmp_path), source=manifest["source"], driving=manifest["driving"], output="x.json")
    with pytest.raises(ValueError, match="is a folder: choose the python program in it"):
        runner.FommJob(request)
    request = runner.RunRequest(python=manifest["python"], source=manifest["source"], driving=manifest["driving"], output="x.mp4")
    with pytest.raises(ValueError, match="the Motion File x.mp4 is not named .json: name it like take.fomm.json"):
        runner.FommJob(request)
    (tmp_path / "notes.txt").write_text("a file")
    request = runner.RunRequest(python=manifest["python"], source=manifest["source"], driving=manifest["driving"],
                                output=str(tmp_path / "notes.txt" / "take" / "x.json"))  # fmt: skip
    with pytest.raises(ValueError, match="cannot make the folder for the motion file .*: choose another Motion File"):
        runner.FommJob(request)


def test_a_running_job_cancels_at_once(addon, manifest, tmp_path) -> None:
    runner = addon.runner
    output = tmp_path / "cancelled.json"
    job = runner.FommJob(runner.RunRequest(
        python=manifest["python"], source=manifest["source"], driving=manifest["long_driving"],
        output=str(output), checkpoint=manifest["checkpoint"], frames=True,
    ))
    deadline = time.monotonic() + 120
    while job.stage != "motion":  # torch imported, the model loaded and at work
        assert job.running and time.monotonic() < deadline
        time.sleep(0.02)
    assert job.running and job.fraction < 1
    started = time.monotonic()
    job.cancel()
    assert time.monotonic() - started < 0.5, "cancel() waited for the process"
    job.wait(runner.KILL_AFTER + 10)
    assert not job.running and job.cancelled and not job.succeeded and job.error() == "cancelled"
    assert not output.exists() and list(tmp_path.iterdir()) == []


def test_a_process_that_ignores_the_stop_request_is_killed(addon, manifest, tmp_path, monkeypatch) -> None:
    """A command stuck where it does not answer SIGTERM: the next look at the job after
    KILL_AFTER seconds kills it."""
    runner = addon.runner
    monkeypatch.setattr(runner, "KILL_AFTER", 0.5)
    stubborn = tmp_path / "python"
    stubborn.write_text("#!/bin/sh\ntrap '' TERM\necho progress motion 0 10\nwhile true; do sleep 0.1; done\n")
    stubborn.chmod(stubborn.stat().st_mode | stat.S_IXUSR)
    job = runner.FommJob(runner.RunRequest(
        python=str(stubborn), source=manifest["source"], driving=manifest["driving"], output=str(tmp_path / "x.json"),
    ))
    deadline = time.monotonic() + 10
    while job.stage != "motion":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    started = time.monotonic()
    job.cancel()
    assert time.monotonic() - started < 0.5, "cancel() waited for the process"
    time.sleep(1.0)
    assert job.running  # still there: it ignored the request; this look kills it
    deadline = time.monotonic() + 10
    while job.running:
        assert time.monotonic() < deadline, "the process was not killed"
        time.sleep(0.05)
    assert job.cancelled and job.error() == "cancelled"


def test_job_progress_reaches_the_end(addon, manifest, tmp_path) -> None:
    runner = addon.runner
    job = runner.FommJob(runner.RunRequest(
        python=manifest["python"], source=manifest["source"], driving=manifest["driving"],
        output=str(tmp_path / "progress.json"), checkpoint=manifest["checkpoint"], max_frames=3,
    ))
    assert job.wait(300) == 0
    assert job.succeeded and job.stage == "motion" and job.fraction == 1.0
