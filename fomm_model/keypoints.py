"""The keypoints type and the relative/absolute motion normalisation of the original demo."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from .geometry import inverse


@dataclass
class Keypoints:
    """K keypoints per frame with their local affine (first-order) motion.

    ``value``: (N, K, 2) normalised (x, y), x along the width, -1/+1 at the centres of the
    border pixels of the detector's heat map. ``jacobian``: (N, K, 2, 2) with rows the output
    coordinate and columns the input one (applied as ``J @ [dx, dy]^T``), or ``None`` for
    zero-order models.
    """

    value: Tensor
    jacobian: Tensor | None = None

    def __post_init__(self) -> None:
        if self.value.ndim != 3 or self.value.shape[-1] != 2:
            raise ValueError(f"keypoint values must be (N, K, 2), got {tuple(self.value.shape)}")
        if self.jacobian is not None and self.jacobian.shape != (*self.value.shape, 2):
            raise ValueError(
                f"keypoint jacobians must be (N, K, 2, 2) matching values {tuple(self.value.shape)}, "
                f"got {tuple(self.jacobian.shape)}"
            )

    @property
    def num_kp(self) -> int:
        return self.value.shape[1]

    def __len__(self) -> int:
        return self.value.shape[0]

    def __getitem__(self, index: int | slice | Tensor | Sequence[int]) -> "Keypoints":
        """Select frames; an integer (Python, numpy or a 0-d tensor) keeps the frame axis (a
        batch of one)."""
        if isinstance(index, Tensor) and index.ndim == 0 and not index.is_floating_point() and index.dtype != torch.bool:
            index = int(index)
        elif isinstance(index, np.integer):
            index = int(index)
        if isinstance(index, int):
            frames = len(self)
            if not -frames <= index < frames:
                raise IndexError(f"keypoint frame {index} is out of range for {frames} frames")
            index = slice(index, index + 1 if index != -1 else None)
        return Keypoints(self.value[index], None if self.jacobian is None else self.jacobian[index])

    def to(self, *args, **kwargs) -> "Keypoints":
        return Keypoints(
            self.value.to(*args, **kwargs), None if self.jacobian is None else self.jacobian.to(*args, **kwargs)
        )

    def detach(self) -> "Keypoints":
        return Keypoints(self.value.detach(), None if self.jacobian is None else self.jacobian.detach())

    def expand(self, batch: int) -> "Keypoints":
        """Broadcast a batch of one to ``batch`` frames (a view, no copy)."""
        if len(self) == batch:
            return self
        if len(self) != 1:
            raise ValueError(f"cannot broadcast {len(self)} keypoint sets to {batch} frames")
        return Keypoints(
            self.value.expand(batch, -1, -1),
            None if self.jacobian is None else self.jacobian.expand(batch, -1, -1, -1),
        )

    def spread(self) -> Tensor:
        """(N,) mean distance of each frame's keypoints from their centroid, in frame sizes.

        A training health figure: keypoints that drift together (falling spread) have
        stopped covering separate parts, a known failure of unsupervised keypoints, and
        then one part's motion has to be expressed about a point on another.
        """
        centroid = self.value.mean(dim=1, keepdim=True)
        # Coordinates span 2 units across the frame, so half the distance is a frame fraction.
        return (self.value - centroid).norm(dim=-1).mean(dim=1) / 2

    @staticmethod
    def cat(parts: Iterable["Keypoints"]) -> "Keypoints":
        parts = list(parts)
        if not parts:
            raise ValueError("no keypoints to concatenate")
        has_jacobian = {p.jacobian is not None for p in parts}
        if len(has_jacobian) != 1:
            raise ValueError("cannot concatenate keypoints with and without jacobians")
        return Keypoints(
            torch.cat([p.value for p in parts]),
            torch.cat([p.jacobian for p in parts]) if has_jacobian.pop() else None,  # type: ignore[misc]
        )


def convex_hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of 2-D points (monotone chain + shoelace, float64)."""
    pts = sorted(map(tuple, np.asarray(points, dtype=np.float64)))
    if len(pts) < 3:
        return 0.0

    def half(sequence: list[tuple[float, float]]) -> list[tuple[float, float]]:
        chain: list[tuple[float, float]] = []
        for p in sequence:
            while len(chain) >= 2 and _cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain

    hull = half(pts)[:-1] + half(pts[::-1])[:-1]
    area = 0.0
    for (x0, y0), (x1, y1) in zip(hull, hull[1:] + hull[:1]):
        area += x0 * y1 - x1 * y0
    return abs(area) / 2


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def movement_scale(kp_source: Keypoints, kp_driving_initial: Keypoints) -> float:
    """sqrt(hull area of the source keypoints / hull area of the initial driving keypoints).

    Uses the first element of each batch, like the original. A degenerate (collinear)
    driving hull would divide by zero: then the scale is 1 and a warning says why.
    """
    source_area = convex_hull_area(kp_source.value[0].detach().float().cpu().numpy())
    driving_area = convex_hull_area(kp_driving_initial.value[0].detach().float().cpu().numpy())
    if driving_area <= 0 or source_area <= 0:
        warnings.warn("keypoints are collinear, so the movement scale cannot be adapted; using 1")
        return 1.0
    return math.sqrt(source_area) / math.sqrt(driving_area)


def normalize_keypoints(
    kp_source: Keypoints,
    kp_driving: Keypoints,
    kp_driving_initial: Keypoints,
    *,
    relative: bool = True,
    relative_jacobian: bool = True,
    adapt_scale: bool = True,
) -> Keypoints:
    """Transfer driving motion onto the source keypoints.

    Absolute mode (``relative=False``) returns the driving keypoints unchanged. Relative mode
    moves the source keypoints by the driving displacement since ``kp_driving_initial``
    (scaled by :func:`movement_scale` when ``adapt_scale``), and with ``relative_jacobian``
    composes the jacobians as ``J_d J_init^-1 J_s``. Models without jacobians ignore
    ``relative_jacobian``.
    """
    if not relative:
        return kp_driving
    scale = movement_scale(kp_source, kp_driving_initial) if adapt_scale else 1.0
    displacement = kp_driving.value - kp_driving_initial.value
    if scale != 1.0:
        displacement = displacement * scale
    value = displacement + kp_source.value
    jacobian = kp_driving.jacobian
    if relative_jacobian and jacobian is not None:
        if kp_source.jacobian is None or kp_driving_initial.jacobian is None:
            raise ValueError("relative jacobians need jacobians for the source and initial frames too")
        jacobian = torch.matmul(
            torch.matmul(jacobian, inverse(kp_driving_initial.jacobian)), kp_source.jacobian
        )
    return Keypoints(value, jacobian)


def find_best_frame(kp_source: Keypoints, kp_driving: Keypoints) -> int:
    """Index of the driving frame whose pose is closest to the source's.

    Each keypoint set is made independent of position and size (centred on its mean and
    divided by the square root of its convex-hull area); the frame with the smallest sum
    of squared differences to the source wins, the first one on ties. This is the
    original demo's best-frame search with FOMM's own keypoints instead of a face
    landmark detector, so it works for any object category. Frames whose keypoints are
    collinear (no hull) cannot be compared and are never chosen.
    """
    if len(kp_driving) == 0:
        raise ValueError("no driving keypoints to search")
    source = _pose_shape(kp_source.value[0].detach().double().cpu().numpy())
    if source is None:
        raise ValueError("the source keypoints are collinear, so no pose can be matched; use a reference frame index")
    values = kp_driving.value.detach().double().cpu().numpy()
    distances = np.full(len(values), np.inf)
    for index, points in enumerate(values):
        shape = _pose_shape(points)
        if shape is not None:
            distances[index] = float(((shape - source) ** 2).sum())
    if not np.isfinite(distances).any():
        warnings.warn("every driving frame has collinear keypoints; using the first frame as reference")
        return 0
    return int(np.argmin(distances))


def _pose_shape(points: np.ndarray) -> np.ndarray | None:
    """(K, 2) keypoints centred and scaled to unit hull area, or None when collinear."""
    area = convex_hull_area(points)
    if area <= 0:
        return None
    return (points - points.mean(axis=0)) / math.sqrt(area)
