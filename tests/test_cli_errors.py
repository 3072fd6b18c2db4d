"""The ``fomm`` command line on user mistakes: one line that names the file, never a traceback;
and ``fomm motion``'s inputs, read by fomm_model.video like every other command."""

from __future__ import annotations

import subprocess
import sys
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
        (["--fps", "0"], "--fps must be at least 0.01 and below 1000, got 0.0"),
        (["--fps", "nan"], "--fps must be at least 0.01 and below 1000, got nan"),
        (["--fps", "inf"], "--fps must be at least 0.01 and below 1000, got inf"),
        (["--fps", "1e-3"], "--fps must be at least 0.01 and below 1000, got 0.001"),  # OpenCV: "try .avi", then "try .mp4"
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--max-frames", "0"], "--max-frames must be at least 1"),
        (["--texture-size", "0"], "--texture-size must be at least 1"),
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


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_outputs_never_replace_inputs_or_each_other(media, tmp_path, capsys) -> None:
    """Refused before any work, and every file is left as it was (no new folder either): an
    output named like an input, a --frames folder that is the driving folder, --visualize
    onto the driving video or onto the result, an output inside the driving folder of frames
    (it could overwrite one) or inside the folder of frames being written (which replaces it
    whole)."""
    source, driving = media
    take = tmp_path / "take_frames"
    take.mkdir()
    for index in range(3):
        cv2.imwrite(str(take / f"f{index}.png"), scene(96, 128, (0.3 + 0.1 * index, 0.5), 0.1)[..., ::-1])
    copied = tmp_path / "driving.mp4"
    copied.write_bytes(driving.read_bytes())
    before = _snapshot(tmp_path)
    cases = [
        ("motion", [str(source), str(take), "-o", str(tmp_path / "take.fomm.json"), "--frames"], f"{take} would replace the input"),
        ("motion", [str(source), str(copied), "-o", str(copied)], f"{copied}: a motion file is JSON; name it driving.fomm.json"),
        ("animate", [str(source), str(copied), "-o", str(tmp_path / "v.mp4"), "--visualize", str(copied)], "would replace the input"),
        ("animate", [str(source), str(copied), "-o", str(tmp_path / "same.mp4"), "--visualize", str(tmp_path / "same.mp4")],
         "is named for two outputs"),
        ("animate", [str(source), str(take), "-o", str(take / "f0.png")], f"is inside the input folder {take}"),
        ("motion", [str(source), str(take), "-o", str(take / "m.fomm.json")], f"is inside the input folder {take}"),
        ("animate", [str(source), str(copied), "-o", str(tmp_path / "frames"), "--visualize", str(tmp_path / "frames" / "vis.mp4")],
         f"is inside the output folder {tmp_path / 'frames'}, which is written whole"),
        ("animate", [str(source), str(copied), "-o", str(tmp_path / "e" / "vis" / "r.mp4"), "--visualize", str(tmp_path / "e" / "vis")],
         "is inside the output folder"),
    ]  # fmt: skip
    for command, arguments, message in cases:
        assert cli([command, *arguments, "--checkpoint", model_checkpoint()]) == 1
        assert message in one_line_error(capsys, command)
        assert _snapshot(tmp_path) == before


def test_an_output_where_a_folder_is_is_refused_before_the_work(media, tmp_path, capsys, monkeypatch) -> None:
    source, driving = media
    (tmp_path / "out.mp4").mkdir()
    (tmp_path / "clip.fomm.json").mkdir()
    monkeypatch.setattr("fomm_model.cli.animate.load_model", _never_called)
    monkeypatch.setattr("fomm_model.cli.motion.load_model", _never_called)
    assert cli(["animate", str(source), str(driving), "-o", str(tmp_path / "out.mp4")]) == 1
    assert "out.mp4 is a folder: give a file name" in one_line_error(capsys, "animate")
    assert cli(["motion", str(source), str(driving), "-o", str(tmp_path / "clip.fomm.json"), "--frames"]) == 1
    assert "clip.fomm.json is a folder" in one_line_error(capsys, "motion")
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    assert cli(["animate", str(source), str(driving), "-o", str(tmp_path / "notes.txt" / "sub" / "out.mp4")]) == 1
    assert "notes.txt is a file, not a folder" in one_line_error(capsys, "animate")
    assert cli(["animate", str(source), str(driving), "-o", str(tmp_path / "notes.txt" / "frames")]) == 1  # a folder of frames too
    assert "notes.txt is a file, not a folder" in one_line_error(capsys, "animate")  # it said "read-only"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.fomm.json", "notes.txt", "out.mp4"]


def test_mistakes_found_before_the_work(media, tmp_path, capsys, monkeypatch) -> None:
    """Refused before the model loads, leaving every file as it was: a frames folder that is
    already there (it is never replaced), a motion file under a name that is not JSON (a
    slip would replace a checkpoint or a video with it), a reference frame for absolute
    motion (which has none, so the run would ignore it while saying it searched)."""
    source, driving = media
    monkeypatch.setattr("fomm_model.cli.animate.load_model", _never_called)
    monkeypatch.setattr("fomm_model.cli.motion.load_model", _never_called)
    (tmp_path / "take").mkdir()
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    before = _snapshot(tmp_path)
    cases = [
        ("animate", ["-o", str(tmp_path / "take"), "--driving-face"], "take already exists; frame folders are never overwritten"),
        ("animate", ["-o", str(tmp_path / "out.mp4"), "--visualize", str(tmp_path / "take")], "take already exists"),
        ("motion", ["-o", str(tmp_path / "model.safetensors")], "a motion file is JSON; name it model.fomm.json"),
        ("motion", ["-o", str(tmp_path / "clip.mp4")], "name it clip.fomm.json"),
        ("animate", ["-o", str(tmp_path / "out.mp4"), "--absolute", "--best-frame"], "--reference best sets where relative motion starts"),
        ("animate", ["-o", str(tmp_path / "out.mp4"), "--absolute", "--reference", "2"], "--absolute has no such frame"),
        ("motion", ["-o", str(tmp_path / "m.json"), "--absolute", "--reference", "2"], "--reference 2 sets where relative motion starts"),
    ]  # fmt: skip
    for command, arguments, message in cases:
        assert cli([command, str(source), str(driving), *arguments]) == 1
        assert message in one_line_error(capsys, command)
        assert _snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "take"]


def _piped_video(path: Path, frames: int) -> Path:
    """A Matroska file as a live recording or a pipe writes it: no duration, no frame count."""
    with path.open("wb") as out:
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=10", "-frames:v", str(frames),
                        "-c:v", "mjpeg", "-f", "matroska", "-"], stdout=out, check=True)  # fmt: skip
    return path


def test_a_video_that_states_no_frame_count(media, tmp_path, capsys) -> None:
    """`fomm motion`'s bar counts without a total, and one such frame can be animated into an image."""
    source, _ = media
    driving = _piped_video(tmp_path / "live.mkv", 3)
    out = tmp_path / "live.json"
    assert cli(["motion", str(source), str(driving), "-o", str(out), "--checkpoint", model_checkpoint()]) == 0
    assert read_motion(out).num_frames == 3 and "motion: 3frame" in capsys.readouterr().err
    picture = tmp_path / "still.png"
    assert cli(["animate", str(source), str(_piped_video(tmp_path / "one.mkv", 1)), "-o", str(picture), "--quiet"]) == 0
    assert cv2.imread(str(picture)).shape == (240, 320, 3)
    assert cli(["animate", str(source), str(driving), "-o", str(picture), "--quiet"]) == 1
    assert "still.png is an image but" in one_line_error(capsys, "animate")


def _never_called(*_: object, **__: object) -> None:
    raise AssertionError("the model was loaded: the output was checked too late")


def test_convert_checks_a_given_config_against_the_weights(tmp_path, capsys) -> None:
    out = tmp_path / "model.safetensors"
    assert cli(["convert", "default", str(out), "--config", "vox-256"]) == 1
    assert "kp_detector weights do not fit" in one_line_error(capsys, "convert")
    assert not out.exists()


def test_reconstruct_checks_its_inputs(media, tmp_path, capsys) -> None:
    frames = tmp_path / "frames"  # the frames of one video, not a dataset of videos
    frames.mkdir()
    for index in range(3):
        cv2.imwrite(str(frames / f"f{index}.png"), scene(64, 64, (0.3 + 0.1 * index, 0.5), 0.1)[..., ::-1])
    for extra, message in (
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--num-videos", "0"], "--num-videos must be at least 1"),
        ([], "every test video in"),
        (["--out", str(frames / "f0.png")], "is a file: give a folder name"),
        (["--out", str(frames / "eval")], "is inside the dataset"),
    ):
        assert cli(["reconstruct", "--checkpoint", "default", "--data", str(frames), *extra]) == 1
        assert message in one_line_error(capsys, "reconstruct")


# Runs `fomm info default` in a fresh interpreter whose import of torch is met by a real SIGINT,
# as a Ctrl-C in the seconds torch takes to load would be.
_CTRL_C_WHILE_TORCH_IMPORTS = """
import os, signal, sys

class InterruptTorchImport:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

from fomm_model.cli import main
assert "torch" not in sys.modules, "importing the command line imported torch"
sys.meta_path.insert(0, InterruptTorchImport())
sys.exit(main(["info", "default"]))
"""


def test_ctrl_c_while_torch_imports_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-c", _CTRL_C_WHILE_TORCH_IMPORTS], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr, done.stdout) == (130, "fomm: interrupted\n", "")
