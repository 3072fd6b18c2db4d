"""Reading stills and videos as float tensors and writing videos, streaming, with OpenCV.

Frames are decoded as (H, W, 3) uint8 RGB arrays (the numpy layer, which the training
datasets use too) and handed out as (3, H, W) float32 RGB tensors in [0, 1], read and
written one at a time so memory does not depend on the video's length. A "video" is a
video file (mp4, mov, webm, mkv, avi, gif), a folder of numbered frames, or a still image
(a one-frame video). Outputs
are written under a temporary name next to the target and renamed into place only when
complete, so an interrupted run never leaves a half-written file under the final name.
The driving video's audio is copied into the output when an ``ffmpeg`` binary is on the
PATH; nothing else needs it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image, ImageSequence
from torch import Tensor

from .checkpoint import atomic_dir, atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".gif")
# OpenCV's bundled FFmpeg has no H.264 encoder; MPEG-4 part 2 plays in VLC/ffmpeg-based players.
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG", ".webm": "VP90"}
WRITABLE_VIDEO_SUFFIXES = tuple(_FOURCC)
_AUDIO_CODEC = {".webm": "libopus", ".avi": "libmp3lame"}  # aac for the others
DEFAULT_FPS = 25.0
MAX_FPS = 1000.0  # above this a rate is a typo; video encoders refuse such rates anyway
MIN_FPS = 0.01  # a frame every 100 s; OpenCV's writer cannot state a rate of 0.001 at all
MPEG4_MAX_SIDE = 8191  # MPEG-4 part 2 (what .mp4, .mov and .mkv get here) stores sides in 13 bits
MPEG4_MAX_RATE_NUMERATOR = 65535  # and its time base in 16 bits
ANIMATION_MAX_FPS = 50.0  # an animated image with brief frames is read at most this fast (unless its average is faster)


class MediaError(ValueError):
    """A file that cannot be used as asked; the message says what to do instead."""


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    frame_count: int | None  # None when the container does not say
    size: tuple[int, int]  # (H, W)


# ---------------------------------------------------------------------------- decoding
# The toolkit's one decoding layer, in numpy: the tensor readers below and the training
# datasets (fomm_model.training.data) read every frame through it, so frame order, colour
# order and bit depth are the same everywhere.
def frame_files(folder: str | os.PathLike) -> list[Path]:
    """The image files of a folder of frames in natural order (frame2 before frame10);
    hidden files (such as macOS ``._frame.png`` companions) are not frames."""
    files = [f for f in Path(folder).iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")]
    return sorted(files, key=lambda f: [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", f.name)])


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; raises :class:`MediaError` naming the file when
    it cannot be decoded. The bytes are read first, so any path name works."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise MediaError(
            f"cannot read {path} as an image: the file is empty, damaged or not in a supported format "
            f"({', '.join(IMAGE_SUFFIXES)})"
        )
    return _upright(_rgb_uint8(image, path), _exif_orientation(data))


# EXIF orientation (tag 0x0112) -> how to turn the stored pixels to show them as viewers do.
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def _exif_orientation(data: np.ndarray) -> int:
    """The EXIF orientation a camera stored in an image file's bytes (1 = as stored). OpenCV's
    unchanged decode, which keeps 16-bit depth and alpha, ignores it; phone photos need it to
    stand upright. Only the header is parsed: a PNG without an eXIf chunk is not looked at
    (Pillow would decode all its pixels to search for one)."""
    raw = data.tobytes()
    if raw.startswith(b"\x89PNG") and b"eXIf" not in raw:
        return 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # OpenCV has decoded it already
            with Image.open(io.BytesIO(raw)) as image:
                return int(image.getexif().get(0x0112, 1))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):  # OpenCV decoded what Pillow cannot
        return 1


def _upright(image: np.ndarray, orientation: int) -> np.ndarray:
    turn = _ORIENT.get(orientation)
    return image if turn is None else np.ascontiguousarray(turn(image))


def decode_video(path: str | os.PathLike, stop: int | None = None) -> Iterator[np.ndarray]:
    """The frames of a video file as (H, W, 3) uint8 RGB, decoded one at a time; with
    ``stop``, only the first ``stop`` frames are decoded. Yields nothing for a file that
    cannot be decoded (the caller says what that means for it). A GIF that OpenCV's
    FFmpeg cannot decode is read with Pillow."""
    return (image for _, image in _timed_frames(Path(path), stop))


def _timed_frames(path: Path, stop: int | None = None) -> Iterator[tuple[float | None, np.ndarray]]:
    """:func:`decode_video`'s frames with their presentation times in milliseconds (None
    where the decoder gives none)."""
    decoded = 0
    capture = _open_capture(path)
    try:
        while stop is None or decoded < stop:
            ok, image = capture.read()
            if not ok:
                break
            decoded += 1
            yield capture.get(cv2.CAP_PROP_POS_MSEC), _rgb_uint8(image, path)
    finally:
        capture.release()
    if decoded == 0 and path.suffix.lower() == ".gif":
        yield from itertools.islice(_frames_with_pillow(path), stop)


def _constant_rate(
    timed: Iterable[tuple[float | None, np.ndarray]], fps: float, end: float | None = None
) -> Iterator[np.ndarray]:
    """Frames with presentation times (ms) -> frames at the constant rate ``fps``, each
    showing what is on screen then, so a variable-frame-rate video (phones drop to fewer
    frames per second in low light) keeps in time with its sound. Output frame k is the frame
    shown at ``t0 + k / fps``, looked up half a frame late, so a constant-rate video (jittery
    millisecond timestamps included) comes out frame for frame. The last frame lasts until
    ``end`` (ms) where the file says (an animated image's last frame may be held for
    seconds), else one period. Times that do not advance are not trusted: from there on the
    frames pass as they are."""
    period = 1000.0 / fps
    held: tuple[float, np.ndarray] | None = None
    start, k = 0.0, 0
    frames = iter(timed)
    for time, image in frames:
        if time is None or (held is not None and time <= held[0]):
            if held is not None:
                yield held[1]
            yield image
            yield from (image for _, image in frames)
            return
        if held is None:
            start = time
        else:
            while start + k * period < time - period / 2:  # grid times nearer the held frame than this one
                yield held[1]
                k += 1
        held = (time, image)
    if held is not None:
        last_end = held[0] + period if end is None else max(end, held[0] + 1e-6)
        while start + k * period < last_end - period / 2:
            yield held[1]
            k += 1


def stated_frame_count(path: str | os.PathLike) -> int | None:
    """The number of frames a video file's container states, or None when it says nothing."""
    capture = _open_capture(path)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    return count if count > 0 else None


def stated_fps(path: str | os.PathLike) -> float | None:
    """The frame rate a video file states, or None."""
    capture = _open_capture(path)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return fps if fps and np.isfinite(fps) and fps > 0 else None


def _rgb_uint8(image: np.ndarray, path: Path) -> np.ndarray:
    """An OpenCV-decoded image (grey, grey+alpha, BGR or BGRA; 8 or 16 bit or float) as
    (H, W, 3) uint8 RGB. Alpha is dropped (FOMM sees colour only); 16-bit values are rounded
    to the nearest 8-bit value (v / 257), float values are taken as [0, 1]."""
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        raise MediaError(f"{path}: pixels of type {image.dtype} are not supported; use 8 or 16 bit images")
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels in (1, 2):
        return np.ascontiguousarray(np.repeat(image[:, :, :1], 3, axis=2))
    if channels in (3, 4):
        return np.ascontiguousarray(image[:, :, 2::-1])
    raise MediaError(f"{path}: images with {channels} channels are not supported")


def _frames_with_pillow(path: Path) -> Iterator[tuple[float | None, np.ndarray]]:
    """The frames of an animated image (GIF, WebP, APNG) as (H, W, 3) uint8 RGB, each with
    the time it is first shown in milliseconds (None when the file gives no durations)."""
    start: float | None = 0.0
    try:
        with Image.open(path) as image:
            for frame in ImageSequence.Iterator(image):
                yield start, _opaque_rgb(frame, path)  # decoding sets the duration
                duration = _shown_ms(frame, path)
                start = start + duration if start is not None and duration > 0 else None
    except (OSError, ValueError):
        return


def _opaque_rgb(frame: Image.Image, path: Path) -> np.ndarray:
    """A frame as a writable (H, W, 3) uint8 RGB array. A GIF's transparent pixels are white,
    as OpenCV (which reads GIFs for training) gives them, not the hidden palette colour under
    them; other formats drop alpha, as for still images."""
    if path.suffix.lower() == ".gif" and (frame.mode in ("RGBA", "LA") or "transparency" in frame.info):
        white = Image.new("RGBA", frame.size, (255, 255, 255, 255))
        return np.array(Image.alpha_composite(white, frame.convert("RGBA")).convert("RGB"))
    return np.array(frame.convert("RGB"))


def _shown_ms(frame: Image.Image, path: Path) -> float:
    """How long a decoded frame of an animated image is on screen, in ms. A delay of 10 ms or
    less (tools write 0 or 10 meaning "as fast as possible") is shown for 100 ms, as browsers
    do for GIF, WebP and APNG alike."""
    duration = float(frame.info.get("duration") or 0)
    return 100.0 if duration <= 10 else duration


def _animation_durations(path: Path) -> list[float] | None:
    """Each frame's time on screen (ms) of an animated image, as far as its frames decode (a
    damaged file keeps the timing of those before the damage); None when fewer than two do."""
    durations: list[float] = []
    decode = path.suffix.lower() == ".webp"  # WebP states a frame's duration only once it is decoded; GIF and APNG when seeked
    try:
        with Image.open(path) as image:
            if getattr(image, "n_frames", 1) < 2:  # a still: nothing more to read
                return None
            for frame in ImageSequence.Iterator(image):
                if decode:
                    frame.load()
                durations.append(_shown_ms(frame, path))
    except (OSError, ValueError, SyntaxError):
        pass
    return durations if len(durations) > 1 else None


def _animation_rate(durations: Sequence[float]) -> float:
    """The constant rate to read an animated image at: its average where every frame starts
    within a quarter period of its place on that grid (then it is read frame for frame),
    else that of its shortest frame, up to :data:`ANIMATION_MAX_FPS`, so brief frames are not
    skipped and held ones are repeated for as long as they show (the average would drop the
    quick frames of a GIF that holds its last one for seconds, or of one that slows down)."""
    period = sum(durations) / len(durations)
    starts = itertools.accumulate(durations[:-1], initial=0.0)
    if all(abs(start - index * period) < period / 4 for index, start in enumerate(starts)):
        return 1000.0 / period
    return min(1000.0 / min(durations), max(ANIMATION_MAX_FPS, 1000.0 / period))


def to_tensor(rgb: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255)


# ---------------------------------------------------------------------------- reading
def is_video_path(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in VIDEO_SUFFIXES


def read_image(path: str | os.PathLike) -> Tensor:
    """A still image as a (3, H, W) float tensor; alpha is dropped, grey becomes RGB.

    A GIF gives its first frame, as an animated WebP or PNG does (and as the original demo
    read its source): GIFs are often stills, and an animated one's first frame is what a
    source of it can mean. Its transparent pixels are white, as in driving GIFs.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        raise MediaError(f"{path} is a folder; the source must be a still image file (png, jpg, webp, gif)")
    if path.suffix.lower() == ".gif":
        return to_tensor(_first_gif_frame(path))
    if is_video_path(path):
        raise MediaError(f"{path} is a video; the source must be a still image (png, jpg, webp, gif): export one frame of it")
    return to_tensor(decode_image(path))


def _first_gif_frame(path: Path) -> np.ndarray:
    """Only the first frame is decoded (reading it as a video would decode every frame for
    the durations)."""
    try:
        with Image.open(path) as image:
            return _opaque_rgb(image, path)
    except (OSError, ValueError):
        raise MediaError(f"cannot read {path} as an image: the file is empty, damaged or not a GIF") from None


def read_video(path: str | os.PathLike, fps: float | None = None, max_frames: int | None = None) -> "VideoReader":
    """A re-iterable reader over a video file, a folder of frames or a still image.

    ``fps`` overrides the rate the file states (folders and stills have none and get
    ``fps`` or 25). ``max_frames`` reads only the first frames (nothing after them is
    decoded). Raises :class:`MediaError` at once when no frame can be read.
    """
    return VideoReader(Path(path), fps, max_frames)


class VideoReader:
    """Iterating yields (3, H, W) frames, opening the source afresh each time, so the
    video can be read twice (best-frame search, face boxes) without holding it in memory."""

    def __init__(self, path: Path, fps: float | None = None, max_frames: int | None = None):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        if max_frames is not None and max_frames < 1:
            raise MediaError(f"max_frames must be at least 1, got {max_frames}")
        self.path = path
        self.max_frames = max_frames
        self._frames = frame_files(path) if path.is_dir() else None
        if self._frames is not None and not self._frames:
            raise MediaError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)}): nothing to animate")
        first = next(iter(self), None)
        if first is None:
            raise MediaError(
                f"cannot open {path} as a video: no frames could be read ({ffmpeg_says(path)}the file is empty, "
                "damaged or in an unsupported format)"
            )
        count = self._count()
        if count is not None and max_frames is not None:
            count = min(count, max_frames)
        self.info = VideoInfo(fps=fps or self.file_fps or DEFAULT_FPS, frame_count=count, size=tuple(first.shape[-2:]))

    @property
    def is_still(self) -> bool:
        return self._frames is None and self.path.suffix.lower() in IMAGE_SUFFIXES and not self._durations

    @functools.cached_property
    def _durations(self) -> list[float] | None:
        """Each frame's time on screen (ms) of an animated GIF, WebP or PNG (APNG), which is read
        with Pillow; None for anything else (a GIF Pillow cannot read goes to OpenCV)."""
        if self._frames is not None or self.path.suffix.lower() not in (".gif", ".webp", ".png"):
            return None
        return _animation_durations(self.path)

    @functools.cached_property
    def file_fps(self) -> float | None:
        """The frame rate the file states (for an animated image, see :func:`_animation_rate`);
        None for folders of frames and stills. ``info.fps`` is this unless overridden."""
        if self._durations:
            return _animation_rate(self._durations)
        return None if self._frames is not None or self.is_still else stated_fps(self.path)

    def __len__(self) -> int:
        if self.info.frame_count is None:
            raise TypeError(f"{self.path} does not state its frame count")
        return self.info.frame_count

    def __iter__(self) -> Iterator[Tensor]:
        return (to_tensor(image) for image in self._decode())

    def _decode(self) -> Iterator[np.ndarray]:
        if self._frames is not None:
            for file in self._frames[: self.max_frames]:
                try:
                    yield decode_image(file)
                except MediaError as exc:
                    raise MediaError(f"frame {file.name} of {self.path}: {exc}") from None
        elif self.is_still:
            yield decode_image(self.path)
        else:
            timed = _frames_with_pillow(self.path) if self._durations else _timed_frames(self.path)
            yield from itertools.islice(self._at_file_rate(timed), self.max_frames)

    def _at_file_rate(self, timed: Iterable[tuple[float | None, Any]]) -> Iterator[Any]:
        rate = self.file_fps
        if not rate:
            return (image for _, image in timed)
        return _constant_rate(timed, rate, sum(self._durations) if self._durations else None)

    def _count(self) -> int | None:
        if self._frames is not None:
            return len(self._frames)
        if self._durations:  # the frames at the rate they are read at, from the durations alone
            starts = itertools.accumulate(self._durations[:-1], initial=0.0)
            return sum(1 for _ in self._at_file_rate((start, None) for start in starts))
        return 1 if self.is_still else stated_frame_count(self.path)


def check_frame_rate(fps: float, what: str = "the frame rate") -> None:
    """Refuse a rate no video can be written at (NaN included)."""
    if not MIN_FPS <= fps < MAX_FPS:
        raise MediaError(f"{what} must be at least {MIN_FPS:g} and below {MAX_FPS:g}, got {fps}")


# Suffixes that make an output name a file (an unwritable one is refused by name): every
# other suffix (take.1, clip.v2, "v1.2 final") is part of a frames folder's name.
MEDIA_SUFFIXES = frozenset(
    (*WRITABLE_VIDEO_SUFFIXES, *VIDEO_SUFFIXES, *IMAGE_SUFFIXES, ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ogv", ".apng", ".heic")
)


def names_frame_folder(path: str | os.PathLike) -> bool:
    """Whether an output name stands for a folder of PNG frames: it has no media suffix."""
    return Path(path).suffix.lower() not in MEDIA_SUFFIXES


def check_new_frame_folder(path: Path) -> None:
    """Frame folders are written whole, so one that is already there is refused, never replaced."""
    if path.exists():
        raise MediaError(f"{path} already exists; frame folders are never overwritten: remove it or pick another name")


def to_bgr_uint8(frame: Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8 BGR for OpenCV."""
    rgb = frame.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(rgb[:, :, ::-1])


# ---------------------------------------------------------------------------- writing
def write_image(path: str | os.PathLike, frame: Tensor) -> Path:
    """Write one (3, H, W) frame as png/jpg/webp, atomically."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise MediaError(f"{path}: an image needs one of the suffixes {', '.join(IMAGE_SUFFIXES)}")
    ok, encoded = cv2.imencode(path.suffix.lower(), to_bgr_uint8(frame))
    if not ok:
        raise MediaError(f"OpenCV cannot encode {path.suffix} images here; use .png")
    with atomic_path(path) as temporary:
        temporary.write_bytes(encoded.tobytes())
    return path


class VideoWriter:
    """Writes frames to a video file or a folder of PNG frames, renamed into place on success.

    Use as a context manager. ``path`` with a video suffix (mp4, mov, mkv, avi, webm)
    gives a video file, a path without suffix a folder of ``frame_000000.png`` files.
    ``audio_from``: a video whose audio track is copied in when ffmpeg is available;
    afterwards :attr:`audio` says what happened, in words. Video files get even sides
    (their codecs' 4:2:0 colour needs them; OpenCV would crop silently): an odd last row
    or column is dropped, and :attr:`size` says what was written; likewise :attr:`fps`, which
    is rounded where the codec cannot store the rate asked for.
    """

    def __init__(self, path: str | os.PathLike, fps: float, audio_from: str | os.PathLike | None = None):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if not self.is_folder and suffix not in WRITABLE_VIDEO_SUFFIXES:
            raise MediaError(
                f"cannot write video {self.path}: use one of {', '.join(WRITABLE_VIDEO_SUFFIXES)}, "
                "or a name without a media suffix for a folder of PNG frames"
            )
        if self.is_folder:
            check_new_frame_folder(self.path)
        check_frame_rate(fps)
        self.fps = float(fps)
        self.audio_from = Path(audio_from) if audio_from is not None else None
        self.audio = "not requested"
        self.frames_written = 0
        self.size: tuple[int, int] | None = None  # (width, height) of the frames as written
        self._writer: cv2.VideoWriter | None = None
        self._temporary: Path | None = None
        self._staged: ExitStack | None = None  # renames the temporary into place, or removes it

    @property
    def is_folder(self) -> bool:
        return names_frame_folder(self.path)

    def __enter__(self) -> "VideoWriter":
        self._staged = ExitStack()
        # OpenCV picks the container by the file name's suffix, so the temporary keeps it
        temporary = atomic_dir(self.path) if self.is_folder else atomic_path(self.path, suffix=self.path.suffix)
        self._temporary = self._staged.enter_context(temporary)
        return self

    def write(self, frames: Tensor) -> None:
        """Append a (3, H, W) frame or an (n, 3, H, W) batch."""
        if self._temporary is None:
            raise RuntimeError("use VideoWriter as a context manager")
        for frame in frames if frames.ndim == 4 else frames[None]:
            image = to_bgr_uint8(frame)
            if not self.is_folder:
                image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
            if self.size is not None and self.size != (image.shape[1], image.shape[0]):
                raise MediaError(
                    f"frame {self.frames_written + 1} for {self.path} is {image.shape[1]}x{image.shape[0]} but the "
                    f"frames before it are {self.size[0]}x{self.size[1]}: every frame of a video must have one size"
                )
            if self.is_folder:
                ok, encoded = cv2.imencode(".png", image)
                if not ok:
                    raise MediaError(f"OpenCV could not encode frame {self.frames_written + 1} for {self.path} as PNG")
                # written by Python, not cv2.imwrite, so a full disk raises instead of being printed
                try:
                    (self._temporary / f"frame_{self.frames_written:06d}.png").write_bytes(encoded.tobytes())
                except OSError as exc:  # named for the folder asked for, not the temporary
                    raise OSError(exc.errno, exc.strerror, str(self.path)) from None
            else:
                if self._writer is None:
                    self._writer = self._open(image.shape[1], image.shape[0])
                self._writer.write(image)
            self.size = (image.shape[1], image.shape[0])
            self.frames_written += 1

    def _open(self, width: int, height: int) -> cv2.VideoWriter:
        codec = _FOURCC[self.path.suffix.lower()]
        if codec == "mp4v" and max(width, height) > MPEG4_MAX_SIDE:
            raise MediaError(
                f"{self.path}: {width}x{height} is too large for MPEG-4 video ({MPEG4_MAX_SIDE} pixels a side at most): "
                "write .avi, or a name without a media suffix for a folder of PNG frames"
            )
        for rate in _writable_rates(self.fps, codec):
            # each refusal logs an error and a fallback's failure; for .webm OpenCV also prints that
            # its FFmpeg has no tag for the codec in that container, before it does without one
            with _quiet_opencv(), _held_ffmpeg_messages() as said:
                writer = cv2.VideoWriter(str(self._temporary), cv2.VideoWriter_fourcc(*codec), rate, (width, height))
            if writer.isOpened():
                self.fps = rate
                return writer
        others = [suffix for suffix in (".mp4", ".avi") if suffix != self.path.suffix.lower()]
        reason = f" ({_last_message(said)})" if said else ""
        raise MediaError(
            f"OpenCV cannot write {width}x{height} {self.path.suffix} video here{reason}; try {' or '.join(others)}, "
            "or a name without a media suffix for a folder of PNG frames"
        )

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        temporary, staged = self._temporary, self._staged
        self._temporary = self._staged = None
        if temporary is None or staged is None:
            return
        if kind is not None:
            staged.__exit__(kind, error, traceback)  # removes the temporary; the error goes on
            return
        with staged:  # renamed into place when the checks below pass, removed when they raise
            if self.frames_written == 0:
                raise MediaError(f"no frames were produced, so {self.path} was not written")
            if not self.is_folder:
                _check_complete(temporary, self.frames_written, self.path)
            if not self.is_folder and self.audio_from is not None:
                duration = self.frames_written / self.fps
                self.audio = _copy_audio(temporary, self.audio_from, self.path.suffix.lower(), duration)


def _writable_rates(fps: float, codec: str) -> list[float]:
    """``fps``, then rounded to 3, 2, 1 and 0 decimals, leaving out those ``codec`` cannot
    store. OpenCV hands the encoder a rate as a fraction over a power of ten, and MPEG-4 part 2
    refuses numerators above 65535: 200/3 fps (a variable-frame-rate video's average, say)
    becomes 66667/1000, while 66.67 fps (6667/100; 0.2 s of drift an hour) is written. Those
    are skipped rather than tried, so no encoder is opened only to refuse."""
    rates = [fps]
    for decimals in (3, 2, 1, 0):
        rounded = round(fps, decimals)
        if rounded > 0 and rounded not in rates:
            rates.append(rounded)
    if codec == "mp4v":
        rates = [rate for rate in rates if _opencv_rate_fraction(rate)[0] <= MPEG4_MAX_RATE_NUMERATOR] or rates[-1:]
    return rates


def _opencv_rate_fraction(fps: float) -> tuple[int, int]:
    """The rate as the encoder gets it from OpenCV's FFmpeg writer, in lowest terms: the first
    fraction over a power of ten within 0.001 of ``fps`` (70.004 = 70004/1000 = 17501/250,
    which MPEG-4 stores)."""
    numerator, denominator = int(fps + 0.5), 1
    while abs(numerator / denominator - fps) > 0.001:
        denominator *= 10
        numerator = int(fps * denominator + 0.5)
    common = math.gcd(numerator, denominator)
    return numerator // common, denominator // common


# FFmpeg, inside OpenCV, writes its messages (and OpenCV its own FFmpeg notes) straight to the
# process's stderr, beneath Python's logging and OpenCV's log level. While a file is opened they
# are held at the file descriptor: a file that opens needs none of them, and for one that does
# not, the last says why, in the error raised (:func:`ffmpeg_says`) instead of above it.
_FFMPEG_LINE = re.compile(r"^(\[[^\]]+ @ 0x[0-9a-fA-F]+\] |OpenCV: FFMPEG: )")
_STDERR_HELD = threading.Lock()  # one holder at a time: the descriptor is the process's


@contextlib.contextmanager
def _held_ffmpeg_messages() -> Iterator[list[str]]:
    """Hold what is written to the process's stderr while the block runs. The list yielded
    gets FFmpeg's lines when the block ends; any other line (another thread's log, say) is
    written back to stderr then, late but not lost."""
    said: list[str] = []
    with _STDERR_HELD, tempfile.TemporaryFile() as sink:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no stderr to hold (pythonw, a closed descriptor)
            yield said
            return
        os.dup2(sink.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            others = []
            for line in sink.read().decode(errors="replace").splitlines():
                (said if _FFMPEG_LINE.match(line) else others).append(line)
            if others:
                os.write(2, "".join(f"{line}\n" for line in others).encode())


def _open_capture(path: str | os.PathLike) -> cv2.VideoCapture:
    """``cv2.VideoCapture`` without FFmpeg's messages (see :func:`ffmpeg_says`)."""
    with _held_ffmpeg_messages():
        return cv2.VideoCapture(str(path))


def _last_message(said: Sequence[str]) -> str:
    return "FFmpeg: " + _FFMPEG_LINE.sub("", said[-1]).strip()


def ffmpeg_says(path: str | os.PathLike) -> str:
    """What FFmpeg says when it opens ``path``, its last line as "FFmpeg: ...; ", or "" when it
    says nothing: for the error about a video that cannot be read, where it names the reason
    ("moov atom not found": a recording cut off before it was finished)."""
    with _held_ffmpeg_messages() as said:
        cv2.VideoCapture(str(path)).release()
    return f"{_last_message(said)}; " if said else ""


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _check_complete(video: Path, frames: int, target: Path) -> None:
    """Refuse a video file that did not come out whole. OpenCV's writer reports no write
    errors, so a full disk leaves a file without its index (mp4, mov), with a header that
    counts no frames (avi) or with its last frames missing (webm): the file must state
    ``frames`` frames and its last one must decode. Cheap: one seek, one frame decoded."""
    with _quiet_opencv():
        capture = _open_capture(video)
        try:
            stated = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
            last = stated == frames and capture.set(cv2.CAP_PROP_POS_FRAMES, frames - 1) and capture.read()[0]
        finally:
            capture.release()
    if not last:
        raise MediaError(
            f"{target} came out incomplete: {frames} frames were written but cannot all be read back (is the disk "
            "full?); nothing was kept under that name. Free some space or write elsewhere"
        )


# ---------------------------------------------------------------------------- audio
def ffmpeg_binary() -> str | None:
    return shutil.which("ffmpeg")


def has_audio_track(path: Path) -> bool | None:
    """Whether ``path`` has an audio stream (None when ffprobe is not available to tell)."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None
    result = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "a", "-show_entries", "stream=index", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
    )
    return result.returncode == 0 and bool(result.stdout.strip())


def _copy_audio(video: Path, audio_source: Path, suffix: str, duration: float) -> str:
    """Mux ``audio_source``'s first audio track into ``video`` in place; returns what happened.

    The result lasts ``duration`` seconds, the video's: a longer track is cut there, a shorter
    one ends early. Never the other way round (``-shortest`` would drop the frames after a
    short sound ends)."""
    if audio_source.is_dir() or audio_source.suffix.lower() in IMAGE_SUFFIXES + (".gif",):
        return f"no audio: {audio_source.name} is not a video with sound"
    ffmpeg = ffmpeg_binary()
    if ffmpeg is None:
        return "audio NOT copied: no ffmpeg binary on the PATH (install ffmpeg to keep the driving audio)"
    if has_audio_track(audio_source) is False:
        return f"no audio: {audio_source.name} has no audio track"
    try:
        with atomic_path(video, suffix=suffix) as muxed:  # ffmpeg, too, picks the container by suffix
            command = [
                ffmpeg, "-v", "error", "-y", "-i", str(video), "-i", str(audio_source),
                "-map", "0:v:0", "-map", "1:a:0?", "-c:v", "copy", "-c:a", _AUDIO_CODEC.get(suffix, "aac"), "-t", f"{duration:.6f}", str(muxed),
            ]  # fmt: skip
            subprocess.run(command, capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as exc:
        message = exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else "no message"
        return f"audio NOT copied: ffmpeg failed ({message})"
    return f"audio copied from {audio_source.name}"
