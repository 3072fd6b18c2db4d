"""``fomm animate`` end to end on real (small, generated) image and video files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from animation_helpers import drawn_face, frame_size, animation_model, model_checkpoint, smooth_frames
from PIL import Image

from fomm_model.cli import main
from fomm_model.video import VideoWriter, read_image, read_video, write_image


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    write_image(folder / "source.png", smooth_frames(1, (96, 128), seed=1)[0])
    driving = smooth_frames(12, (80, 80), seed=2)
    with VideoWriter(folder / "driving.mp4", 12.5) as writer:
        writer.write(driving)
    images = [Image.fromarray((f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for f in driving[:5]]
    images[0].save(folder / "driving.gif", save_all=True, append_images=images[1:], duration=50, loop=0)
    (folder / "frames").mkdir()
    for index, frame in enumerate(driving[:4]):
        write_image(folder / "frames" / f"{index:03d}.jpg", frame)
    return {"folder": folder}


def animate(files: dict[str, Path], *arguments: str) -> int:
    return main(["animate", *arguments, "--checkpoint", model_checkpoint()])


def test_video_in_video_out(files, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "result.mp4"
    folder = files["folder"]
    assert animate(files, str(folder / "source.png"), str(folder / "driving.mp4"), "-o", str(out), "--visualize", str(tmp_path / "vis.mp4")) == 0
    captured = capsys.readouterr()
    assert f"wrote {out} (12 frames, 128x96, 12.5 fps)" in captured.out
    assert "frame/s" in captured.err  # the progress bar's rate
    result = read_video(out)
    assert result.info.fps == pytest.approx(12.5) and result.info.size == (96, 128) and len(list(result)) == 12
    model = animation_model()
    height, width = frame_size(model)
    columns = 6 if model.generator.blends_source else 5  # the generator's source weight too
    visualization = read_video(tmp_path / "vis.mp4")
    assert visualization.info.size == (height, columns * width) and len(list(visualization)) == 12
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_gif_folder_and_still_drivers(files, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = files["folder"]
    assert animate(files, str(folder / "source.png"), str(folder / "driving.gif"), "-o", str(tmp_path / "gif.avi")) == 0
    assert read_video(tmp_path / "gif.avi").info.fps == pytest.approx(20) and len(list(read_video(tmp_path / "gif.avi"))) == 5
    assert animate(files, str(folder / "source.png"), str(folder / "frames"), "-o", str(tmp_path / "out"), "--fps", "6") == 0
    assert len(list(read_video(tmp_path / "out"))) == 4
    assert f"wrote {tmp_path / 'out'}{os.sep} (4 PNG frames, 128x96, 6 fps)" in capsys.readouterr().out
    for name in ("take.1", "v1.2 final", "clip.v2"):  # a suffix that is no media type: a folder too (they were refused)
        assert animate(files, str(folder / "source.png"), str(folder / "frames"), "-o", str(tmp_path / name)) == 0
        assert len(list((tmp_path / name).glob("*.png"))) == 4
    assert animate(files, str(folder / "source.png"), str(folder / "frames" / "001.jpg"), "-o", str(tmp_path / "one.png")) == 0
    assert read_image(tmp_path / "one.png").shape == (3, 96, 128)
    assert f"wrote {tmp_path / 'one.png'} (128x96)" in capsys.readouterr().out
    write_image(tmp_path / "odd.png", smooth_frames(1, (97, 129), seed=3)[0])
    assert animate(files, str(tmp_path / "odd.png"), str(folder / "frames"), "-o", str(tmp_path / "odd.mp4")) == 0
    assert "4 frames, 128x96, 25 fps; video sides must be even" in capsys.readouterr().out
    assert read_video(tmp_path / "odd.mp4").info.size == (96, 128)


def test_motion_options_change_the_result(files, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = files["folder"]
    outputs = {}
    for name, options in {
        "relative": [],
        "absolute": ["--absolute"],
        "best": ["--best-frame"],
        "best by name": ["--reference", "best"],
        "third": ["--reference", "3", "--no-relative-jacobian", "--no-adapt-scale"],
    }.items():
        out = tmp_path / name
        assert animate(files, str(folder / "source.png"), str(folder / "frames"), "-o", str(out), *options) == 0
        outputs[name] = torch.stack(list(read_video(out)))
    assert capsys.readouterr().err.count("best reference frame: ") == 2
    assert torch.equal(outputs["best"], outputs["best by name"])
    assert not torch.equal(outputs["relative"], outputs["absolute"])
    assert not torch.equal(outputs["relative"], outputs["third"])


def test_regions_full_resolution_and_faces(files, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_image(tmp_path / "face.png", drawn_face((300, 400), (180, 150)))
    with VideoWriter(tmp_path / "face.mp4", 10) as writer:
        for t in range(6):
            writer.write(drawn_face((240, 320), (150 + 4 * t, 120)))
    out = tmp_path / "faces.mp4"
    code = animate(files, str(tmp_path / "face.png"), str(tmp_path / "face.mp4"), "-o", str(out), "--source-face", "--driving-face", "--full-resolution")
    assert code == 0
    err = capsys.readouterr().err
    assert "source face region: " in err and "driving face region: " in err
    frames = torch.stack(list(read_video(out)))
    assert frames.shape == (6, 3, 300, 400)
    source = read_image(tmp_path / "face.png")
    assert (frames[:, :, :, 330:] - source[:, :, 330:]).abs().max() < 0.05  # right of the face: untouched

    boxed = tmp_path / "boxed.mp4"
    assert animate(files, str(tmp_path / "face.png"), str(tmp_path / "face.mp4"), "-o", str(boxed), "--source-box", "80,40,200,220", "--driving-box", "60,20,180,180", "--fit", "crop") == 0
    assert read_video(boxed).info.size == (300, 400)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["driving.mp4", "driving.mp4"], "is a video; the source must be a still image"),
        (["source.png", "empty.mp4"], "no frames could be read"),
        (["source.png", "missing.mp4"], "does not exist"),
        (["tiny.png", "driving.mp4"], "too small to animate"),
        (["source.png", "driving.mp4", "--source-box", "100,0,64,64"], "reaches outside"),
        (["source.png", "driving.mp4", "--source-face"], "no face found in the source"),
        (["source.png", "driving.mp4", "--driving-face"], "no face found in the driving video"),
        (["source.png", "driving.mp4", "--fps", "0"], "--fps must be at least 0.01"),
    ],
)
def test_bad_input_is_explained(files, tmp_path: Path, capsys, arguments: list[str], message: str) -> None:
    folder = files["folder"]
    (folder / "empty.mp4").write_bytes(b"")
    write_image(folder / "tiny.png", smooth_frames(1, (20, 20))[0])
    paths = [str(folder / a) if i < 2 else a for i, a in enumerate(arguments)]
    out = tmp_path / "out.mp4"
    assert animate(files, *paths, "-o", str(out)) == 1
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_single_image_output_needs_a_single_frame(files, tmp_path: Path, capsys) -> None:
    folder = files["folder"]
    assert animate(files, str(folder / "source.png"), str(folder / "driving.mp4"), "-o", str(tmp_path / "x.png")) == 1
    assert "has several frames" in capsys.readouterr().err


def test_missing_default_model_is_explained(files, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fomm_model.loading.default_model_path", lambda: tmp_path / "absent.safetensors")
    folder = files["folder"]
    assert main(["animate", str(folder / "source.png"), str(folder / "driving.mp4"), "-o", str(tmp_path / "o.mp4")]) == 1
    assert "embedded default model is missing" in capsys.readouterr().err


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "terminate"])
def test_interrupted_run_leaves_no_output(files, tmp_path: Path, stop: signal.Signals) -> None:
    """Ctrl-C or a terminate request in the middle of a run: exit code 130, nothing under the
    output name, no temp files."""
    driving = tmp_path / "long.mp4"
    with VideoWriter(driving, 25) as writer:
        for _ in range(20):
            writer.write(smooth_frames(25, (64, 64), seed=3))
    out = tmp_path / "out.mp4"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "fomm_model", "animate", str(files["folder"] / "source.png"), str(driving), "-o", str(out),
         "--checkpoint", model_checkpoint(), "--batch-size", "1"],
        stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a shell's background job ignores Ctrl-C
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".out.") for p in tmp_path.iterdir()):
        assert process.poll() is None and time.monotonic() < deadline, "the run should still be going"
        time.sleep(0.05)
    time.sleep(1.0)  # let it write some frames
    process.send_signal(stop)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4"]


def test_audio_is_copied_or_its_absence_reported(files, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = files["folder"]
    ffmpeg = shutil.which("ffmpeg")
    driving = tmp_path / "talk.mp4"
    if ffmpeg is None:
        shutil.copy(folder / "driving.mp4", driving)
    else:
        subprocess.run(
            [ffmpeg, "-v", "error", "-i", str(folder / "driving.mp4"), "-f", "lavfi", "-i", "sine=frequency=300:duration=2",
             "-c:v", "copy", "-c:a", "aac", "-shortest", str(driving)],
            check=True,
        )  # fmt: skip
    assert animate(files, str(folder / "source.png"), str(driving), "-o", str(tmp_path / "a.mp4")) == 0
    expected = "audio copied from talk.mp4" if ffmpeg else "audio NOT copied: no ffmpeg binary on the PATH"
    assert expected in capsys.readouterr().out
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert animate(files, str(folder / "source.png"), str(driving), "-o", str(tmp_path / "b.mp4")) == 0
    assert "audio NOT copied: no ffmpeg binary on the PATH (install ffmpeg" in capsys.readouterr().out
    if ffmpeg is not None:  # --fps plays the frames at another speed: the sound is left out, and the run says why
        monkeypatch.undo()
        assert animate(files, str(folder / "source.png"), str(driving), "-o", str(tmp_path / "c.mp4"), "--fps", "5") == 0
        out = capsys.readouterr().out
        assert "5 fps" in out and "audio not copied: --fps 5 plays the" in out and "its sound would not follow" in out
        probe = ["ffprobe", "-v", "error", "-select_streams", "a", "-show_entries", "stream=index", "-of", "csv=p=0"]
        assert subprocess.run([*probe, str(tmp_path / "c.mp4")], capture_output=True, text=True, check=True).stdout == ""
