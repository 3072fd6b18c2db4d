"""Reading a motion file into numpy arrays for the importer (no bpy, so it runs anywhere).

Everything that can be wrong with the input is found here, before the importer creates
anything in the scene: the JSON is parsed and validated (``motion_format``), the source
image and the generated frames must exist, frame files must be numbered consecutively.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .motion_format import MotionFormatError, parse

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
        return self.path.stem


def load_motion(path: str | Path) -> MotionData:
    """Parse, validate and resolve a motion file; raises MotionFormatError with a message for
    the user."""
    path = Path(path)
    if not path.is_file():
        raise MotionFormatError(f"{path} not found")
    try:
        document = parse(path.read_bytes())
    except MotionFormatError as exc:
        raise MotionFormatError(f"{path.name}: {exc}") from None
    image, source = document["image"], document["source"]
    image_path, image_png = _source_image(source["image"], path)
    frames = _frame_sequence(document["frames"], path) if "frames" in document else None
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
        image_path=image_path,
        image_png=image_png,
        frames=frames,
    )


def _track(entry: dict) -> Track:
    jacobians = entry["jacobians"]
    return Track(np.asarray(entry["keypoints"], np.float64), None if jacobians is None else np.asarray(jacobians, np.float64))


def _source_image(entry: dict, path: Path) -> tuple[Path | None, bytes | None]:
    if "png_base64" in entry:
        try:
            data = base64.b64decode(entry["png_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise MotionFormatError(f"{path.name}: the embedded source image is not valid base64") from None
        if not data.startswith(PNG_SIGNATURE):
            raise MotionFormatError(f"{path.name}: the embedded source image is not a PNG")
        return None, data
    image_path = (path.parent / entry["path"]).resolve()
    if not image_path.is_file():
        raise MotionFormatError(
            f"{path.name}: source image {image_path} not found; keep it next to the motion file "
            "or write the motion with the image embedded (fomm motion --embed-image)"
        )
    return image_path, None


def _frame_sequence(entry: dict, path: Path) -> FrameSequence:
    directory = (path.parent / entry["directory"]).resolve()
    files = entry["files"]
    missing = [name for name in files if not (directory / name).is_file()]
    if missing:
        raise MotionFormatError(f"{path.name}: {len(missing)} generated frame(s) missing in {directory}, first {missing[0]}")
    numbers = [_frame_number(name) for name in files]
    stems = {_frame_stem(name) for name in files}
    if None in numbers or len(stems) != 1 or numbers != list(range(numbers[0], numbers[0] + len(files))):
        raise MotionFormatError(f"{path.name}: the generated frames must be numbered consecutively, like frame_00001.png, frame_00002.png, ...")
    return FrameSequence(directory / files[0], len(files), numbers[0])


_NUMBERED = re.compile(r"^(.*?)(\d+)(\.[^.]+)$")


def _frame_number(name: str) -> int | None:
    match = _NUMBERED.match(name)
    return int(match.group(2)) if match else None


def _frame_stem(name: str) -> tuple[str, str] | None:
    match = _NUMBERED.match(name)
    return (match.group(1), match.group(3)) if match else None
