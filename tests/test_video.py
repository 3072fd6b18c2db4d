"""Reading and writing real image and video files: formats, frame rates, streaming,
atomic output, audio and errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from animation_helpers import smooth_frames
from PIL import Image, ImageOps

from fomm_model.video import MediaError, VideoWriter, decode_video, read_image, read_video, write_image


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    return smooth_frames(6, (48, 64), seed=5)


def write_video(path: Path, frames: torch.Tensor, fps: float = 12.5) -> Path:
    with VideoWriter(path, fps) as writer:
        writer.write(frames)
    return path


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv", ".avi", ".webm"])
def test_video_round_trip_keeps_frames_and_fps(tmp_path: Path, frames: torch.Tensor, suffix: str) -> None:
    path = write_video(tmp_path / f"clip{suffix}", frames)
    video = read_video(path)
    read = torch.stack(list(video))
    assert read.shape == frames.shape
    assert video.info.fps == pytest.approx(12.5) and video.info.size == (48, 64)
    assert (read - frames).abs().mean() < 0.03  # lossy codecs, but the same pictures
    assert len(video) == 6 and len(list(video)) == 6  # re-iterable


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".webm", ""])
def test_odd_sides_are_made_even_in_videos_and_kept_in_frame_folders(tmp_path: Path, suffix: str) -> None:
    """4:2:0 video needs even sides: the writer drops the odd last row and column itself
    (the same on every OpenCV build) and says so in ``size``; PNG frames keep every pixel."""
    frames = smooth_frames(3, (49, 65), seed=2)
    with VideoWriter(tmp_path / f"odd{suffix}", 10) as writer:
        writer.write(frames)
    read = torch.stack(list(read_video(tmp_path / f"odd{suffix}")))
    expected = (48, 64) if suffix else (49, 65)
    assert writer.size == expected[::-1] and tuple(read.shape[-2:]) == expected
    assert (read - frames[..., : expected[0], : expected[1]]).abs().mean() < 0.03  # cropped, not rescaled


def test_gif_written_by_pillow_is_a_video(tmp_path: Path, frames: torch.Tensor) -> None:
    images = [Image.fromarray((f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for f in frames]
    images[0].save(tmp_path / "clip.gif", save_all=True, append_images=images[1:], duration=100, loop=0)
    video = read_video(tmp_path / "clip.gif")
    read = torch.stack(list(video))
    assert read.shape == frames.shape and video.info.fps == pytest.approx(10)
    assert (read - frames).abs().mean() < 0.03  # palette quantisation


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".png"])
@pytest.mark.parametrize("count", [1, 3])
def test_a_gif_webp_or_png_source_gives_its_first_frame(tmp_path: Path, suffix: str, count: int) -> None:
    """A still GIF is a common source (it was refused as a video); of an animated one, as of an
    animated WebP or PNG, the first frame is the source."""
    images = [Image.fromarray(np.full((24, 32, 3), 60 * (index + 1), np.uint8)) for index in range(count)]
    path = tmp_path / f"source{suffix}"
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, lossless=True, loop=0)
    source = read_image(path)
    assert source.shape == (3, 24, 32)
    assert torch.allclose(source, torch.full_like(source, 60 / 255), atol=1 / 255)


def test_a_source_that_is_missing_a_folder_or_a_damaged_gif_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.gif does not exist"):
        read_image(tmp_path / "missing.gif")
    (tmp_path / "frames.gif").mkdir()
    with pytest.raises(MediaError, match="frames.gif is a folder; the source must be a still image file"):
        read_image(tmp_path / "frames.gif")
    for name, data in (("empty.gif", b""), ("noise.gif", os.urandom(200))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(MediaError, match=f"cannot read .*{name} as an image: the file is empty, damaged or not a GIF"):
            read_image(tmp_path / name)


def test_a_transparent_gif_source_is_white_where_it_is_clear(tmp_path: Path) -> None:
    image = Image.new("P", (8, 8), 1)  # palette: 0 black (transparent), 1 red
    image.putpalette([0, 0, 0, 200, 0, 0] + [0, 0, 0] * 254)
    image.putpixel((0, 0), 0)
    image.save(tmp_path / "clear.gif", transparency=0)
    source = read_image(tmp_path / "clear.gif")
    assert torch.equal(source[:, 0, 0], torch.ones(3)) and source[0, 4, 4] > 0.7 and source[1, 4, 4] < 0.1


def test_folder_of_frames_in_natural_order(tmp_path: Path, frames: torch.Tensor) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(frames):
        write_image(folder / f"f{index * 5}.png", frame)  # f0, f5, f10...: natural, not text order
    (folder / "notes.txt").write_text("ignored")
    video = read_video(folder)
    assert torch.equal(torch.stack(list(video)), (frames * 255).round() / 255)
    assert video.info.fps == 25 and len(video) == 6
    assert read_video(folder, fps=8).info.fps == 8


def test_still_image_is_a_one_frame_video(tmp_path: Path, frames: torch.Tensor) -> None:
    path = write_image(tmp_path / "still.png", frames[0])
    video = read_video(path)
    assert video.is_still and len(video) == 1 and len(list(video)) == 1


def test_image_formats_alpha_grey_and_16_bit(tmp_path: Path, frames: torch.Tensor) -> None:
    rgb = (frames[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(rgb).save(tmp_path / "lossless.webp", lossless=True)
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=95)
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "grey.png")
    cv2.imwrite(str(tmp_path / "deep.png"), (rgb[:, :, ::-1].astype(np.uint16) * 257))
    expected = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    assert torch.equal(read_image(tmp_path / "alpha.png"), expected)
    assert torch.equal(read_image(tmp_path / "lossless.webp"), expected)
    assert torch.equal(read_image(tmp_path / "deep.png"), expected)
    assert (read_image(tmp_path / "photo.jpg") - expected).abs().mean() < 0.02
    grey = read_image(tmp_path / "grey.png")
    assert grey.shape == (3, 48, 64) and torch.equal(grey[0], grey[2])


def test_reading_streams_one_frame_at_a_time(tmp_path: Path, frames: torch.Tensor) -> None:
    path = write_video(tmp_path / "clip.mp4", frames)
    iterator = iter(read_video(path))
    first = next(iterator)
    assert first.shape == (3, 48, 64) and first.dtype == torch.float32
    assert len(list(iterator)) == 5


def test_max_frames_reads_only_the_first_frames(tmp_path: Path, frames: torch.Tensor) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(frames):
        write_image(folder / f"{index}.png", frame)
    for path in (write_video(tmp_path / "clip.avi", frames), folder):
        whole = torch.stack(list(read_video(path)))
        video = read_video(path, max_frames=4)
        assert len(video) == 4 and torch.equal(torch.stack(list(video)), whole[:4])
        assert len(list(video)) == 4  # still re-iterable
        assert len(read_video(path, max_frames=100)) == len(frames)
    with pytest.raises(MediaError, match="max_frames"):
        read_video(folder, max_frames=0)


def test_unreadable_inputs_are_explained(tmp_path: Path, frames: torch.Tensor) -> None:
    video = write_video(tmp_path / "clip.mp4", frames)
    with pytest.raises(MediaError, match="is a video; the source must be a still image"):
        read_image(video)
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(MediaError, match="cannot read .*broken.png as an image"):
        read_image(tmp_path / "broken.png")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match="no frames could be read"):
        read_video(tmp_path / "empty.mp4")
    (tmp_path / "garbage.mov").write_bytes(os.urandom(4096))
    with pytest.raises(MediaError, match="no frames could be read"):
        read_video(tmp_path / "garbage.mov")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(MediaError, match="holds no image files"):
        read_video(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError):
        read_video(tmp_path / "missing.mp4")


def test_a_cut_off_recording_is_explained_in_the_error_and_not_above_it(tmp_path: Path, frames: torch.Tensor, capfd) -> None:
    """FFmpeg prints why a file cannot be opened straight to stderr, once for every time it
    is opened: that reason belongs in the one error, and nothing else is printed."""
    whole = write_video(tmp_path / "whole.mp4", frames).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(whole[: whole.index(b"moov") - 4])  # a recording stopped before its index
    capfd.readouterr()
    with pytest.raises(MediaError, match=r"no frames could be read \(FFmpeg: moov atom not found; "):
        read_video(tmp_path / "cut.mp4")
    from fomm_model.training.data import read_video as read_training_video

    with pytest.raises(MediaError, match=r"cut.mp4: no frames could be decoded \(FFmpeg: moov atom not found; "):
        read_training_video(tmp_path / "cut.mp4")
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".webm"])
def test_writing_and_reading_a_video_prints_nothing(tmp_path: Path, frames: torch.Tensor, suffix: str, capfd) -> None:
    """OpenCV's FFmpeg has no tag for VP9 in WebM and said so on every .webm written."""
    capfd.readouterr()
    assert len(list(read_video(write_video(tmp_path / f"clip{suffix}", frames)))) == 6
    assert capfd.readouterr().err == ""


def test_lines_others_write_while_a_file_opens_are_not_lost(capfd) -> None:
    from fomm_model.video import _held_ffmpeg_messages

    with _held_ffmpeg_messages() as said:
        os.write(2, b"[mov,mp4 @ 0x55d94fa3ab00] moov atom not found\nanother thread's log line\n")
    assert said == ["[mov,mp4 @ 0x55d94fa3ab00] moov atom not found"]
    assert capfd.readouterr().err == "another thread's log line\n"


def test_interrupted_write_leaves_nothing_under_the_final_name(tmp_path: Path, frames: torch.Tensor) -> None:
    target = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(target, 10) as writer:
            writer.write(frames[:3])
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"previous result")
    with pytest.raises(RuntimeError):
        with VideoWriter(target, 10) as writer:
            writer.write(frames)
            raise RuntimeError("model failed")
    assert target.read_bytes() == b"previous result" and list(tmp_path.iterdir()) == [target]
    with VideoWriter(target, 10) as writer:
        writer.write(frames)
    assert len(list(read_video(target))) == 6 and list(tmp_path.iterdir()) == [target]
    for name in ("new/sub/out.mp4", "new/sub/frames"):  # the folders made for an output go with it
        with pytest.raises(RuntimeError):
            with VideoWriter(tmp_path / name, 10) as writer:
                writer.write(frames)
                raise RuntimeError("model failed")
        assert list(tmp_path.iterdir()) == [target]


def test_outputs_are_readable_by_others(tmp_path: Path, frames: torch.Tensor) -> None:
    mask = os.umask(0o022)
    try:
        write_video(tmp_path / "clip.mp4", frames)
        write_image(tmp_path / "still.png", frames[0])
        write_video(tmp_path / "folder", frames)
    finally:
        os.umask(mask)
    for name in ("clip.mp4", "still.png", "folder"):
        assert (tmp_path / name).stat().st_mode & 0o044 == 0o044


def test_frame_folder_output(tmp_path: Path, frames: torch.Tensor) -> None:
    write_video(tmp_path / "result", frames)
    assert sorted(p.name for p in (tmp_path / "result").iterdir())[:2] == ["frame_000000.png", "frame_000001.png"]
    assert len(read_video(tmp_path / "result")) == 6
    with pytest.raises(MediaError, match="never overwritten"):
        VideoWriter(tmp_path / "result", 10)


def test_writer_errors(tmp_path: Path, frames: torch.Tensor) -> None:
    with pytest.raises(MediaError, match="cannot write video"):
        VideoWriter(tmp_path / "out.gif", 10)
    with pytest.raises(MediaError, match="at least 0.01"):
        VideoWriter(tmp_path / "out.mp4", 0)
    with pytest.raises(MediaError, match="no frames were produced"):
        with VideoWriter(tmp_path / "out.mp4", 10):
            pass
    with pytest.raises(MediaError, match="8200x16 is too large for MPEG-4 video .* write .avi"):
        with VideoWriter(tmp_path / "wide.mp4", 10) as writer:
            writer.write(torch.zeros(3, 16, 8200))
    with pytest.raises(MediaError, match="below 1000"):
        VideoWriter(tmp_path / "out.mp4", float("inf"))
    assert list(tmp_path.iterdir()) == []


def _audio_streams(path: Path) -> str:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a", "-show_entries", "stream=codec_type", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_driving_audio_is_copied_when_ffmpeg_exists(tmp_path: Path, frames: torch.Tensor) -> None:
    """With ffmpeg on the PATH (Debian: apt-get install ffmpeg) the audio track is copied;
    without it the writer says so. The same test checks whichever applies here."""
    silent = write_video(tmp_path / "silent.mp4", frames)
    driving = tmp_path / "driving.mp4"
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        shutil.copy(silent, driving)
    else:
        subprocess.run(
            [ffmpeg, "-v", "error", "-i", str(silent), "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
             "-c:v", "copy", "-c:a", "aac", "-shortest", str(driving)],
            check=True,
        )  # fmt: skip
    with VideoWriter(tmp_path / "out.mp4", 12.5, audio_from=driving) as writer:
        writer.write(frames)
    if ffmpeg is None:
        assert "NOT copied" in writer.audio and "install ffmpeg" in writer.audio
    else:
        assert writer.audio == "audio copied from driving.mp4"
        assert _audio_streams(tmp_path / "out.mp4") == "audio"
        with VideoWriter(tmp_path / "out2.mp4", 12.5, audio_from=silent) as writer:
            writer.write(frames)
        assert writer.audio == "no audio: silent.mp4 has no audio track"
    assert len(list(read_video(tmp_path / "out.mp4"))) == 6
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("sound_seconds", [0.5, 5.0])
def test_the_result_lasts_as_long_as_its_frames(tmp_path: Path, sound_seconds: float) -> None:
    """A driving video whose sound stops early keeps every frame (ffmpeg's -shortest would cut
    the picture where the sound ends); a longer sound is cut at the last frame."""
    frames = smooth_frames(20, (48, 64), seed=3)
    driving = tmp_path / "driving.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(write_video(tmp_path / "silent.mp4", frames, fps=10)), "-f", "lavfi",
         "-i", f"sine=duration={sound_seconds}", "-c:v", "copy", "-c:a", "aac", str(driving)],
        check=True,
    )  # fmt: skip
    with VideoWriter(tmp_path / "out.mp4", 10, audio_from=driving) as writer:
        writer.write(frames)
    assert writer.audio == "audio copied from driving.mp4"
    assert len(list(read_video(tmp_path / "out.mp4"))) == 20
    assert _audio_streams(tmp_path / "out.mp4") == "audio"
    probe = ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(tmp_path / "out.mp4")]
    assert abs(float(subprocess.run(probe, capture_output=True, text=True, check=True).stdout) - 2.0) < 0.05


def test_frames_of_another_size_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="frame 4 for .* is 48x32 but the frames before it are 64x48"):
        with VideoWriter(tmp_path / "out.mp4", 10) as writer:
            writer.write(smooth_frames(3, (48, 64)))
            writer.write(smooth_frames(1, (32, 48)))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_viewers_do(tmp_path: Path, orientation: int) -> None:
    """Phone photos store the pixels sideways and say so in EXIF; they must come out upright."""
    pixels = (np.random.default_rng(orientation).random((30, 50, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path, exif=exif)
    with Image.open(path) as image:
        upright = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    read = read_image(path)
    assert np.array_equal((read * 255).round().byte().permute(1, 2, 0).numpy(), upright)


@pytest.mark.parametrize("suffix", [".webp", ".png"])
def test_animated_webp_and_png_are_videos(tmp_path: Path, frames: torch.Tensor, suffix: str) -> None:
    images = [Image.fromarray((frame * 255).round().byte().permute(1, 2, 0).numpy()) for frame in frames]
    path = tmp_path / f"anim{suffix}"
    images[0].save(path, save_all=True, append_images=images[1:], duration=80, lossless=True)
    video = read_video(path)
    assert (len(video), video.info.fps, video.is_still) == (6, 12.5, False)
    assert torch.allclose(torch.stack(list(video)), frames, atol=1 / 255)
    assert len(list(read_video(path, max_frames=2))) == 2


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".png"])
@pytest.mark.parametrize(
    ("durations", "fps", "shown"),
    [
        ([320, 40, 40, 40, 40, 40], 25, [0] * 8 + [1, 2, 3, 4, 5]),  # a held first frame does not set the rate
        ([100, 100, 100, 1500], 10, [0, 1, 2] + [3] * 15),  # the average (2.2 fps) kept 2 frames, 0.9 s of 1.8
        ([40, 200] * 3, 25, [0, 1, 1, 1, 1, 1, 2, 3, 3, 3, 3, 3, 4, 5, 5, 5, 5, 5]),  # the average dropped 40 ms frames
        ([100] * 5, 10, [0, 1, 2, 3, 4]),  # even: frame for frame
    ],
)
def test_an_animated_image_keeps_every_frame_for_as_long_as_it_shows(
    tmp_path: Path, suffix: str, durations: list[int], fps: float, shown: list[int]
) -> None:
    """Each frame of an animated GIF, WebP or PNG states its own duration: uneven ones are
    read at the rate of the shortest, each output frame the one on screen then, up to the
    end of the last frame's own duration."""
    images = [Image.fromarray(np.full((32, 32, 3), 40 * index, np.uint8)) for index in range(len(durations))]
    path = tmp_path / f"timed{suffix}"
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, lossless=True, loop=0)
    video = read_video(path)
    assert video.info.fps == pytest.approx(fps) and len(video) == len(shown)
    assert [round(float(frame.mean()) * 255 / 40) for frame in video] == shown


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".png"])
def test_a_delay_of_10_ms_or_less_shows_for_100_ms_as_in_browsers(tmp_path: Path, suffix: str) -> None:
    images = [Image.fromarray(np.full((16, 16, 3), 40 * index, np.uint8)) for index in range(3)]
    images[0].save(tmp_path / f"fast{suffix}", save_all=True, append_images=images[1:], duration=[0, 10, 100], loop=0, lossless=True)
    video = read_video(tmp_path / f"fast{suffix}")
    assert (video.info.fps, len(video)) == (pytest.approx(10), 3)


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_an_animation_that_slows_down_is_not_read_at_its_average(tmp_path: Path, suffix: str) -> None:
    """Ten frames of 110 ms, then ten of 90 ms: close to the average each, but drifting from its
    grid, which doubled one frame and dropped another; read at the shortest frame's rate,
    every frame shows, in order."""
    durations = [110] * 10 + [90] * 10
    images = [Image.fromarray(np.full((16, 16, 3), 10 * index, np.uint8)) for index in range(len(durations))]
    images[0].save(tmp_path / f"slow{suffix}", save_all=True, append_images=images[1:], duration=durations, loop=0, lossless=True)
    video = read_video(tmp_path / f"slow{suffix}")
    shown = [round(float(frame.mean()) * 255 / 10) for frame in video]
    assert video.info.fps == pytest.approx(1000 / 90) and sorted(set(shown)) == list(range(20)) and shown == sorted(shown)


def test_a_damaged_animation_keeps_the_timing_of_the_frames_before_the_damage(tmp_path: Path) -> None:
    images = [Image.fromarray(np.random.default_rng(index).integers(0, 255, (32, 32, 3), np.uint8)) for index in range(8)]
    images[0].save(tmp_path / "whole.gif", save_all=True, append_images=images[1:], duration=100, loop=0)
    data = (tmp_path / "whole.gif").read_bytes()
    (tmp_path / "cut.gif").write_bytes(data[: len(data) * 3 // 4])
    video = read_video(tmp_path / "cut.gif")
    assert video.info.fps == pytest.approx(10) and len(video) == len(list(video)) >= 2  # it read at 25 fps


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_a_rate_mpeg4_cannot_store_is_rounded_until_it_can(tmp_path: Path, frames: torch.Tensor, suffix: str, capfd) -> None:
    """200/3 fps (a variable-frame-rate clip's average) reaches MPEG-4 part 2 as 66667/1000,
    over its 65535 limit; the writer takes the nearest rate it can store, without trying the
    other first (FFmpeg printed its refusal on stderr)."""
    capfd.readouterr()
    with VideoWriter(tmp_path / f"out{suffix}", 200 / 3) as writer:
        writer.write(frames)
    assert writer.fps == 66.67
    assert "timebase" not in capfd.readouterr().err
    with VideoWriter(tmp_path / f"exact{suffix}", 70.004) as writer:  # 70004/1000 is 17501/250 in lowest terms: stored
        writer.write(frames)
    assert writer.fps == 70.004
    video = read_video(tmp_path / f"out{suffix}")
    assert video.info.fps == pytest.approx(66.67, abs=1e-3) and len(video) == len(frames)


_WRITE_WITH_A_SIZE_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys
    import torch
    from fomm_model.video import VideoWriter
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail (EFBIG) as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (48_000, 48_000))
    frames = torch.rand(300, 3, 160, 160, generator=torch.Generator().manual_seed(0))  # a PNG of noise: 77 kB
    try:
        with VideoWriter(sys.argv[1], 25) as writer:
            writer.write(frames)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}")
    """
)


@pytest.mark.parametrize("name", ["out.mp4", "out.avi", "out.webm", "frames"])
def test_a_full_disk_leaves_no_broken_output(tmp_path: Path, name: str) -> None:
    """OpenCV's video writer reports no write errors: a file that could not be written whole
    (here each file may hold 48 kB, what a full disk does to the writes after it) is found out
    when the writer closes and refused, and nothing is left under the output's name."""
    done = subprocess.run([sys.executable, "-c", _WRITE_WITH_A_SIZE_LIMIT, str(tmp_path / name)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    if name == "frames":  # the frame's own write fails, named for the folder asked for
        assert done.stdout.startswith(f"OSError: [Errno 27] File too large: '{tmp_path / name}'"), done.stdout + done.stderr
    else:
        assert re.match(r"MediaError: .* came out incomplete: 300 frames .* \(is the disk full\?\)", done.stdout), done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_variable_frame_rate_video_keeps_its_timing(tmp_path: Path) -> None:
    """A phone clip that drops from 30 to 10 frames per second (low light): read at its
    average rate, each frame is the one on screen at that time, so the sound stays in sync."""
    for index in range(40):  # frame i is grey level 6 i
        Image.fromarray(np.full((32, 32, 3), 6 * index, np.uint8)).save(tmp_path / f"f{index:02d}.png")
    video = tmp_path / "vfr.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-framerate", "30", "-i", str(tmp_path / "f%02d.png"), "-framerate", "10", "-start_number",
         "30", "-i", str(tmp_path / "f%02d.png"), "-filter_complex", "[0:v]trim=end_frame=30[a];[a][1:v]concat=n=2:v=1[v]",
         "-map", "[v]", "-fps_mode", "vfr", "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", str(video)],
        check=True,
    )  # fmt: skip
    probe = ["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=pts_time", "-of", "csv=p=0", str(video)]
    starts = np.sort([float(line.strip(",")) for line in subprocess.run(probe, capture_output=True, text=True, check=True).stdout.split()])
    assert np.allclose(np.diff(starts)[[0, -1]], [1 / 30, 1 / 10], atol=1e-3)  # the clip really is variable
    reader = read_video(video)
    shown = [round(float(frame.mean()) * 255 / 6) for frame in reader]
    period = 1 / reader.info.fps
    due = [int(np.searchsorted(starts, k * period + period / 2, side="right")) - 1 for k in range(len(shown))]
    assert shown == due
    assert shown[-1] >= 38 and len(shown) * period > 1.8  # to the end (OpenCV may not decode the very last frame)
    assert len(list(read_video(video, max_frames=5))) == 5


def test_missing_ffmpeg_is_reported(tmp_path: Path, frames: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> None:
    driving = write_video(tmp_path / "driving.mp4", frames)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with VideoWriter(tmp_path / "out.mp4", 12.5, audio_from=driving) as writer:
        writer.write(frames)
    assert writer.audio == "audio NOT copied: no ffmpeg binary on the PATH (install ffmpeg to keep the driving audio)"
    with VideoWriter(tmp_path / "out.avi", 12.5, audio_from=tmp_path / "frames.gif") as writer:
        writer.write(frames)
    assert "not a video with sound" in writer.audio


def test_a_transparent_gif_is_white_where_it_is_clear_as_opencv_reads_it(tmp_path: Path) -> None:
    """GIFs are read with Pillow for animation and with OpenCV for training; the clear pixels
    were the hidden palette colour (green here) in one and white in the other."""
    frames = []
    for shift in range(3):
        indices = np.zeros((16, 16), np.uint8)
        indices[:, : 4 + 4 * shift] = 1  # red on the left, growing; the rest transparent
        frame = Image.fromarray(indices, "P")
        frame.putpalette([10, 200, 30, 255, 0, 0] + [0] * 762)
        frames.append(frame)
    frames[0].save(tmp_path / "clear.gif", save_all=True, append_images=frames[1:], duration=100, loop=0, transparency=0, disposal=2)
    read = [frame.permute(1, 2, 0).numpy() for frame in read_video(tmp_path / "clear.gif")]
    assert len(read) == 3 and np.allclose(read[0][8, 12], 1.0) and np.allclose(read[0][8, 2], [1.0, 0, 0])
    opencv = [frame for frame in decode_video(tmp_path / "clear.gif")]
    assert np.allclose(read[0] * 255, opencv[0], atol=1)
