"""Bringing images of any size to the model's frame size and back, and choosing regions.

``fit`` letterboxes (resize keeping the aspect ratio, then pad) or centre-crops (resize to
cover, then crop) a batch to the model's (height, width); the returned :class:`Framing`
remembers the geometry so :meth:`Framing.restore` puts generated frames back at the
input's size and aspect.

For real footage the region to animate is a :class:`Box`: given, or found around a face
with OpenCV's bundled detector (one steady box over a whole driving video); the generated
region is pasted back into the full picture with a feathered mask.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

FitMode = Literal["pad", "crop", "stretch"]
FIT_MODES: tuple[str, ...] = ("pad", "crop", "stretch")


@dataclass(frozen=True)
class Framing:
    """Geometry of one fit: the input size, the scaled size and its offset in the target."""

    input_size: tuple[int, int]  # (H, W) of the original images
    target_size: tuple[int, int]  # (h, w) the model sees
    scaled_size: tuple[int, int]  # size of the resized content before pad/crop
    offset: tuple[int, int]  # (top, left) of the content in the target (negative: cropped)
    mode: str

    def restore(self, frames: Tensor, background: Tensor | float = 0.0) -> Tensor:
        """Frames at the target size (N, C, h, w) -> the input's size and aspect (N, C, H, W).

        For ``pad`` the padding is cut away; for ``crop`` the cropped-away border cannot be
        generated: it is ``background`` there, a value or pictures at the scaled size
        (broadcast to (N, C, sh, sw); the input shrunk to it, say), which the enlargement also
        blends into the frames' edge (a black one leaves a dark line where the frames are
        pasted back onto the input with :meth:`content_mask`).
        """
        top, left = self.offset
        sh, sw = self.scaled_size
        th, tw = self.target_size
        if self.mode == "stretch":
            return resize(frames, self.input_size)
        canvas = frames.new_empty(frames.shape[0], frames.shape[1], sh, sw)
        canvas[:] = background.to(canvas) if isinstance(background, Tensor) else background
        src_top, src_left = max(top, 0), max(left, 0)
        dst_top, dst_left = max(-top, 0), max(-left, 0)
        height = min(th - src_top, sh - dst_top)
        width = min(tw - src_left, sw - dst_left)
        canvas[:, :, dst_top : dst_top + height, dst_left : dst_left + width] = frames[
            :, :, src_top : src_top + height, src_left : src_left + width
        ]
        return resize(canvas, self.input_size)

    def points_to_input(self, points: Tensor) -> Tensor:
        """Normalised (x, y) points (..., 2) over the model's frame -> normalised over the
        input image, the inverse of the fit (in the visualiser's convention, where -1 and +1
        are the frame's outer edges), so keypoints can be drawn on the input at its own
        resolution. Points in a ``pad``'s border land outside [-1, 1]; a ``crop``'s all land
        inside (the model saw only part of the input)."""
        th, tw = self.target_size
        sh, sw = self.scaled_size
        top, left = self.offset
        scale = points.new_tensor([tw / sw, th / sh])
        shift = points.new_tensor([2 * left / sw, 2 * top / sh])
        return (points + 1) * scale - shift - 1

    def at_model_scale(self) -> "Framing":
        """The same fit for the input shrunk to the model's resolution, its aspect kept:
        ``pad`` and ``crop`` at their scaled size, ``stretch`` at the size covering the
        model's frame. Fitting an image of that size (its ``input_size``) gives this very
        geometry, so per-frame maps the model computed can travel at the input's aspect
        without costing the input's size per frame (a 4K source is 30 MiB a map, 256x144
        0.14 MiB), and be fitted back to the model (:func:`fit`) from either size."""
        if self.mode != "stretch":
            return Framing(self.scaled_size, self.target_size, self.scaled_size, self.offset, self.mode)
        (height, width), (th, tw) = self.input_size, self.target_size
        scale = max(th / height, tw / width)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        return Framing(size, self.target_size, self.target_size, (0, 0), self.mode)

    def cuts_picture(self) -> bool:
        """Whether the fit left part of the picture out (a crop to another aspect): read from
        the geometry, where the content sits above or left of the target's origin."""
        return self.mode == "crop" and min(self.offset) < 0

    def content_mask(self) -> Tensor:
        """(1, 1, H, W) mask of the input pixels the model actually saw (1) vs cropped (0)."""
        ones = torch.ones(1, 1, *self.target_size)
        return self.restore(ones).clamp(0, 1)


def resize(images: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize (N, C, H, W) with area averaging when shrinking, bicubic when enlarging."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    shrinking = size[0] < images.shape[-2] and size[1] < images.shape[-1]
    if shrinking:
        return F.interpolate(images, size=size, mode="area")
    return F.interpolate(images, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def fit(images: Tensor, target_size: tuple[int, int], mode: FitMode = "pad") -> tuple[Tensor, Framing]:
    """Fit (N, C, H, W) images to ``target_size`` (h, w); see the module docstring."""
    if mode not in FIT_MODES:
        raise ValueError(f"unknown fit mode {mode!r}; choose one of {', '.join(FIT_MODES)}")
    height, width = images.shape[-2:]
    th, tw = target_size
    if mode == "stretch":
        return resize(images, target_size), Framing((height, width), target_size, target_size, (0, 0), mode)
    scale = min(th / height, tw / width) if mode == "pad" else max(th / height, tw / width)
    sh, sw = max(1, round(height * scale)), max(1, round(width * scale))
    scaled = resize(images, (sh, sw))
    top, left = (th - sh) // 2, (tw - sw) // 2
    if mode == "pad":
        out = F.pad(scaled, (left, tw - sw - left, top, th - sh - top), mode="replicate" if sh > 1 and sw > 1 else "constant")
    else:
        out = scaled[:, :, -top : -top + th, -left : -left + tw]
    return out.contiguous(), Framing((height, width), (th, tw), (sh, sw), (top, left), mode)


# ---------------------------------------------------------------------------- crop boxes
MIN_SIDE = 32  # smaller regions carry too little to animate
FACE_MARGIN = 0.4  # enlargement of a detected face box on each side, as a fraction of its size


class FaceNotFoundError(ValueError):
    """No face in an image or video where one was asked for."""


@dataclass(frozen=True)
class Box:
    """A pixel rectangle: left, top, width, height."""

    x: int
    y: int
    width: int
    height: int

    @classmethod
    def parse(cls, text: str) -> "Box":
        """``"x,y,w,h"`` in pixels."""
        parts = text.replace(" ", "").split(",")
        try:
            x, y, w, h = (int(p) for p in parts)
        except ValueError:
            raise ValueError(f"a box is x,y,width,height in whole pixels (e.g. 120,40,512,512), got {text!r}") from None
        if w <= 0 or h <= 0 or x < 0 or y < 0:
            raise ValueError(f"box {text!r} needs x, y >= 0 and a positive width and height")
        return cls(x, y, w, h)

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y + self.height / 2

    def union(self, other: "Box") -> "Box":
        x, y = min(self.x, other.x), min(self.y, other.y)
        return Box(x, y, max(self.right, other.right) - x, max(self.bottom, other.bottom) - y)

    def enlarged(self, fraction: float) -> "Box":
        """Grown by ``fraction`` of its width/height on each side."""
        return self.grown(round(self.width * fraction), round(self.height * fraction))

    def grown(self, dx: int, dy: int) -> "Box":
        """Grown by ``dx`` pixels left and right and ``dy`` pixels up and down."""
        return Box(self.x - dx, self.y - dy, self.width + 2 * dx, self.height + 2 * dy)

    def squared(self) -> "Box":
        """The smaller side grown to the larger one, around the same centre."""
        side = max(self.width, self.height)
        cx, cy = self.center
        return Box(round(cx - side / 2), round(cy - side / 2), side, side)

    def clipped(self, height: int, width: int) -> "Box":
        """Moved inside a (height, width) image keeping its size where it fits, else shrunk."""
        w, h = min(self.width, width), min(self.height, height)
        x = min(max(self.x, 0), width - w)
        y = min(max(self.y, 0), height - h)
        return Box(x, y, w, h)

    def check_inside(self, height: int, width: int, what: str) -> None:
        if self.right > width or self.bottom > height:
            raise ValueError(
                f"the {what} box {self.x},{self.y},{self.width},{self.height} reaches outside the "
                f"{width}x{height} image: give a box within it"
            )
        check_size(self.height, self.width, f"the {what} box")

    def crop(self, images: Tensor) -> Tensor:
        return images[..., self.y : self.bottom, self.x : self.right]


def check_size(height: int, width: int, what: str) -> None:
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"{what} is {width}x{height} pixels: too small to animate; give at least {MIN_SIDE}x{MIN_SIDE}")


# ---------------------------------------------------------------------------- faces
def detect_faces(image: Tensor) -> list[Box]:
    """Frontal faces in a (3, H, W) image, largest first (OpenCV's bundled Haar cascade,
    run on a copy at most 640 pixels wide or high, like the original crop tool)."""
    height, width = image.shape[-2:]
    scale = min(1.0, 640 / max(height, width))
    small = resize(image[None].float().cpu(), (max(1, round(height * scale)), max(1, round(width * scale))))[0]
    gray = (0.299 * small[0] + 0.587 * small[1] + 0.114 * small[2]).mul(255).round().clamp(0, 255)
    found = _face_cascade().detectMultiScale(gray.to(torch.uint8).numpy(), scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    boxes = [Box(round(x / scale), round(y / scale), round(w / scale), round(h / scale)) for x, y, w, h in found]
    return sorted(boxes, key=lambda b: b.width * b.height, reverse=True)


def face_box(image: Tensor, margin: float = FACE_MARGIN, what: str = "the source") -> Box:
    """The square region around the largest face of a (3, H, W) image."""
    faces = detect_faces(image)
    if not faces:
        raise FaceNotFoundError(f"no face found in {what}: give the region to animate as a box (x,y,width,height)")
    height, width = image.shape[-2:]
    return faces[0].enlarged(margin).squared().clipped(height, width)


def stable_face_box(
    frames: Iterable[Tensor], frame_count: int | None = None, margin: float = FACE_MARGIN, max_samples: int = 200
) -> Box:
    """One square region holding the face in every frame of a video, for a steady crop.

    Faces are detected on up to ``max_samples`` evenly spaced frames; detections far from
    the median position (false positives) are dropped, the rest are united, grown by
    ``margin`` times the typical face size on each side and squared, as the original crop
    tool suggests.
    """
    step = max(1, -(-frame_count // max_samples)) if frame_count else 1
    detections: list[Box] = []
    size: tuple[int, int] | None = None
    for index, frame in enumerate(frames):
        size = tuple(frame.shape[-2:])  # type: ignore[assignment]
        if index % step == 0:
            faces = detect_faces(frame)
            if faces:
                detections.append(faces[0])
    if not detections or size is None:
        raise FaceNotFoundError("no face found in the driving video: give its region as a box (x,y,width,height)")
    cx = float(np.median([b.center[0] for b in detections]))
    cy = float(np.median([b.center[1] for b in detections]))
    typical = float(np.median([max(b.width, b.height) for b in detections]))
    kept = [b for b in detections if abs(b.center[0] - cx) <= typical and abs(b.center[1] - cy) <= typical]
    union = kept[0]
    for box in kept[1:]:
        union = union.union(box)
    pad = round(margin * typical)
    return union.grown(pad, pad).squared().clipped(*size)


@functools.lru_cache(maxsize=1)
def _face_cascade() -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise RuntimeError(f"OpenCV's face detector could not be loaded from {path}; reinstall opencv-python")
    return cascade


# ---------------------------------------------------------------------------- paste-back
def feather_mask(height: int, width: int, feather: int, inner_edges: tuple[bool, bool, bool, bool]) -> Tensor:
    """(1, height, width) weights: 1 inside, falling linearly to 0 over ``feather`` pixels
    towards each edge flagged in ``inner_edges`` (top, bottom, left, right): the edges that
    lie inside the picture the region is pasted into."""
    top, bottom, left, right = inner_edges

    def ramp(n: int, start: bool, end: bool) -> Tensor:
        position = torch.arange(n, dtype=torch.float32)
        weight = torch.ones(n)
        if feather > 0 and start:
            weight = torch.minimum(weight, (position + 0.5) / feather)
        if feather > 0 and end:
            weight = torch.minimum(weight, (n - position - 0.5) / feather)
        return weight.clamp(0, 1)

    return (ramp(height, top, bottom)[:, None] * ramp(width, left, right)[None, :])[None]


def paste(background: Tensor, region: Tensor, box: Box, mask: Tensor) -> Tensor:
    """``background`` (C, H, W) with ``region`` (C, h, w) blended in at ``box`` by ``mask`` (1, h, w)."""
    out = background.clone()
    window = box.crop(out)
    window.copy_(mask * region + (1 - mask) * window)
    return out


def paste_mask(box: Box, image_size: tuple[int, int], feather_fraction: float) -> Tensor:
    """The blending mask for pasting a generated region back at ``box`` in an image of
    ``image_size``: feathered on edges inside the image."""
    height, width = image_size
    inner = (box.y > 0, box.bottom < height, box.x > 0, box.right < width)
    feather = round(feather_fraction * min(box.width, box.height))
    return feather_mask(box.height, box.width, feather, inner)
