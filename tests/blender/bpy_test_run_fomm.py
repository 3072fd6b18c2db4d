"""Run FOMM from Blender: the project's command line in the torch Python, then the import."""

from __future__ import annotations

import json
import time
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


def test_run_fomm_reports_the_commands_error(run_settings, tmp_path) -> None:
    run_settings.checkpoint = str(tmp_path / "no-such-checkpoint.pth.tar")
    before = snapshot()
    with pytest.raises(RuntimeError, match="no-such-checkpoint"):
        bpy.ops.fomm_motion.run()
    assert snapshot() == before
    assert not Path(run_settings.output).exists()


def test_run_fomm_needs_the_python_preference(run_settings, addon) -> None:
    addon.operators.preferences(bpy.context).python = ""
    with pytest.raises(RuntimeError, match="set the Python that has the fomm package"):
        bpy.ops.fomm_motion.run()


def test_a_running_job_can_be_cancelled(addon, manifest, tmp_path) -> None:
    runner = addon.runner
    output = tmp_path / "cancelled.json"
    job = runner.FommJob(runner.RunRequest(
        python=manifest["python"], source=manifest["source"], driving=manifest["driving"],
        output=str(output), checkpoint=manifest["checkpoint"], frames=True,
    ))
    assert job.running
    started = time.monotonic()
    job.cancel()
    assert not job.running and time.monotonic() - started < 10
    assert job.cancelled and not job.succeeded and job.error() == "cancelled"
    assert not output.exists()


def test_job_progress_reaches_the_end(addon, manifest, tmp_path) -> None:
    runner = addon.runner
    job = runner.FommJob(runner.RunRequest(
        python=manifest["python"], source=manifest["source"], driving=manifest["driving"],
        output=str(tmp_path / "progress.json"), checkpoint=manifest["checkpoint"], max_frames=3,
    ))
    assert job.wait(300) == 0
    assert job.succeeded and job.stage == "motion" and job.fraction == 1.0
