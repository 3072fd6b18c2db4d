"""Pictures of FOMM's intermediates: keypoints, flows, occlusion and masks.

One implementation for the training visualiser, ``fomm animate --visualize``, the ComfyUI
preview nodes and the README figures. Images are (N, 3, H, W) float tensors in [0, 1].
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .keypoints import Keypoints

# matplotlib's gist_rainbow colormap (the original visualiser's default), as control points.
_GIST_RAINBOW = (
    (0.000, (1.00, 0.00, 0.16)),
    (0.030, (1.00, 0.00, 0.00)),
    (0.215, (1.00, 1.00, 0.00)),
    (0.400, (0.00, 1.00, 0.00)),
    (0.586, (0.00, 1.00, 1.00)),
    (0.770, (0.00, 0.00, 1.00)),
    (0.954, (1.00, 0.00, 1.00)),
    (1.000, (1.00, 0.00, 0.75)),
)


def keypoint_colors(num_kp: int) -> np.ndarray:
    """(K, 3) RGB colours in [0, 1], keypoint k at position k / K of gist_rainbow."""
    stops = np.array([s for s, _ in _GIST_RAINBOW])
    rgb = np.array([c for _, c in _GIST_RAINBOW])
    positions = np.arange(num_kp) / max(num_kp, 1)
    return np.stack([np.interp(positions, stops, rgb[:, c]) for c in range(3)], axis=1)


def to_pixels(value: Tensor, height: int, width: int) -> Tensor:
    """Normalised keypoint coordinates -> pixel (x, y) as the original visualiser maps them."""
    return (value + 1) / 2 * torch.tensor([width, height], dtype=value.dtype, device=value.device)


def draw_keypoints(images: Tensor, keypoints: Keypoints, radius: int | None = None) -> Tensor:
    """Filled disks in the keypoint colours on a copy of each image."""
    height, width = images.shape[-2:]
    radius = radius or max(2, round(min(height, width) / 64))
    colors = keypoint_colors(keypoints.num_kp)
    kp = keypoints.expand(images.shape[0]) if len(keypoints) == 1 else keypoints
    points = to_pixels(kp.value.detach().float().cpu(), height, width).numpy()
    out = []
    for image, frame_points in zip(images.detach().float().cpu(), points):
        canvas = image.permute(1, 2, 0).numpy().copy()  # always a copy: the view may be the caller's own pixels
        for (x, y), color in zip(frame_points, colors):
            cv2.circle(canvas, (int(round(x)), int(round(y))), radius, tuple(float(c) for c in color), -1, cv2.LINE_AA)
        out.append(torch.from_numpy(canvas).permute(2, 0, 1))
    return torch.stack(out).to(images.device)


def flow_to_color(deformation: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """Colour-code the displacement of a (N, h, w, 2) backward flow (hue = direction).

    Displacement is the sampling position minus the identity grid; saturation grows with
    its magnitude (full at a quarter of the image).
    """
    from .geometry import make_coordinate_grid

    n, h, w, _ = deformation.shape
    grid = make_coordinate_grid(h, w, deformation.dtype, deformation.device)
    delta = (deformation - grid).detach().float().cpu().numpy()
    angle = (np.arctan2(delta[..., 1], delta[..., 0]) + np.pi) / (2 * np.pi)
    magnitude = np.clip(np.linalg.norm(delta, axis=-1) / 0.5, 0, 1)
    hsv = np.stack([angle * 179, magnitude * 255, np.full_like(angle, 255)], axis=-1).astype(np.uint8)
    rgb = np.stack([cv2.cvtColor(frame, cv2.COLOR_HSV2RGB) for frame in hsv]).astype(np.float32) / 255
    out = torch.from_numpy(rgb).permute(0, 3, 1, 2)
    return upscale_nearest(out, size) if size else out


def upscale_nearest(maps: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(maps.float(), size=size, mode="nearest")


def gray_to_rgb(maps: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """A (N, 1, h, w) map in [0, 1] as a grey RGB image."""
    maps = maps.detach().float()
    if size:
        maps = upscale_nearest(maps, size)
    return maps.expand(-1, 3, -1, -1)


def masks_to_color(mask: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """(N, K+1, h, w) soft assignment -> one image: background grey, keypoint k its colour."""
    num_kp = mask.shape[1] - 1
    palette = torch.tensor(np.concatenate([[[0.5, 0.5, 0.5]], keypoint_colors(num_kp)]), dtype=torch.float32)
    out = torch.einsum("nkhw,kc->nchw", mask.detach().float().cpu(), palette)
    return upscale_nearest(out, size) if size else out


def side_by_side(columns: list[Tensor], border: bool = True) -> Tensor:
    """Concatenate (N, 3, H, W) columns horizontally, white lines between them."""
    columns = [c.detach().float().cpu().clamp(0, 1) for c in columns]
    if border:
        columns = [c.clone() for c in columns]
        for c in columns:
            c[..., 0] = 1
            c[..., -1] = 1
    return torch.cat(columns, dim=-1)


def visualize_generation(
    source: Tensor, driving: Tensor, kp_source: Keypoints, kp_driving: Keypoints, out: dict[str, Tensor]
) -> Tensor:
    """The original visualiser's strip: source+kp | driving+kp | deformed | occlusion |
    prediction, with the generator's ``source_weight`` before the prediction for a model
    that blends the warped source (white: the warped source's pixel)."""
    size = tuple(driving.shape[-2:])
    n = driving.shape[0]
    columns = [
        draw_keypoints(source.expand(n, -1, -1, -1), kp_source),
        draw_keypoints(driving, kp_driving),
    ]
    if "deformed" in out:
        columns.append(out["deformed"])
    if "occlusion_map" in out:
        columns.append(gray_to_rgb(out["occlusion_map"], size))
    if "source_weight" in out:
        columns.append(gray_to_rgb(out["source_weight"], size))
    columns.append(out["prediction"])
    return side_by_side(columns)
