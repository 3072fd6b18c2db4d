"""The Blender add-on, tested in real Blender (``bpy`` from PyPI) with real motion files.

bpy 5.0.1 needs Python 3.11 and numpy < 2, so it cannot share this (torch) environment: this
test creates a virtual environment for it once (``.venv-bpy/``, git-ignored; about 1 GB, the
bpy wheel is a 374 MB download), makes the inputs here with torch — a motion file from a real
`fomm motion` run on a PNG and an MP4 written by the test, and a hand-made motion file with
known geometry — and runs the pytest suite in ``tests/blender/`` inside that environment.
If the environment cannot be set up the test fails with pip's output; it never skips.

``FOMM_BPY_VERSION=4.5.15`` runs the same suite on Blender 4.5 LTS (in ``.venv-bpy-4.5.15``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fomm_model.motion_file import DenseFlow, KeypointTrack, Motion, MotionOptions, write_motion

from conftest import REPO
from blender.media import scene, write_puppet_clip

BPY_VERSION = os.environ.get("FOMM_BPY_VERSION", "5.0.1")
BPY_VENV = REPO / (".venv-bpy" if BPY_VERSION == "5.0.1" else f".venv-bpy-{BPY_VERSION}")
# The real run: the embedded model on a puppet video of a seed it was not trained on (video 2
# of the test split: the figure moves, the textured background never moves).
CHECKPOINT = "default"
PUPPET_SEED, PUPPET_VIDEO = 2024, 2
DRIVING_FRAMES, DRIVING_FPS = 10, 12.0
LONG_DRIVING_FRAMES = 200  # many seconds of work for the model: time to cancel a run midway


def bpy_python() -> Path:
    """The bpy environment's interpreter, created on first use (marker file = complete)."""
    python = BPY_VENV / "bin" / "python"
    marker = BPY_VENV / f"fomm-bpy-{BPY_VERSION}.ok"
    if marker.is_file() and python.is_file():
        return python
    base = sys.executable if sys.version_info[:2] == (3, 11) else shutil.which("python3.11")
    if base is None:
        raise RuntimeError("the Blender tests need a Python 3.11 interpreter (python3.11 on PATH) for the bpy wheel")
    shutil.rmtree(BPY_VENV, ignore_errors=True)
    steps = [
        [base, "-m", "venv", str(BPY_VENV)],
        [str(python), "-m", "pip", "install", "--quiet", f"bpy=={BPY_VERSION}", "numpy<2", "pytest"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"setting up the bpy environment failed: {' '.join(step)}\n{done.stdout}\n{done.stderr}")
    marker.write_text(BPY_VERSION)
    return python


def fomm_motion(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "fomm_model", "motion", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def synthetic_motion() -> Motion:
    """Three keypoints with known motion over a still background, 6 frames, 21x21 weight grid.

    kp0 (upper left) slides right, kp1 (lower right) turns by 40 degrees, kp2 (lower left)
    shears and stretches; each owns the points within 0.2 of it, the background owns the points
    farther than 0.45 from all of them. The flow holds the exact forward positions of the grid
    nodes under these weights, and the frames are flat colours that tell their index.
    """
    frames, grid = 6, 21
    kp_source = np.array([[-0.5, -0.5], [0.5, 0.45], [-0.45, 0.5]])
    jac_source = np.array([np.eye(2), [[1.1, 0.1], [0.0, 0.9]], np.eye(2)])
    kp_driving = np.repeat(kp_source[None], frames, 0)
    jac_driving = np.repeat(jac_source[None], frames, 0)
    for t in range(frames):
        f = t / (frames - 1)
        kp_driving[t, 0, 0] += 0.2 * f
        angle = np.radians(40) * f
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        jac_driving[t, 1] = rotation @ jac_source[1]
        jac_driving[t, 2] = np.array([[1 + 0.3 * f, 0.4 * f], [0.0, 1 - 0.2 * f]])
    nodes = np.stack(np.meshgrid(np.linspace(-1, 1, grid), np.linspace(-1, 1, grid)), -1)
    distance = np.linalg.norm(nodes[None] - kp_source[:, None, None], axis=-1)  # (K, g, g)
    owned = np.clip((0.45 - distance) / 0.25, 0, 1)  # 1 within 0.2, 0 beyond 0.45
    masks = np.concatenate([np.clip(1 - owned.sum(0), 0, 1)[None], owned])
    masks /= masks.sum(0, keepdims=True)
    affine = jac_driving @ np.linalg.inv(jac_source)[None]  # (T, K, 2, 2)
    local = nodes[None, None] - kp_source[None, :, None, None]  # (1, K, g, g, 2)
    moved = kp_driving[:, :, None, None] + np.einsum("tkij,tkhwj->tkhwi", affine, np.broadcast_to(local, (frames, 3, grid, grid, 2)))
    positions = masks[0][None, ..., None] * nodes[None] + (masks[1:][None, ..., None] * moved).sum(1)
    colours = np.array([[40 * t, 255 - 40 * t, 128] for t in range(frames)], np.uint8)
    return Motion(
        image_size=(64, 64),
        fps=10.0,
        source_image=scene(256, 256, (0.3, 0.3), 0.1),
        source=KeypointTrack(kp_source[None].astype(np.float32), jac_source[None].astype(np.float32)),
        driving=KeypointTrack((kp_driving + 0.1).astype(np.float32), jac_driving.astype(np.float32)),
        motion=KeypointTrack(kp_driving.astype(np.float32), jac_driving.astype(np.float32)),
        masks=masks.astype(np.float32),
        options=MotionOptions(relative=True, relative_jacobian=True, adapt_scale=False),
        align_corners=False,
        weights_method="test: owned regions around each keypoint",
        flow=DenseFlow(positions.astype(np.float32), 0.0),
        frames=np.broadcast_to(colours[:, None, None, :], (frames, 64, 64, 3)).copy(),
    )


def make_test_data(data: Path) -> Path:
    """The inputs of the Blender suite in ``data``, listed in ``data/manifest.json``."""
    source, driving = write_puppet_clip(data, PUPPET_SEED, PUPPET_VIDEO, DRIVING_FRAMES, fps=DRIVING_FPS)
    _, long_driving = write_puppet_clip(data / "long", PUPPET_SEED, PUPPET_VIDEO, LONG_DRIVING_FRAMES, step=1, fps=DRIVING_FPS)
    fomm_motion(str(source), str(driving), "-o", str(data / "real" / "real.json"), "--checkpoint", CHECKPOINT, "--flow", "--frames")
    synthetic = synthetic_motion()
    write_motion(data / "synthetic" / "synthetic.json", synthetic)
    alpha = np.full(synthetic.frames.shape[:3] + (1,), 255, np.uint8)
    alpha[:, :16] = alpha[:, 48:] = 0  # a pad framing's bars, as fomm motion --frames writes them
    write_motion(data / "padded" / "padded.json", replace(synthetic, frames=np.concatenate([synthetic.frames, alpha], -1)))
    synthetic.frames = None
    write_motion(data / "embedded" / "embedded.json", synthetic, embed_image=True)
    (data / "manifest.json").write_text(json.dumps({
        "real": str(data / "real" / "real.json"),
        "synthetic": str(data / "synthetic" / "synthetic.json"),
        "padded": str(data / "padded" / "padded.json"),
        "embedded": str(data / "embedded" / "embedded.json"),
        "source": str(source),
        "driving": str(driving),
        "long_driving": str(long_driving),
        "checkpoint": CHECKPOINT,
        "driving_fps": DRIVING_FPS,
        "driving_frames": DRIVING_FRAMES,
        "python": sys.executable,
    }))
    return data


@pytest.fixture(scope="module")
def test_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_data(tmp_path_factory.mktemp("blender-data"))


def test_blender_addon_suite(test_data: Path, tmp_path: Path) -> None:
    python = bpy_python()
    env = dict(
        os.environ,
        FOMM_TEST_DATA=str(test_data),
        FOMM_ADDON_PARENT=str(REPO / "blender_addon"),
        BLENDER_USER_RESOURCES=str(tmp_path / "blender-user"),
    )
    suite = REPO / "tests" / "blender"
    done = subprocess.run(
        [str(python), "-m", "pytest", "-c", str(suite / "pytest.ini"), "--rootdir", str(suite), "-p", "no:cacheprovider", "-q", str(suite)],
        capture_output=True, text=True, env=env, cwd=suite,
    )
    output = "\n".join(line for line in (done.stdout + done.stderr).splitlines() if "EGL Error" not in line)
    print(output)
    assert done.returncode == 0, f"the Blender suite failed (bpy {BPY_VERSION}):\n{output[-8000:]}"
