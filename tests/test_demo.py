"""`fomm demo` on a fresh install: inputs made, animated with the embedded model, videos written."""

from __future__ import annotations

from pathlib import Path

import cv2

import fomm_model as fm
from fomm_model.cli import main as cli


def frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    return count


def test_default_model_is_embedded() -> None:
    model = fm.load_model("default")
    assert model.config.frame_shape == (128, 128)
    assert model.discriminator is None
    assert fm.default_model_path().stat().st_size < 8 * 2**20


def test_demo_writes_inputs_result_and_visualization(tmp_path: Path) -> None:
    assert cli(["demo", "--out", str(tmp_path), "--frames", "6", "--size", "128"]) == 0
    assert cv2.imread(str(tmp_path / "source.png")).shape == (128, 128, 3)
    assert frame_count(tmp_path / "driving.mp4") == 6
    assert frame_count(tmp_path / "result.mp4") == 6
    capture = cv2.VideoCapture(str(tmp_path / "visualization.mp4"))
    ok, frame = capture.read()
    assert ok and frame.shape[1] >= 4 * frame.shape[0]  # source | driving | deformed | occlusion | result


def test_demo_into_a_file_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "taken.png").write_bytes(b"not a folder")
    assert cli(["demo", "--out", str(tmp_path / "taken.png")]) == 1
    assert "taken.png is a file: give --out a folder name" in capsys.readouterr().err  # was "File exists"


def test_demo_options_are_checked_before_anything_is_written(tmp_path: Path, capsys) -> None:
    """A missing checkpoint was found only by the animation, after the inputs were written."""
    out = tmp_path / "demo"
    cases = [
        (["--checkpoint", str(tmp_path / "nope.pth")], "--checkpoint " + str(tmp_path / "nope.pth") + ": no such file"),
        (["--seed", "-1"], "--seed must be 0 or more, got -1"),
        (["--size", "65"], "--size even and at least 64"),
        (["--frames", "1"], "--frames must be at least 2"),
    ]
    for options, message in cases:
        assert cli(["demo", "--out", str(out), *options]) == 1
        error = capsys.readouterr().err
        assert error.startswith("fomm demo: error: ") and message in error, error
        assert not out.exists()
