"""Training and test videos in the original dataset layouts.

A dataset folder holds videos, either directly (split 80/20 by seed) or in ``train/`` and
``test/``. A video is a folder of frames, a ``.png``/``.jpg`` strip of frames side by side,
or a ``.gif``/``.mp4``/``.mov`` (also ``.avi``/``.mkv``/``.webm``) file. Videos that cannot be
read are reported by name, with the reason, and left out; a dataset with none readable is
an error.

Randomness is explicit: a training item draws its frames and augmentation from a generator
seeded by ``(random_seed, epoch, draw)``, so items do not depend on which DataLoader worker
or process produces them, and a resumed run sees the same data. Call :meth:`set_epoch`
before each epoch (like ``DistributedSampler.set_epoch``) to get new draws; DataLoaders with
``persistent_workers=True`` keep the epoch they started with.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from PIL import Image, ImageSequence
from torch.utils.data import Dataset

from .augmentation import Augmentation
from .config import DatasetParams

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
STRIP_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".gif", ".mp4", ".mov", ".avi", ".mkv", ".webm")


class VideoReadError(ValueError):
    """A video that cannot be read; the message names the file and the reason."""


# ----------------------------------------------------------------------------- reading
def _to_rgb_float(image: np.ndarray, source: str) -> np.ndarray:
    """Grey, grey+alpha, RGB or RGBA (8 or 16 bit) -> RGB float32 in [0, 1]; alpha is dropped
    (as in the original)."""
    if image.dtype == np.uint8:
        scaled = image.astype(np.float32) / 255
    elif image.dtype == np.uint16:
        scaled = image.astype(np.float32) / 65535
    elif image.dtype in (np.float32, np.float64):
        scaled = np.clip(image, 0, 1).astype(np.float32)
    else:
        raise VideoReadError(f"{source}: unsupported pixel type {image.dtype}")
    if scaled.ndim == 2:
        scaled = scaled[..., None]
    channels = scaled.shape[-1]
    if channels in (1, 2):
        return np.repeat(scaled[..., :1], 3, axis=-1)
    if channels in (3, 4):
        return np.ascontiguousarray(scaled[..., :3])
    raise VideoReadError(f"{source}: images with {channels} channels are not supported")


def read_image(path: str | Path) -> np.ndarray:
    """One image file as (H, W, 3) float32 RGB in [0, 1]."""
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    if data is None:
        raise VideoReadError(f"{path}: no such file")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise VideoReadError(f"{path}: not an image OpenCV can decode (empty or corrupt file?)")
    if image.ndim == 3 and image.shape[-1] >= 3:
        order = [2, 1, 0, 3][: image.shape[-1]]  # OpenCV decodes BGR(A)
        image = image[..., order]
    return _to_rgb_float(image, str(path))


def frame_files(folder: str | Path) -> list[Path]:
    """The frames of a folder-of-frames video: its image files, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(T, h, w, 3) -> (T, H, W, 3): area averaging when shrinking, bilinear when enlarging."""
    height, width = size
    if frames.shape[1:3] == (height, width):
        return frames
    shrink = height * width < frames.shape[1] * frames.shape[2]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (width, height), interpolation=interpolation) for f in frames])


def _split_strip(image: np.ndarray, frame_shape: tuple[int, int] | None, source: str) -> np.ndarray:
    """A horizontal strip -> (T, h, h*W/H, 3) frames; each frame has ``frame_shape``'s aspect
    ratio at the strip's height (square frames when no shape is given)."""
    height, width = image.shape[:2]
    aspect = frame_shape[1] / frame_shape[0] if frame_shape else 1.0
    frame_width = max(1, round(height * aspect))
    if width % frame_width:
        raise VideoReadError(
            f"{source}: a strip {width} pixels wide does not split into frames {frame_width} pixels wide "
            f"(frames are as tall as the strip, with the frame_shape aspect ratio)"
        )
    count = width // frame_width
    return np.stack([image[:, i * frame_width : (i + 1) * frame_width] for i in range(count)])


def _decode_with_opencv(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    try:
        while capture.isOpened():
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(_to_rgb_float(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3 else frame, str(path)))
    finally:
        capture.release()
    return frames


def _decode_gif_with_pillow(path: Path) -> list[np.ndarray]:
    try:
        with Image.open(path) as image:
            return [_to_rgb_float(np.asarray(frame.convert("RGB")), str(path)) for frame in ImageSequence.Iterator(image)]
    except (OSError, ValueError) as exc:
        raise VideoReadError(f"{path}: not a GIF Pillow can decode ({exc})") from None


def read_video(path: str | Path, frame_shape: Sequence[int] | None = None) -> np.ndarray:
    """Read a video as (T, H, W, 3) float32 RGB in [0, 1].

    ``frame_shape`` is (H, W) or (H, W, C); frames of another size are resized to it (area
    averaging when shrinking). Without it, frames keep their size. Raises
    :class:`VideoReadError` naming the file and the reason when it cannot be read.
    """
    path = Path(path)
    shape = (int(frame_shape[0]), int(frame_shape[1])) if frame_shape is not None else None
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise VideoReadError(f"{path}: the folder holds no image frames ({', '.join(IMAGE_SUFFIXES)})")
        frames = [read_image(f) for f in files]
        if shape is None and len({f.shape for f in frames}) > 1:
            raise VideoReadError(f"{path}: frames differ in size; give a frame_shape to resize them")
        video = np.stack([resize_frames(f[None], shape)[0] if shape else f for f in frames])
    elif not path.exists():
        raise VideoReadError(f"{path}: no such file or folder")
    elif path.suffix.lower() in STRIP_SUFFIXES:
        video = _split_strip(read_image(path), shape, str(path))
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        decoded = _decode_with_opencv(path)
        if not decoded and path.suffix.lower() == ".gif":
            decoded = _decode_gif_with_pillow(path)
        if not decoded:
            raise VideoReadError(f"{path}: no frames could be decoded (corrupt, empty, or a codec OpenCV's FFmpeg lacks)")
        video = np.stack(decoded)
    else:
        raise VideoReadError(
            f"{path}: unsupported format {path.suffix or '(no extension)'}; use a folder of frames, "
            f"a {'/'.join(STRIP_SUFFIXES)} strip or a {'/'.join(VIDEO_SUFFIXES)} video"
        )
    return resize_frames(video, shape) if shape else video


# ----------------------------------------------------------------------------- probing
@dataclass(frozen=True)
class VideoInfo:
    """What the dataset knows about one readable video without decoding all of it."""

    path: Path
    frame_size: tuple[int, int]  # (H, W) of its first frame as stored
    frames: tuple[Path, ...] = ()  # for folders of frames: the frame files, sorted

    @property
    def name(self) -> str:
        return self.path.name


def probe_video(path: Path, frame_shape: tuple[int, int]) -> VideoInfo:
    """Check that a video can be read (its first frame decodes) and return its size.

    Folders and strips are checked from the image header; video files decode one frame.
    """
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise VideoReadError(f"{path}: the folder holds no image frames")
        try:
            with Image.open(files[0]) as image:
                width, height = image.size
        except (OSError, ValueError):
            height, width = read_image(files[0]).shape[:2]
        return VideoInfo(path, (height, width), tuple(files))
    suffix = path.suffix.lower()
    if suffix in STRIP_SUFFIXES:
        image = read_image(path)
        frames = _split_strip(image, frame_shape, str(path))
        return VideoInfo(path, frames.shape[1:3])
    if suffix in VIDEO_SUFFIXES:
        capture = cv2.VideoCapture(str(path))
        try:
            ok, frame = capture.read()
        finally:
            capture.release()
        if ok:
            return VideoInfo(path, frame.shape[:2])
        if suffix == ".gif":
            first = _decode_gif_with_pillow(path)
            if first:
                return VideoInfo(path, first[0].shape[:2])
        raise VideoReadError(f"{path}: no frames could be decoded (corrupt, empty, or a codec OpenCV's FFmpeg lacks)")
    raise VideoReadError(f"{path}: unsupported format {suffix or '(no extension)'}")


def probe_videos(paths: Sequence[Path], frame_shape: tuple[int, int], where: str) -> list[VideoInfo]:
    """Probe every video; log the unreadable ones by name with a count, and say once when
    frames will be resized. All unreadable (or none at all) is an error."""
    readable: list[VideoInfo] = []
    problems: list[str] = []
    for path in paths:
        try:
            readable.append(probe_video(path, frame_shape))
        except (VideoReadError, OSError) as exc:
            problems.append(str(exc))
    if problems:
        log.warning(
            "%s: skipping %d of %d videos that cannot be read:\n  %s", where, len(problems), len(paths), "\n  ".join(problems)
        )
    if not readable:
        reason = f"none of its {len(paths)} videos can be read" if paths else "it holds no videos"
        raise VideoReadError(
            f"{where}: {reason}; a dataset holds folders of frames, .png/.jpg strips or "
            f"{'/'.join(VIDEO_SUFFIXES)} videos, directly or in train/ and test/"
        )
    resized = [v for v in readable if v.frame_size != frame_shape]
    if resized:
        first = resized[0]
        log.warning(
            "%s: %d of %d videos have frames of another size than frame_shape %dx%d (e.g. %s: %dx%d); "
            "they are resized when read",
            where, len(resized), len(readable), frame_shape[0], frame_shape[1], first.name, *first.frame_size,
        )
    return readable


def _video_entries(folder: Path) -> list[Path]:
    """Candidate videos in a folder: subfolders and files, hidden entries excluded, sorted."""
    if not folder.is_dir():
        raise VideoReadError(f"{folder}: no such dataset folder")
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def train_test_split(names: Sequence[str], random_seed: int, test_fraction: float = 0.2) -> tuple[list[str], list[str]]:
    """The original's seeded 80/20 split (scikit-learn's ``train_test_split`` rule: a seeded
    permutation, the first ``ceil(0.2 n)`` for test) over the names in sorted order."""
    ordered = sorted(names)
    num_test = math.ceil(test_fraction * len(ordered))
    permutation = np.random.RandomState(random_seed).permutation(len(ordered))
    test = [ordered[i] for i in permutation[:num_test]]
    train = [ordered[i] for i in permutation[num_test:]]
    return train, test


def video_id(name: str) -> str:
    """The id of a ``<id>#<rest>`` video name (the whole name when there is no ``#``)."""
    return name.split("#", 1)[0]


# ----------------------------------------------------------------------------- datasets
class FramesDataset(Dataset):
    """The original ``FramesDataset``: training pairs of frames or whole test videos.

    Training items are ``{"source": (3, H, W), "driving": (3, H, W), "name"}``: two frame
    indices drawn uniformly with replacement and sorted, augmented together. Test items are
    ``{"video": (3, T, H, W), "name"}``, unaugmented. For folders of frames a training item
    reads only its two frames. With ``id_sampling``, training items are video ids (the part
    of the name before ``#``) and each item picks one of that id's videos at random.
    """

    def __init__(self, params: DatasetParams, is_train: bool, random_seed: int = 0):
        self.params = params
        self.is_train = is_train
        self.random_seed = random_seed
        self.epoch = 0
        self.frame_shape = (int(params.frame_shape[0]), int(params.frame_shape[1]))
        root = Path(params.root_dir)
        split = "train" if is_train else "test"
        if (root / "train").is_dir():
            if not (root / "test").is_dir():
                raise VideoReadError(f"{root} has train/ but no test/; add test/ or put the videos directly in {root}")
            folder = root / split
            paths = _video_entries(folder)
        else:
            folder = root
            train, test = train_test_split([p.name for p in _video_entries(root)], random_seed)
            paths = [root / name for name in (train if is_train else test)]
        self.root = folder
        self.videos = probe_videos(paths, self.frame_shape, f"{folder} ({split} videos)")
        self.augmentation = Augmentation(params.augmentation_params)  # used by training items only
        if is_train and params.id_sampling:
            by_id: dict[str, list[VideoInfo]] = {}
            for info in self.videos:
                by_id.setdefault(video_id(info.name), []).append(info)
            self.ids = sorted(by_id)
            self._by_id = by_id
        else:
            self.ids = [info.name for info in self.videos]
            self._by_id = {info.name: [info] for info in self.videos}

    @property
    def names(self) -> list[str]:
        """Names of the readable videos (file or folder names)."""
        return [info.name for info in self.videos]

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose random draws the training items use."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.item(index, draw=index)

    def item(self, index: int, draw: int) -> dict[str, Any]:
        """Item ``index``; a training item's randomness comes from ``(random_seed, epoch, draw)``."""
        if not self.is_train:
            info = self.videos[index]
            video = read_video(info.path, self.frame_shape)
            return {"video": torch.from_numpy(np.ascontiguousarray(video.transpose(3, 0, 1, 2))), "name": info.name}
        rng = np.random.default_rng([self.random_seed, self.epoch, draw])
        for attempt in range(len(self.ids)):  # a video that fails mid-way is reported and the next one used
            candidates = self._by_id[self.ids[(index + attempt) % len(self.ids)]]
            info = candidates[int(rng.integers(len(candidates)))] if len(candidates) > 1 else candidates[0]
            try:
                clip = self._two_frames(info, rng)
                break
            except VideoReadError as exc:
                log.warning("%s; this training item uses the next video instead", exc)
        else:
            raise VideoReadError(f"{self.root}: none of the training videos can be read any more")
        source, driving = self.augmentation(clip, rng)
        return {
            "source": torch.from_numpy(np.ascontiguousarray(source.transpose(2, 0, 1))),
            "driving": torch.from_numpy(np.ascontiguousarray(driving.transpose(2, 0, 1))),
            "name": info.name,
        }

    def _two_frames(self, info: VideoInfo, rng: np.random.Generator) -> list[np.ndarray]:
        """Two frames drawn uniformly with replacement, in time order; for folders only those
        two frames are read."""
        if info.frames:
            chosen = np.sort(rng.integers(len(info.frames), size=2))
            return [resize_frames(read_image(info.frames[i])[None], self.frame_shape)[0] for i in chosen]
        video = read_video(info.path, self.frame_shape)
        chosen = np.sort(rng.integers(len(video), size=2))
        return [video[i] for i in chosen]


class DatasetRepeater(Dataset):
    """A dataset seen ``num_repeats`` times per epoch (the original's epoch multiplier); each
    repeat of an item draws its own random frames."""

    def __init__(self, dataset: FramesDataset, num_repeats: int = 100):
        if num_repeats < 1:
            raise ValueError(f"num_repeats must be at least 1, got {num_repeats}")
        self.dataset = dataset
        self.num_repeats = num_repeats

    def __len__(self) -> int:
        return self.num_repeats * len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset.item(index % len(self.dataset), draw=index)


class PairedDataset(Dataset):
    """(source, driving) pairs of test videos for the animation evaluation.

    With ``pairs_list`` (a CSV with ``source`` and ``driving`` columns of video names), the
    first ``number_of_pairs`` rows whose videos both exist; otherwise a seeded random choice
    of distinct (driving, source) index pairs among the first ``number_of_pairs`` videos, as
    in the original. Items are ``{"driving_video", "driving_name", "source_video", "source_name"}``.
    """

    def __init__(self, initial_dataset: FramesDataset, number_of_pairs: int, seed: int = 0, pairs_list: str | Path | None = None):
        self.initial_dataset = initial_dataset
        pairs_list = pairs_list if pairs_list is not None else initial_dataset.params.pairs_list
        if pairs_list is None:
            count = min(number_of_pairs, len(initial_dataset))
            grid = np.mgrid[:count, :count].reshape(2, -1).T
            number_of_pairs = min(grid.shape[0], number_of_pairs)
            chosen = np.random.RandomState(seed).choice(grid.shape[0], number_of_pairs, replace=False)
            self.pairs = [(int(d), int(s)) for d, s in grid[chosen]]
        else:
            index = {name: i for i, name in enumerate(initial_dataset.names)}
            self.pairs = []
            for row in _read_pairs(Path(pairs_list)):
                if len(self.pairs) >= number_of_pairs:
                    break
                if row[0] in index and row[1] in index:
                    self.pairs.append((index[row[1]], index[row[0]]))
            if not self.pairs:
                raise ValueError(f"{pairs_list}: none of its pairs names two videos of {initial_dataset.root}")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        driving, source = self.pairs[index]
        first, second = self.initial_dataset[driving], self.initial_dataset[source]
        return {**{f"driving_{k}": v for k, v in first.items()}, **{f"source_{k}": v for k, v in second.items()}}


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    """(source, driving) rows of a pairs CSV."""
    if not path.is_file():
        raise FileNotFoundError(f"pairs list {path} not found")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"source", "driving"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: the pairs list needs columns 'source' and 'driving' (missing {sorted(missing)})")
        return [(row["source"], row["driving"]) for row in reader]


def no_motion_l1(videos: Dataset) -> float:
    """The no-motion baseline of a test dataset: mean |frame_t - frame_0| over all frames of all
    videos (frame 0 included, as the reconstruction score counts it)."""
    total, frames = 0.0, 0
    for index in range(len(videos)):
        video = videos[index]["video"]  # (3, T, H, W)
        total += float((video - video[:, :1]).abs().mean(dim=(0, 2, 3)).sum())
        frames += video.shape[1]
    return total / max(frames, 1)
