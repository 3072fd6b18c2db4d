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
from PIL import Image
from torch.utils.data import Dataset

from ..video import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    MediaError,
    decode_image,
    decode_video,
    ffmpeg_says,
    frame_files,
    stated_frame_count,
)
from .augmentation import Augmentation
from .config import DatasetParams

log = logging.getLogger(__name__)

# A strip is a layout, not a format: frames side by side in one image (the original's .png videos).
STRIP_SUFFIXES = (".png", ".jpg", ".jpeg")


class VideoReadError(MediaError):
    """A video or dataset that cannot be used; the message names the file and the reason.
    (Decoding failures are :class:`~fomm_model.video.MediaError`, its base class.)"""


# ----------------------------------------------------------------------------- reading
# Frames are decoded by fomm_model.video (uint8 RGB, one at a time) and resized as they come,
# so memory holds frames at the training size, never a whole video at its own resolution.
def resize_frame(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """(h, w, 3) -> (H, W, 3): area averaging when shrinking, bilinear when enlarging."""
    if size is None or frame.shape[:2] == tuple(size):
        return frame
    height, width = size
    shrink = height * width < frame.shape[0] * frame.shape[1]
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def to_float(frames: np.ndarray) -> np.ndarray:
    """uint8 frames -> float32 in [0, 1]."""
    return frames.astype(np.float32) / np.float32(255)


def _split_strip(image: np.ndarray, frame_shape: tuple[int, int] | None, source: str) -> list[np.ndarray]:
    """A horizontal strip -> frames; each frame has ``frame_shape``'s aspect ratio at the
    strip's height (square frames when no shape is given)."""
    height, width = image.shape[:2]
    aspect = frame_shape[1] / frame_shape[0] if frame_shape else 1.0
    frame_width = max(1, round(height * aspect))
    if width % frame_width:
        raise VideoReadError(
            f"{source}: a strip {width} pixels wide does not split into frames {frame_width} pixels wide "
            f"(frames are as tall as the strip, with the frame_shape aspect ratio)"
        )
    return [image[:, i : i + frame_width] for i in range(0, width, frame_width)]


def _kind(path: Path) -> str:
    """"folder", "strip" or "video"; anything else is an error that lists what works."""
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise VideoReadError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in STRIP_SUFFIXES:
        return "strip"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    raise VideoReadError(
        f"{path}: unsupported format {suffix or '(no extension)'}; use a folder of frames, "
        f"a {'/'.join(STRIP_SUFFIXES)} strip or a {'/'.join(VIDEO_SUFFIXES)} video"
    )


def _folder_frames(path: Path) -> list[Path]:
    files = frame_files(path)
    if not files:
        nested = any(p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES for p in path.iterdir())
        hint = "; videos in nested folders are not searched: put them directly in the dataset folder" if nested else ""
        raise VideoReadError(f"{path}: the folder holds no image frames ({', '.join(IMAGE_SUFFIXES)}){hint}")
    return files


def _undecodable(path: Path) -> VideoReadError:
    return VideoReadError(f"{path}: no frames could be decoded ({ffmpeg_says(path)}corrupt, empty, or a codec OpenCV's FFmpeg lacks)")


def read_video(path: str | Path, frame_shape: Sequence[int] | None = None) -> np.ndarray:
    """Read a video as (T, H, W, 3) float32 RGB in [0, 1].

    ``frame_shape`` is (H, W) or (H, W, C); frames of another size are resized to it as
    they are decoded (area averaging when shrinking). Without it, frames keep their size.
    Raises :class:`~fomm_model.video.MediaError` naming the file and the reason when it
    cannot be read.
    """
    path = Path(path)
    shape = (int(frame_shape[0]), int(frame_shape[1])) if frame_shape is not None else None
    kind = _kind(path)
    if kind == "folder":
        frames = [resize_frame(decode_image(file), shape) for file in _folder_frames(path)]
        if len({f.shape for f in frames}) > 1:
            raise VideoReadError(f"{path}: frames differ in size; give a frame_shape to resize them")
    elif kind == "strip":
        frames = [resize_frame(f, shape) for f in _split_strip(decode_image(path), shape, str(path))]
    else:
        frames = [resize_frame(f, shape) for f in decode_video(path)]
        if not frames:
            raise _undecodable(path)
    return to_float(np.stack(frames))


# ----------------------------------------------------------------------------- probing
@dataclass(frozen=True)
class VideoInfo:
    """What the dataset knows about one readable video without decoding all of it."""

    path: Path
    frame_size: tuple[int, int]  # (H, W) of its first frame as stored
    frame_count: int
    frames: tuple[Path, ...] = ()  # for folders of frames: the frame files, in order

    @property
    def name(self) -> str:
        return self.path.name


def probe_video(path: Path, frame_shape: tuple[int, int]) -> VideoInfo:
    """Check that a video can be read (its first frame decodes) and return its size and
    frame count.

    Folders are checked from the first frame's image header and strips decoded; video files
    decode one frame and take the count their container states (counting by decoding only
    when it states none).
    """
    kind = _kind(path)
    if kind == "folder":
        files = _folder_frames(path)
        try:
            with Image.open(files[0]) as image:
                width, height = image.size
        except (OSError, ValueError):
            height, width = decode_image(files[0]).shape[:2]
        return VideoInfo(path, (height, width), len(files), tuple(files))
    if kind == "strip":
        frames = _split_strip(decode_image(path), frame_shape, str(path))
        return VideoInfo(path, frames[0].shape[:2], len(frames))
    first = next(decode_video(path, stop=1), None)
    if first is None:
        raise _undecodable(path)
    count = stated_frame_count(path) or sum(1 for _ in decode_video(path))
    return VideoInfo(path, first.shape[:2], count)


def probe_videos(
    paths: Sequence[Path], frame_shape: tuple[int, int], where: str
) -> tuple[list[VideoInfo], list[tuple[str, str]]]:
    """Probe every video; log the unreadable ones by name with a count, and say once when
    frames will be resized. All unreadable (or none at all) is an error. Returns the
    readable videos and the (name, reason) of the others."""
    readable: list[VideoInfo] = []
    problems: list[str] = []
    unreadable: list[tuple[str, str]] = []
    for path in paths:
        try:
            readable.append(probe_video(path, frame_shape))
        except (MediaError, OSError) as exc:
            problems.append(str(exc))
            unreadable.append((path.name, str(exc)))
    if problems:
        log.warning(
            "%s: skipping %d of %d videos that cannot be read:\n  %s", where, len(problems), len(paths), "\n  ".join(problems)
        )
    if not readable:
        reason = f"none of its {len(paths)} videos can be read (e.g. {problems[0]})" if paths else "it holds no videos"
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
    return readable, unreadable


def _video_entries(folder: Path) -> list[Path]:
    """Candidate videos in a folder: subfolders and files of the formats a video can have,
    sorted; hidden entries are skipped, other files reported. A stray file must not take
    part in the 80/20 split: adding or removing a notes.txt would reshuffle train and test."""
    if not folder.is_dir():
        what = "a file, not a dataset folder" if folder.exists() else "no such dataset folder"
        raise VideoReadError(f"{folder}: {what}; --data names the dataset folder that holds the videos")
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    others = [p.name for p in entries if p.is_file() and p.suffix.lower() not in STRIP_SUFFIXES + VIDEO_SUFFIXES]
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        log.warning("%s: ignoring %d file(s) that are not videos: %s", folder, len(others), shown)
    skipped = set(others)
    return [p for p in entries if p.name not in skipped]


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
            entries = _video_entries(root)
            if is_train and len(entries) == 1:
                raise VideoReadError(
                    f"{root} holds a single video ({entries[0].name}); the 80/20 split needs several, "
                    "or put videos in train/ and test/ subfolders"
                )
            train, test = train_test_split([p.name for p in entries], random_seed)
            paths = [root / name for name in (train if is_train else test)]
        self.root = folder
        self.videos, self.unreadable = probe_videos(paths, self.frame_shape, f"{folder} ({split} videos)")
        if is_train and all(info.frame_count < 2 for info in self.videos):
            raise VideoReadError(
                f"{folder}: every video has a single frame, so there is no motion to learn from; if these are "
                "the frames of one video, put them in a subfolder: a dataset holds one folder of frames per video"
            )
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

    def output_stem(self, name: str) -> str:
        """What files made from video ``name`` are called: its name without the suffix, unless
        another video has that stem too (``same.mp4``, ``same.gif``), when the whole name."""
        stem = Path(name).stem
        return stem if sum(Path(other).stem == stem for other in self.names) < 2 else name

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
            except (MediaError, OSError) as exc:
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
        """Two frames drawn uniformly with replacement, in time order, as float32 at the
        training size. Folders read only those two files; video files are decoded up to the
        later of the two and nothing after it. When a container states more frames than it
        holds, a frame beyond the end is replaced by the last one decoded."""
        chosen = np.sort(rng.integers(info.frame_count, size=2))
        if info.frames:
            frames = [decode_image(info.frames[i]) for i in chosen]
        elif info.path.suffix.lower() in STRIP_SUFFIXES:
            strip = _split_strip(decode_image(info.path), self.frame_shape, str(info.path))
            frames = [strip[i] for i in chosen]
        else:
            frames = self._decode_until(info.path, chosen)
        return [to_float(resize_frame(frame, self.frame_shape)) for frame in frames]

    @staticmethod
    def _decode_until(path: Path, chosen: np.ndarray) -> list[np.ndarray]:
        kept: dict[int, np.ndarray] = {}
        last: np.ndarray | None = None
        for index, frame in enumerate(decode_video(path, stop=int(chosen[-1]) + 1)):
            last = frame
            if index in chosen:
                kept[index] = frame
        if last is None:
            raise _undecodable(path)
        return [kept.get(int(i), last) for i in chosen]


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
            missing: list[str] = []
            for row in _read_pairs(Path(pairs_list)):
                if len(self.pairs) >= number_of_pairs:
                    break
                if row[0] in index and row[1] in index:
                    self.pairs.append((index[row[1]], index[row[0]]))
                else:
                    missing.append(next(name for name in row if name not in index))
            if not self.pairs:
                raise ValueError(f"{pairs_list}: none of its pairs names two videos of {initial_dataset.root}")
            if missing:  # left out as the original does, but not silently
                log.warning(
                    "%s: %d pair(s) name a video that is not among the readable test videos (e.g. %s); they are left out",
                    pairs_list, len(missing), missing[0],
                )

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
