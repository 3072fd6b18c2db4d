"""Geometry of the FOMM plane, in numpy only (no bpy): coordinates, weights, rig pose, caches.

FOMM moves a source point p with keypoint k as p -> kp_d + A (p - kp_s), A = J_d J_s^-1,
and blends the keypoints with per-point weights (background = no motion). On a mesh that is
linear blend skinning: one bone per keypoint whose pose is that affine map. A bone's loc/rot/
scale cannot shear, so A is split as R(theta) diag(sx, sy) R(phi): the control bone carries
the translation, theta and the scales, a child bone (inheriting scale) the extra rotation phi.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Weights below this are dropped from the vertex groups (then the rest renormalised).
WEIGHT_FLOOR = 1e-3


@dataclass(frozen=True)
class PlaneFrame:
    """FOMM normalised coordinates (x right, y down, +-1 at the border pixels' centres, or at
    the image edges when the model did not align corners) <-> the plane's local XY (x right,
    y up, origin at the image centre). The plane itself spans the whole image."""

    width: float
    height: float
    half_x: float  # local x of normalised x = +1
    half_y: float  # local y of normalised y = -1

    @classmethod
    def for_image(cls, pixels_wide: int, pixels_high: int, align_corners: bool, height: float) -> "PlaneFrame":
        width = height * pixels_wide / pixels_high
        inset_x = (pixels_wide - 1) / pixels_wide if align_corners else 1.0
        inset_y = (pixels_high - 1) / pixels_high if align_corners else 1.0
        return cls(width, height, width / 2 * inset_x, height / 2 * inset_y)

    @property
    def scale(self) -> np.ndarray:
        """Normalised -> local is a scaling per axis (flipping y): (x, y) * scale."""
        return np.array([self.half_x, -self.half_y])

    @property
    def matrix(self) -> np.ndarray:
        """The same map as a 2x2 matrix, for affine maps."""
        return np.diag(self.scale)

    def to_local(self, points: np.ndarray) -> np.ndarray:
        # elementwise, not ``@ matrix``: a (N, 2) x (2, 2) product through BLAS cost 15 times more
        return np.asarray(points, np.float64) * self.scale

    def to_normalised(self, local: np.ndarray) -> np.ndarray:
        return np.asarray(local, np.float64)[..., :2] / self.scale

    def affine_to_local(self, affine: np.ndarray) -> np.ndarray:
        m = self.matrix
        return m @ np.asarray(affine, np.float64) @ np.linalg.inv(m)


@dataclass(frozen=True)
class GridMesh:
    """A (columns x rows)-quad grid over the plane: vertices row by row from the bottom."""

    positions: np.ndarray  # (N, 3) local coordinates, z = 0
    uvs: np.ndarray  # (N, 2) texture coordinates of each vertex
    quads: np.ndarray  # (Q, 4) vertex indices, counter-clockwise seen from +z


def grid_mesh(frame: PlaneFrame, subdivisions: int) -> GridMesh:
    """``subdivisions`` quads along the longer side, square-ish quads along the other."""
    longer = max(frame.width, frame.height)
    columns = max(1, round(subdivisions * frame.width / longer))
    rows = max(1, round(subdivisions * frame.height / longer))
    u, v = np.meshgrid(np.linspace(0, 1, columns + 1), np.linspace(0, 1, rows + 1))
    uvs = np.stack([u.ravel(), v.ravel()], axis=1)
    positions = np.zeros((len(uvs), 3))
    positions[:, 0] = (uvs[:, 0] - 0.5) * frame.width
    positions[:, 1] = (uvs[:, 1] - 0.5) * frame.height
    r, c = np.mgrid[0:rows, 0:columns]
    corner = (r * (columns + 1) + c).ravel()
    quads = np.stack([corner, corner + 1, corner + columns + 2, corner + columns + 1], axis=1)
    return GridMesh(positions, uvs, quads)


@dataclass(frozen=True)
class GridSampler:
    """Bilinear lookup of grid data (gh, gw, C) at fixed normalised points (N, 2) -> (N, C).

    Grid node (i, j) sits at (x, y) = (2j / (gw - 1) - 1, 2i / (gh - 1) - 1); points outside
    read the nearest border value. Which four nodes a point reads, and with what weights,
    depends on the points alone: computed once, they serve every frame of a flow.
    """

    corners: np.ndarray  # (4, N) flat node indices: top-left, top-right, bottom-left, bottom-right
    weights: np.ndarray  # (4, N, 1)
    grid_shape: tuple[int, int]

    @classmethod
    def at(cls, points: np.ndarray, grid_shape: tuple[int, int]) -> "GridSampler":
        gh, gw = grid_shape
        x = np.clip((points[:, 0] + 1) / 2 * (gw - 1), 0, gw - 1)
        y = np.clip((points[:, 1] + 1) / 2 * (gh - 1), 0, gh - 1)
        j0 = np.minimum(np.floor(x).astype(np.int64), gw - 2)
        i0 = np.minimum(np.floor(y).astype(np.int64), gh - 2)
        fx, fy = x - j0, y - i0
        top_left = i0 * gw + j0
        corners = np.stack([top_left, top_left + 1, top_left + gw, top_left + gw + 1])
        weights = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])[..., None]
        return cls(corners, weights, (gh, gw))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if values.shape[:2] != self.grid_shape:
            raise ValueError(f"grid of shape {values.shape[:2]}, the sampler was made for {self.grid_shape}")
        flat = values.reshape(self.grid_shape[0] * self.grid_shape[1], -1)
        # Corner by corner (temporaries of one (N, C) each) with take, twice as fast as flat[...]
        result = np.take(flat, self.corners[0], axis=0) * self.weights[0]
        for corners, weights in zip(self.corners[1:], self.weights[1:]):
            result += np.take(flat, corners, axis=0) * weights
        return result


def vertex_weights(masks: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The motion file's weights (K+1, gh, gw) at normalised points (N, 2) -> (N, K+1), rows
    summing to one, tiny weights dropped (column 0 = background)."""
    weights = GridSampler.at(points, masks.shape[1:])(np.moveaxis(masks, 0, -1))
    weights = np.where(weights < WEIGHT_FLOOR, 0.0, weights)
    total = weights.sum(axis=1, keepdims=True)
    weights[total[:, 0] == 0, 0] = 1.0  # nothing left: the point stays with the background
    return weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class BonePose:
    """Per frame and keypoint: control bone location (T, K, 2), rotation theta (T, K), scale
    (T, K, 2); child bone rotation phi (T, K). All in the plane's local units and axes."""

    location: np.ndarray
    theta: np.ndarray
    scale: np.ndarray
    phi: np.ndarray


def region_pivots(weights: np.ndarray, rest_local: np.ndarray, keypoints_local: np.ndarray,
                  min_weight: float = 1.0) -> np.ndarray:
    """Each keypoint's pivot: the weighted centre (K, 2) of the vertices it moves, from
    :func:`vertex_weights` (N, K+1) at ``rest_local`` (N, 2); a keypoint that moves less than
    ``min_weight`` vertices' worth keeps its own position (``keypoints_local``, (K, 2))."""
    owned = weights[:, 1:]
    total = owned.sum(axis=0)
    centres = (owned.T @ rest_local) / np.maximum(total, 1e-12)[:, None]
    return np.where((total >= min_weight)[:, None], centres, keypoints_local)


def bone_pose(frame: PlaneFrame, kp_source: np.ndarray, jac_source: np.ndarray | None,
              kp_driving: np.ndarray, jac_driving: np.ndarray | None,
              pivots_local: np.ndarray | None = None) -> BonePose:
    """Bone channels that move keypoint k from kp_source (K, 2) to kp_driving (T, K, 2) with
    A = J_d J_s^-1 (identity without Jacobians), exactly, shear included.

    The bones rest at ``pivots_local`` (K, 2, plane units; default: the source keypoints).
    The motion is one affine map per keypoint, p -> kp_d + A (p - kp_s), and any pivot h
    expresses it exactly: h moves to kp_d + A (h - kp_s) and the rest turns about it."""
    frames, num_kp = kp_driving.shape[:2]
    location = frame.to_local(kp_driving) - frame.to_local(kp_source)[None]
    if jac_source is None or jac_driving is None:
        affine = np.broadcast_to(np.eye(2), (frames, num_kp, 2, 2))
    else:
        affine = np.asarray(jac_driving, np.float64) @ np.linalg.inv(np.asarray(jac_source, np.float64))[None]
    local = frame.affine_to_local(affine)
    if pivots_local is not None:
        offset = pivots_local - frame.to_local(kp_source)  # (K, 2)
        location = location + np.einsum("tkij,kj->tki", local - np.eye(2), offset)
    theta = np.zeros((frames, num_kp))
    phi = np.zeros((frames, num_kp))
    scale = np.ones((frames, num_kp, 2))
    for k in range(num_kp):
        previous = (0.0, 0.0)
        for t in range(frames):
            th, sx, sy, ph = decompose(local[t, k], previous)
            theta[t, k], scale[t, k], phi[t, k] = th, (sx, sy), ph
            previous = (th, ph)
    return BonePose(location, theta, scale, phi)


def decompose(affine: np.ndarray, previous: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float, float, float]:
    """2x2 ``affine`` = R(theta) diag(sx, sy) R(phi), with the angles closest to ``previous``.

    Closed-form 2x2 singular value decomposition with signed sy (negative for a reflection).
    The split is not unique: (theta + 90deg, sy, sx, phi - 90deg) is the same map, and with
    sx == sy any theta + phi split is; choosing the one nearest the previous frame keeps the
    keyframed curves smooth.
    """
    (a, b), (c, d) = affine
    e, f, g, h = (a + d) / 2, (a - d) / 2, (c + b) / 2, (c - b) / 2
    q, r = np.hypot(e, h), np.hypot(f, g)
    sx, sy = q + r, q - r
    turn = np.arctan2(h, e)  # theta + phi
    if r < 1e-9:  # no anisotropy: keep phi where it was
        return _near(turn - previous[1], previous[0]), sx, sy, previous[1]
    spread = np.arctan2(g, f)  # theta - phi
    theta, phi = (turn + spread) / 2, (turn - spread) / 2
    best = None
    for quarter in range(4):
        th = _near(theta + quarter * np.pi / 2, previous[0])
        ph = _near(phi - quarter * np.pi / 2, previous[1])
        cost = (th - previous[0]) ** 2 + (ph - previous[1]) ** 2
        if best is None or cost < best[0]:
            scales = (sx, sy) if quarter % 2 == 0 else (sy, sx)
            best = (cost, th, scales, ph)
    _, th, (sx, sy), ph = best
    return float(th), float(sx), float(sy), float(ph)


def _near(angle: float, reference: float) -> float:
    """``angle`` plus the multiple of 2 pi that brings it closest to ``reference``."""
    return float(reference + (angle - reference + np.pi) % (2 * np.pi) - np.pi)


def recompose(theta: float, sx: float, sy: float, phi: float) -> np.ndarray:
    return _rotation(theta) @ np.diag([sx, sy]) @ _rotation(phi)


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def flow_positions(frame: PlaneFrame, positions: np.ndarray, rest_local: np.ndarray) -> Iterator[np.ndarray]:
    """Vertices moved by the motion file's forward flow, one frame at a time: (T, gh, gw, 2)
    normalised positions of the grid nodes, rest vertices (N, 3) local -> T arrays (N, 3) of
    local float32. The displacement is interpolated, so vertices beyond the outermost grid
    nodes move with the border. Frame by frame, because a long video's cache on a dense
    plane is gigabytes: it goes to the file as it is made, never whole into memory."""
    gh, gw = positions.shape[1:3]
    nodes = np.stack(np.meshgrid(np.linspace(-1, 1, gw), np.linspace(-1, 1, gh)), axis=-1)
    sampler = GridSampler.at(frame.to_normalised(rest_local), (gh, gw))
    for grid in positions:
        moved = np.empty((len(rest_local), 3), np.float32)
        # to_local is linear: the rest vertex plus its displacement mapped to the plane
        moved[:, :2] = rest_local[:, :2] + frame.to_local(sampler(grid - nodes))
        moved[:, 2] = rest_local[:, 2]
        yield moved


PC2_HEADER = struct.Struct("<12siiffi")


def write_pc2(path: Path, frames: Iterable[np.ndarray], samples: int, points: int, start: float = 0.0) -> None:
    """Point cache 2 (what Blender's Mesh Cache modifier reads): a 32-byte little-endian header
    (b"POINTCACHE2\\0", version 1, point count, start frame, sampling, sample count) and then
    every sample's points as float32 (x, y, z), written as ``frames`` yields them."""
    written = 0
    with open(path, "wb") as stream:
        stream.write(PC2_HEADER.pack(b"POINTCACHE2\0", 1, points, start, 1.0, samples))
        for coordinates in frames:
            if coordinates.shape != (points, 3):
                raise ValueError(f"a sample of shape {coordinates.shape}, the cache holds ({points}, 3)")
            stream.write(np.ascontiguousarray(coordinates, dtype="<f4").tobytes())
            written += 1
    if written != samples:
        raise ValueError(f"{written} samples written, the header promised {samples}")
