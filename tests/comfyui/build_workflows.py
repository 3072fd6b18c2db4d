"""Build the shipped workflows (``workflows/*.json``) in ComfyUI's real frontend and save them as
the frontend saves them (UI format, version 0.4).

    python -m tests.comfyui.build_workflows [--screenshots DIR]

Starts a ComfyUI server with this pack, opens the frontend in headless Chromium, creates every
node, sets its widgets and links it by slot name, then stores ``app.graph.serialize()``. The
graphs below are the single description of the workflows; rerun after changing a node's inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from fomm_model.checkpoint import atomic_path

from .install import REPO, ComfyInstall, ensure_installed
from .server import ComfyServer

WORKFLOWS = REPO / "workflows"
# The checkpoint the workflows load: the embedded model that ships with the pack
# (fomm_model/weights/default.safetensors), so they run out of the box.
MODEL_NAME = "default"
SOURCE_IMAGE = "fomm_source.png"
DRIVING_VIDEO = "fomm_driving.mp4"

Spec = dict[str, Any]
PREVIEW = [300, 300]


def _inputs(x: int = 0) -> tuple[list[dict], list[list]]:
    """Source still, driving video split into frames + fps, and the model: every workflow's start."""
    nodes = [
        {"id": "source", "type": "LoadImage", "title": "Source image", "pos": [x, 0], "widgets": {"image": SOURCE_IMAGE}},
        {"id": "video", "type": "LoadVideo", "title": "Driving video", "pos": [x, 420], "widgets": {"file": DRIVING_VIDEO}},
        {"id": "components", "type": "GetVideoComponents", "pos": [x + 340, 420]},
        {"id": "model", "type": "FOMM_LoadModel", "pos": [x + 340, 0], "widgets": {"model_name": MODEL_NAME}},
    ]
    links = [["video", 0, "components", "video"]]
    return nodes, links


def _video_out(frames: tuple[str, str], x: int, y: int, prefix: str) -> tuple[list[dict], list[list]]:
    """Frames -> preview, and frames + the driving video's fps -> an MP4 in the output folder."""
    nodes = [
        {"id": "preview", "type": "PreviewImage", "title": "Animated frames", "pos": [x, y], "size": PREVIEW},
        {"id": "create", "type": "CreateVideo", "pos": [x, y + 370]},
        {"id": "save", "type": "SaveVideo", "pos": [x + 300, y + 370], "widgets": {"filename_prefix": prefix}},
    ]
    links = [
        [*frames, "preview", "images"],
        [*frames, "create", "images"],
        ["components", "fps", "create", "fps"],
        ["create", 0, "save", "video"],
    ]
    return nodes, links


def animate_spec() -> Spec:
    nodes, links = _inputs()
    nodes.append({"id": "animate", "type": "FOMM_Animate", "pos": [720, 0]})
    links += [
        ["model", "model", "animate", "model"],
        ["source", "IMAGE", "animate", "source"],
        ["components", "images", "animate", "driving"],
    ]
    out_nodes, out_links = _video_out(("animate", "frames"), 1080, 0, "fomm/animated")
    return {"name": "fomm_animate_still_from_video", "nodes": nodes + out_nodes, "links": links + out_links}


def step_by_step_spec() -> Spec:
    nodes, links = _inputs()
    nodes += [
        {"id": "kp_source", "type": "FOMM_DetectKeypoints", "title": "Source keypoints", "pos": [720, 0]},
        {"id": "kp_driving", "type": "FOMM_DetectKeypoints", "title": "Driving keypoints", "pos": [720, 420]},
        {"id": "motion", "type": "FOMM_EstimateMotion", "pos": [1080, 200]},
        {"id": "dense", "type": "FOMM_DenseMotion", "pos": [1440, 200]},
        {"id": "generate", "type": "FOMM_Generate", "pos": [1800, 200]},
        {"id": "draw_source", "type": "FOMM_DrawKeypoints", "pos": [1080, -420]},
        {"id": "show_source", "type": "PreviewImage", "title": "Source keypoints", "pos": [1080, -300], "size": PREVIEW},
        {"id": "draw_driving", "type": "FOMM_DrawKeypoints", "pos": [720, 760]},
        {"id": "show_driving", "type": "PreviewImage", "title": "Driving keypoints", "pos": [720, 880], "size": PREVIEW},
        {"id": "draw_moved", "type": "FOMM_DrawKeypoints", "pos": [1080, 760]},
        {"id": "show_moved", "type": "PreviewImage", "title": "Moved source keypoints", "pos": [1080, 880], "size": PREVIEW},
        {"id": "visualize", "type": "FOMM_VisualizeFlow", "pos": [1440, 760]},
        {"id": "show_flow", "type": "PreviewImage", "title": "Dense flow", "pos": [1440, 900], "size": PREVIEW},
        {"id": "show_occlusion", "type": "PreviewImage", "title": "Occlusion", "pos": [1800, 900], "size": PREVIEW},
        {"id": "show_regions", "type": "PreviewImage", "title": "Keypoint regions", "pos": [2160, 900], "size": PREVIEW},
    ]
    links += [
        ["model", "model", "kp_source", "model"],
        ["source", "IMAGE", "kp_source", "images"],
        ["model", "model", "kp_driving", "model"],
        ["components", "images", "kp_driving", "images"],
        ["kp_source", "keypoints", "motion", "source_keypoints"],
        ["kp_driving", "keypoints", "motion", "driving_keypoints"],
        ["model", "model", "dense", "model"],
        ["source", "IMAGE", "dense", "source"],
        ["motion", "motion", "dense", "motion"],
        ["model", "model", "generate", "model"],
        ["source", "IMAGE", "generate", "source"],
        ["dense", "flow", "generate", "flow"],
        ["source", "IMAGE", "draw_source", "images"],
        ["kp_source", "keypoints", "draw_source", "keypoints"],
        ["draw_source", "images", "show_source", "images"],
        ["components", "images", "draw_driving", "images"],
        ["kp_driving", "keypoints", "draw_driving", "keypoints"],
        ["draw_driving", "images", "show_driving", "images"],
        ["source", "IMAGE", "draw_moved", "images"],
        ["motion", "moved_keypoints", "draw_moved", "keypoints"],
        ["draw_moved", "images", "show_moved", "images"],
        ["dense", "flow", "visualize", "flow"],
        ["visualize", "flow", "show_flow", "images"],
        ["visualize", "occlusion", "show_occlusion", "images"],
        ["visualize", "regions", "show_regions", "images"],
    ]
    out_nodes, out_links = _video_out(("generate", "frames"), 2160, 200, "fomm/step_by_step")
    return {"name": "fomm_step_by_step", "nodes": nodes + out_nodes, "links": links + out_links}


def blender_spec() -> Spec:
    nodes, links = _inputs()
    nodes.append({"id": "save_motion", "type": "FOMM_SaveMotion", "pos": [720, 0],
                  "widgets": {"filename_prefix": "fomm/motion"}})
    links += [
        ["model", "model", "save_motion", "model"],
        ["source", "IMAGE", "save_motion", "source"],
        ["components", "images", "save_motion", "driving"],
        ["components", "fps", "save_motion", "fps"],
    ]
    return {"name": "fomm_export_motion_for_blender", "nodes": nodes, "links": links}


SPECS = (animate_spec, step_by_step_spec, blender_spec)


def run_frontend(install: ComfyInstall, url: str, jobs: dict[str, Any]) -> dict[str, Any]:
    """Run ``frontend.py`` with the ComfyUI venv's Python; raise with its output on failure."""
    chromium = os.environ.get("CHROMIUM", "chromium")
    if shutil.which(chromium) is None:
        raise RuntimeError(
            f"headless Chromium ({chromium!r}) is not installed: the workflow tests load the workflows in "
            "ComfyUI's real frontend. Install the Debian package (apt-get install chromium) or set CHROMIUM"
        )
    with tempfile.TemporaryDirectory() as scratch:
        jobs_path, results_path = Path(scratch, "jobs.json"), Path(scratch, "results.json")
        jobs_path.write_text(json.dumps(jobs))
        done = subprocess.run(
            [str(install.python), str(Path(__file__).with_name("frontend.py")), url, str(jobs_path), str(results_path)],
            capture_output=True, text=True, timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the frontend run failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-4000:]}")
        return json.loads(results_path.read_text())


def build(screenshots: Path | None = None) -> list[Path]:
    install = ensure_installed()
    with tempfile.TemporaryDirectory() as base:
        from .conftest import write_test_model

        if MODEL_NAME != "default":
            write_test_model(Path(base) / "models" / "fomm" / MODEL_NAME)
        with ComfyServer(install, Path(base)) as server:
            server.wait_ready()
            specs = [spec() for spec in SPECS]
            jobs = {"build": specs, "screenshots": str(screenshots) if screenshots else None}
            built = run_frontend(install, server.url, jobs)["build"]
    written = []
    for spec, workflow in zip(specs, built):
        path = WORKFLOWS / f"{spec['name']}.json"
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(workflow, indent=2) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshots", type=Path, help="save a screenshot of each built graph here")
    args = parser.parse_args()
    for path in build(args.screenshots):
        print(f"wrote {path}")
