"""End to end: a real ComfyUI 0.3.75 server with this pack, the real frontend in headless
Chromium converting the shipped UI workflows, and the prompts run to completion."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pytest
import torch

from fomm_model.framing import fit
from fomm_model.motion_file import read_motion

from .build_workflows import DRIVING_VIDEO, MODEL_NAME, SOURCE_IMAGE, SPECS, WORKFLOWS, run_frontend
from .conftest import TEST_MODEL_NAME, write_test_model
from .install import ComfyInstall, pack_requirements
from .make_samples import DRIVING_FPS, DRIVING_FRAMES
from .server import PACK_NAME, ComfyServer, ServerError

SOURCE_SIZE = (128, 160)  # (height, width) of workflows/inputs/fomm_source.png
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.json"))
FOMM_NODES = ("FOMM_LoadModel", "FOMM_Animate", "FOMM_DetectKeypoints", "FOMM_EstimateMotion", "FOMM_DenseMotion",
              "FOMM_Generate", "FOMM_DrawKeypoints", "FOMM_VisualizeFlow", "FOMM_SaveMotion", "FOMM_LoadMotion")


@pytest.fixture(scope="module")
def server(comfy_install: ComfyInstall, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyServer]:
    """A server whose FOMM checkpoints come from models/fomm and from a folder named in an
    extra_model_paths.yaml, as users set them up."""
    base = tmp_path_factory.mktemp("server")
    extra = base / "shared-models"
    write_test_model(extra / "fomm" / TEST_MODEL_NAME)
    (base / "models" / "fomm").mkdir(parents=True)
    shutil.copyfile(extra / "fomm" / TEST_MODEL_NAME, base / "models" / "fomm" / "copy.safetensors")
    (base / "extra_model_paths.yaml").write_text(f"tests:\n  base_path: {extra}\n  fomm: fomm\n")
    with ComfyServer(comfy_install, base, ("--extra-model-paths-config", str(base / "extra_model_paths.yaml"))) as running:
        running.wait_ready()
        yield running


@pytest.fixture(scope="module")
def frontend(server: ComfyServer, comfy_install: ComfyInstall) -> dict[str, list[Any]]:
    """One headless-Chromium session: every shipped workflow loaded in the real frontend and
    converted with graphToPrompt(), and the workflows rebuilt from build_workflows' graphs."""
    workflows = [json.loads(path.read_text()) for path in WORKFLOW_FILES]
    return run_frontend(comfy_install, server.url, {"convert": workflows, "build": [spec() for spec in SPECS]})


@pytest.fixture(scope="module")
def converted(frontend: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    return {path.stem: result for path, result in zip(WORKFLOW_FILES, frontend["convert"])}


def node_of(prompt: dict[str, Any], class_type: str, fed_by: str | None = None) -> str:
    """Id of the node of ``class_type`` (whose first linked input comes from a ``fed_by`` node)."""
    for node_id, node in prompt.items():
        if node["class_type"] != class_type:
            continue
        links = [value for value in node["inputs"].values() if isinstance(value, list)]
        if fed_by is None or any(prompt[link[0]]["class_type"] == fed_by for link in links):
            return node_id
    raise AssertionError(f"no {class_type} node{f' fed by {fed_by}' if fed_by else ''} in the prompt")


def read_png_frames(paths: list[Path]) -> np.ndarray:
    return np.stack([cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in paths])


def read_video(path: Path) -> tuple[np.ndarray, float]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return np.stack(frames), fps


def test_the_pack_registers_every_node_with_tooltips(server: ComfyServer) -> None:
    info = server.get("/object_info")
    for node_id in FOMM_NODES:
        node = info[node_id]
        assert node["python_module"] == f"custom_nodes.{PACK_NAME}" and node["description"]
        for name, spec in {**node["input"]["required"], **node["input"].get("optional", {})}.items():
            assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert all(node["output_tooltips"]), node_id
    assert not [name for name in info if name.startswith("FOMM") and name not in FOMM_NODES]
    models = info["FOMM_LoadModel"]["input"]["required"]["model_name"][1]["options"]
    assert TEST_MODEL_NAME in models and "copy.safetensors" in models  # extra_model_paths.yaml + models/fomm


def test_the_workflows_are_offered_as_templates(server: ComfyServer) -> None:
    assert len(WORKFLOW_FILES) == 3
    templates = server.get("/workflow_templates")
    assert sorted(templates[PACK_NAME]) == [path.stem for path in WORKFLOW_FILES]
    for path in WORKFLOW_FILES:
        served = server.get(f"/api/workflow_templates/{PACK_NAME}/{path.name}")
        assert served == json.loads(path.read_text())
        assert served["version"] == 0.4
        types = {node["type"] for node in served["nodes"]}
        core = types - set(FOMM_NODES)
        assert core <= {"LoadImage", "LoadVideo", "GetVideoComponents", "PreviewImage", "CreateVideo", "SaveVideo"}, core


def test_the_shipped_workflows_are_what_build_workflows_makes(frontend: dict[str, list[Any]]) -> None:
    def essence(workflow: dict[str, Any]) -> tuple:
        nodes = sorted((n["id"], n["type"], json.dumps(n.get("widgets_values"))) for n in workflow["nodes"])
        return nodes, sorted(map(tuple, workflow["links"]))

    shipped = {path.stem: json.loads(path.read_text()) for path in WORKFLOW_FILES}
    for spec, built in zip(SPECS, frontend["build"]):
        name = spec()["name"]
        assert essence(shipped[name]) == essence(built), f"{name}.json is stale: run python -m tests.comfyui.build_workflows"


def test_requirements_txt_lists_the_package_dependencies() -> None:
    listed = (WORKFLOWS.parent / "requirements.txt").read_text().split()
    assert listed == pack_requirements()  # what ComfyUI-Manager installs for a git clone


def test_the_frontend_converts_every_workflow(converted: dict[str, dict[str, Any]]) -> None:
    for name, result in converted.items():
        assert result["missing"] == [], f"{name}: the frontend does not know {result['missing']}"
        prompt = result["prompt"]
        loader = prompt[node_of(prompt, "FOMM_LoadModel")]["inputs"]
        assert loader["model_name"] == MODEL_NAME
        assert prompt[node_of(prompt, "LoadImage")]["inputs"]["image"] == SOURCE_IMAGE
        assert prompt[node_of(prompt, "LoadVideo")]["inputs"]["file"] == DRIVING_VIDEO


def test_animate_workflow_makes_a_video_at_the_source_size(server: ComfyServer, converted: dict) -> None:
    prompt = converted["fomm_animate_still_from_video"]["prompt"]
    result = server.run(prompt)
    previews = server.output_files(result, node_of(prompt, "PreviewImage", fed_by="FOMM_Animate"))
    frames = read_png_frames(previews)
    assert frames.shape == (DRIVING_FRAMES, *SOURCE_SIZE, 3)
    assert frames.std(axis=(1, 2, 3)).min() > 5  # pictures, not blank frames
    # Relative motion from the first driving frame: frame 0 has no motion, so it is the model's
    # reconstruction of the source. Mean absolute difference in 8-bit levels, measured with
    # fomm_model.video and the library on these inputs: 7.4 for the embedded model (sharp
    # detail is smoothed, the picture is there); 29.2 for the same architecture untrained and
    # 29.1 for the parity fixture's weights; 23.6 for a flat image of the source's mean colour.
    # 16 passes a model that reconstructs the picture and fails one that does not.
    animate = prompt[node_of(prompt, "FOMM_Animate")]["inputs"]
    assert animate["relative"] is True and animate["reference"] == "first"
    source = read_png_frames([WORKFLOWS / "inputs" / SOURCE_IMAGE])[0].astype(float)
    reconstruction = np.abs(frames[0].astype(float) - source).mean()
    print(f"frame 0 vs source: mean absolute difference {reconstruction:.1f} levels")
    assert reconstruction < 16
    video, fps = read_video(server.output_files(result, node_of(prompt, "SaveVideo"))[0])
    assert video.shape == frames.shape and fps == pytest.approx(DRIVING_FPS)
    assert np.abs(video[..., ::-1].astype(float) - frames).mean() < 12  # the same frames, lossy-compressed


def test_step_by_step_workflow_previews_every_step_and_matches_animate(server: ComfyServer, converted: dict) -> None:
    prompt = converted["fomm_step_by_step"]["prompt"]
    result = server.run(prompt)
    previews = {node_id: read_png_frames(server.output_files(result, node_id))
                for node_id, node in prompt.items() if node["class_type"] == "PreviewImage"}
    # source keypoints: the still; driving keypoints: the 128x128 video; moved keypoints and frames per frame at
    # the source's size; flow, occlusion and regions per frame at the model's resolution with the source's aspect
    compact = fit(torch.zeros(1, 3, *SOURCE_SIZE), (128, 128), "pad")[1].at_model_scale().input_size
    shapes = sorted(frames.shape for frames in previews.values())
    assert shapes == sorted(
        [(1, *SOURCE_SIZE, 3), (DRIVING_FRAMES, 128, 128, 3)] + [(DRIVING_FRAMES, *SOURCE_SIZE, 3)] * 2
        + [(DRIVING_FRAMES, *compact, 3)] * 3
    )
    assert min(frames.std() for frames in previews.values()) > 5
    steps = previews[node_of(prompt, "PreviewImage", fed_by="FOMM_Generate")]
    animate_prompt = converted["fomm_animate_still_from_video"]["prompt"]
    animate_result = server.run(animate_prompt)
    animate = read_png_frames(server.output_files(animate_result, node_of(animate_prompt, "PreviewImage", fed_by="FOMM_Animate")))
    assert steps.shape == animate.shape
    assert np.abs(steps.astype(int) - animate.astype(int)).max() <= 1  # identical up to 8-bit rounding


def test_blender_workflow_writes_a_motion_file(server: ComfyServer, converted: dict) -> None:
    prompt = converted["fomm_export_motion_for_blender"]["prompt"]
    result = server.run(prompt)
    path = server.output_files(result, node_of(prompt, "FOMM_SaveMotion"), key="motion_files")[0]
    motion = read_motion(path)
    assert motion.num_frames == DRIVING_FRAMES and motion.num_kp == 10
    assert motion.fps == pytest.approx(DRIVING_FPS) and motion.image_size == (128, 128)


def test_a_second_run_reuses_the_loaded_model(server: ComfyServer, converted: dict) -> None:
    prompt = json.loads(json.dumps(converted["fomm_animate_still_from_video"]["prompt"]))
    loader = node_of(prompt, "FOMM_LoadModel")
    animate = node_of(prompt, "FOMM_Animate")
    server.run(prompt)
    loads = server.log().count("FOMM: loaded")
    prompt[animate]["inputs"]["adapt_scale"] = not prompt[animate]["inputs"]["adapt_scale"]
    result = server.run(prompt)
    assert loader in result.cached_nodes and animate not in result.cached_nodes
    assert server.log().count("FOMM: loaded") == loads


def long_animation(source: str, driving: str, repeats: int, reference: str = "first") -> dict[str, Any]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": source}},
        "2": {"class_type": "LoadVideo", "inputs": {"file": driving}},
        "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["2", 0]}},
        "4": {"class_type": "RepeatImageBatch", "inputs": {"image": ["3", 0], "amount": repeats}},
        "5": {"class_type": "FOMM_LoadModel", "inputs": {"model_name": TEST_MODEL_NAME, "device": "auto", "precision": "fp32"}},
        "6": {"class_type": "FOMM_Animate", "inputs": {
            "model": ["5", 0], "source": ["1", 0], "driving": ["4", 0], "fit": "pad", "relative": True,
            "relative_jacobian": True, "adapt_scale": True, "reference": reference, "reference_index": 0,
            "full_resolution": False, "batch_size": 4}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }


# "closest to source" first runs the keypoint detector over all 3200 frames (about 10 ms a frame
# on one CPU thread, so well over the 3 s after which Cancel is pressed): Cancel lands in that pass.
@pytest.mark.parametrize("reference", ["first", "closest to source"])
def test_cancel_stops_a_long_run_promptly_and_the_server_stays_healthy(server: ComfyServer, reference: str) -> None:
    prompt_id = server.queue(long_animation(SOURCE_IMAGE, DRIVING_VIDEO, 200, reference))  # 3200 frames
    deadline = time.monotonic() + 120
    while "FOMM: loaded" not in server.log() or not server.get("/queue")["queue_running"]:
        assert time.monotonic() < deadline, "the long run did not start"
        time.sleep(0.2)
    time.sleep(3)  # well inside the animation
    asked = time.time()
    server.interrupt()
    result = server.wait(prompt_id, timeout=30)
    interrupted = result.message("execution_interrupted")
    assert interrupted is not None and interrupted["node_type"] == "FOMM_Animate"
    stopped = interrupted["timestamp"] / 1000 - asked  # when the node gave up, by the server's clock
    print(f"FOMM Animate stopped {stopped:.2f} s after Cancel")
    assert stopped < 2.0
    healthy = server.run(long_animation(SOURCE_IMAGE, DRIVING_VIDEO, 1))
    assert healthy.status == "success"


def test_errors_reach_the_user_as_messages(server: ComfyServer) -> None:
    broken = server.base / "models" / "fomm" / "broken.pth.tar"
    broken.write_bytes(b"\x80\x02 not a real checkpoint")
    prompt = long_animation(SOURCE_IMAGE, DRIVING_VIDEO, 1)
    prompt["5"]["inputs"]["model_name"] = "broken.pth.tar"
    with pytest.raises(ServerError, match=r"FOMM_LoadModel\): ValueError: cannot use broken.pth.tar as a FOMM model: .*broken.pth.tar"):
        server.run(prompt)
    prompt = long_animation(SOURCE_IMAGE, DRIVING_VIDEO, 1)
    prompt["6"]["inputs"].update(reference="index", reference_index=99)
    with pytest.raises(ServerError, match=r"reference_index 99 is outside the driving video's 16 frames"):
        server.run(prompt)
