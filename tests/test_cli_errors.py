"""The ``fomm`` command line on user mistakes: one line that names the file, never a traceback;
and ``fomm motion``'s inputs, read by fomm_model.video like every other command."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from animation_helpers import model_checkpoint
from conftest import shared_fixtures

from fomm_model.cli import main as cli
from fomm_model.motion_file import read_motion

from blender.media import scene, write_driving, write_source


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("media")
    return write_source(folder / "source.png"), write_driving(folder / "driving.mp4", frames=6, fps=15.0)


def one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    error = capsys.readouterr().err
    lines = error.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fomm {command}: error: "), error
    assert "Traceback" not in error and "[Errno" not in error
    return lines[0]


def test_os_errors_are_one_line_naming_the_file(media, tmp_path, capsys) -> None:
    """A file where a folder should be (the same path for permissions or a full disk)."""
    source, driving = media
    in_the_way = tmp_path / "results"
    in_the_way.write_text("a file, not a folder")
    fixture = shared_fixtures() / "fomm_parity" / "vox256_small" / "checkpoint.pth.tar"
    assert cli(["convert", str(fixture), str(in_the_way / "model.safetensors")]) == 1
    assert str(in_the_way) in one_line_error(capsys, "convert")
    code = cli(["motion", str(source), str(driving), "-o", str(in_the_way / "clip.json"), "--checkpoint", model_checkpoint(),
                "--progress", "none"])  # fmt: skip
    assert code == 1 and str(in_the_way) in one_line_error(capsys, "motion")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fps", "0"], "--fps must be positive, got 0.0"),
        (["--fps", "nan"], "--fps must be positive, got nan"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--max-frames", "0"], "--max-frames must be at least 1"),
    ],
)
def test_motion_checks_its_numbers(media, tmp_path, capsys, extra, message) -> None:
    source, driving = media
    out = tmp_path / "clip.json"
    assert cli(["motion", str(source), str(driving), "-o", str(out), "--progress", "none", *extra]) == 1
    assert message in one_line_error(capsys, "motion") and not out.exists()


def test_motion_reads_folders_and_finds_the_best_reference(media, tmp_path, capsys) -> None:
    source, driving = media
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(5):  # the blob elsewhere, and the source itself as frame 3: the best reference
        picture = cv2.imread(str(source)) if index == 3 else scene(240, 320, (0.2 + 0.15 * index, 0.5), 0.06)[..., ::-1]
        cv2.imwrite(str(folder / f"frame{index}.png"), picture)
    out = tmp_path / "clip.json"
    assert cli(["motion", str(source), str(folder), "-o", str(out), "--checkpoint", model_checkpoint(),
                "--reference", "best", "--max-frames", "4", "--fps", "12", "--progress", "lines"]) == 0  # fmt: skip
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "progress motion 0 8" and printed[-2] == "progress motion 8 8"  # search pass + frames
    motion = read_motion(out)
    assert motion.num_frames == 4 and motion.fps == 12.0 and motion.options.reference_frame == 3


@pytest.mark.parametrize("command", ["animate", "motion"])
@pytest.mark.parametrize("device", ["cuda:99", "gpu"])
def test_an_unusable_device_is_one_line(media, tmp_path, capsys, command, device) -> None:
    """A device this torch lacks (no CUDA build, no such GPU, a misspelt name)."""
    source, driving = media
    out = tmp_path / ("out.mp4" if command == "animate" else "out.fomm.json")
    assert cli([command, str(source), str(driving), "-o", str(out), "--device", device]) == 1
    assert f"--device {device} cannot be used" in one_line_error(capsys, command)
    assert not out.exists()
