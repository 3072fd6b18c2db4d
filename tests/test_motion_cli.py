"""`fomm motion` on real files: a PNG and an MP4 written by the test."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from fomm_model.cli import main as cli
from fomm_model.motion_file import read_motion

from blender.media import write_driving, write_source
from conftest import shared_fixtures

CHECKPOINT = str(shared_fixtures() / "fomm_parity" / "vox256_small" / "checkpoint.pth.tar")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("media")
    return write_source(folder / "source.png"), write_driving(folder / "driving.mp4", frames=7, fps=15.0)


def run(*args: str) -> int:
    return cli(["motion", *args])


def test_writes_a_valid_motion_file_from_real_files(media, tmp_path, capsys) -> None:
    source, driving = media
    out = tmp_path / "out" / "clip.json"
    assert run(str(source), str(driving), "-o", str(out), "--checkpoint", CHECKPOINT, "--size", "128x128",
               "--progress", "lines", "--frames") == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "progress motion 0 7" and printed[-2] == "progress motion 7 7"
    assert printed[-1] == f"wrote {out} (7 frames, 10 keypoints)"
    motion = read_motion(out)
    assert motion.fps == 15.0 and motion.num_frames == 7 and motion.image_size == (128, 128)
    assert motion.options.relative and motion.options.framing == "pad"
    assert motion.source_image.shape == (384, 384, 4)  # 320x240 padded, 3x the model's 128
    assert motion.flow is None and len(motion.frame_files.files) == 7


def test_options_reach_the_file(media, tmp_path) -> None:
    source, driving = media
    out = tmp_path / "abs.json"
    assert run(str(source), str(driving), "-o", str(out), "--checkpoint", CHECKPOINT, "--size", "128x128", "--absolute",
               "--max-frames", "3", "--fps", "24", "--framing", "crop", "--flow", "--embed-image", "--progress", "none") == 0
    document = json.loads(out.read_text())
    assert [p.name for p in tmp_path.iterdir()] == ["abs.json"]
    assert document["num_frames"] == 3 and document["fps"] == 24.0 and "png_base64" in document["source"]["image"]
    assert document["options"]["relative"] is False and document["options"]["framing"] == "crop"
    assert document["motion"] == document["driving"] and len(document["flow"]["positions"]) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"driving": "missing.mp4"}, "driving video .*missing.mp4 not found"),
        ({"driving": "not-a-video.mp4"}, "cannot open .*not-a-video.mp4 as a video"),
        ({"source": "missing.png"}, "source image .*missing.png not found"),
        ({"source": "not-a-picture.png"}, "cannot read source image"),
        ({"extra": ["--size", "100x100"]}, "cannot take 100x100 images"),
        ({"extra": ["--reference", "99"]}, "reference frame 99 is beyond the last driving frame"),
        ({"source": "tiny.png"}, "the source image is 10x10 pixels: too small to animate"),  # fomm animate's limit too
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(media, tmp_path, capsys, change, message) -> None:
    source, driving = media
    (tmp_path / "not-a-video.mp4").write_text("hello")
    (tmp_path / "not-a-picture.png").write_text("hello")
    Image.new("RGB", (10, 10)).save(tmp_path / "tiny.png")
    source = tmp_path / change["source"] if "source" in change else source
    driving = tmp_path / change["driving"] if "driving" in change else driving
    out = tmp_path / "out.json"
    code = run(str(source), str(driving), "-o", str(out), "--checkpoint", CHECKPOINT, "--progress", "none", *change.get("extra", []))
    error = capsys.readouterr().err
    assert code == 1 and error.startswith("fomm motion: error: ") and re.search(message, error), error
    assert not out.exists()
