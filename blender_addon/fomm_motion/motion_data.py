"""Reading a motion file into numpy arrays for the importer (no bpy, so it runs anywhere).

Everything that can be wrong with the input is found here, before the importer creates
anything in the scene: the JSON is parsed and validated and the source image and the
generated frames are checked (``motion_format``, shared with ``fomm_model``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .motion_format import MotionFormatError, linked_files, motion_stem, parse


@dataclass(frozen=True)
class Track:
    """Keypoints per frame: ``points`` (T, K, 2) and ``jacobians`` (T, K, 2, 2) or None."""

    points: np.ndarray
    jacobians: np.ndarray | None


@dataclass(frozen=True)
class FrameSequence:
    """Generated frames: the first file, how many there are and the number in its name."""

    first: Path
    count: int
    first_number: int


@dataclass(frozen=True)
class MotionData:
    path: Path
    width: int
    height: int
    align_corners: bool
    fps: float
    num_frames: int
    num_kp: int
    relative: bool
    source_points: np.ndarray  # (K, 2)
    source_jacobians: np.ndarray | None  # (K, 2, 2)
    driving: Track  # the keypoints as detected
    motion: Track  # normalised with the options the file was written with
    masks: np.ndarray  # (K+1, gh, gw), background first
    flow: np.ndarray | None  # (T, gh, gw, 2) forward positions
    image_path: Path | None  # source texture on disk ...
    image_png: bytes | None  # ... or embedded
    frames: FrameSequence | None

    @property
    def name(self) -> str:
        """``face`` for ``face.fomm.json``: the collection, plane and cache names use it."""
        return motion_stem(self.path)


def load_motion(path: str | Path, frames: bool = True) -> MotionData:
    """Parse, validate and resolve a motion file; raises MotionFormatError with a message for
    the user (also when the file cannot be read at all). ``frames=False``: its generated
    frames are not looked for (an import that does not play them needs none of them)."""
    path = Path(path)
    if not path.is_file():
        raise MotionFormatError(f"{path} not found")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise MotionFormatError(f"{path.name} cannot be read ({exc.strerror}): check the file's permissions") from None
    try:
        document = parse(text)
        files = linked_files(document, path, frames)
    except MotionFormatError as exc:
        raise MotionFormatError(f"{path.name}: {exc}") from None
    image, source = document["image"], document["source"]
    frames = None
    if files.frames_directory is not None:
        frames = FrameSequence(files.frames_directory.resolve() / files.frame_names[0], len(files.frame_names), files.first_frame_number)
    return MotionData(
        path=path,
        width=image["width"],
        height=image["height"],
        align_corners=image["align_corners"],
        fps=float(document["fps"]),
        num_frames=document["num_frames"],
        num_kp=document["num_kp"],
        relative=document["options"]["relative"],
        source_points=np.asarray(source["keypoints"], np.float64),
        source_jacobians=None if source["jacobians"] is None else np.asarray(source["jacobians"], np.float64),
        driving=_track(document["driving"]),
        motion=_track(document["motion"]),
        masks=np.asarray(document["weights"]["masks"], np.float64),
        flow=np.asarray(document["flow"]["positions"], np.float64) if "flow" in document else None,
        image_path=None if files.image_path is None else files.image_path.resolve(),
        image_png=files.image_png,
        frames=frames,
    )


def _track(entry: dict) -> Track:
    jacobians = entry["jacobians"]
    return Track(np.asarray(entry["keypoints"], np.float64), None if jacobians is None else np.asarray(jacobians, np.float64))
