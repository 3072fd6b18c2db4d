"""Normalised coordinate grids, Gaussian keypoint heatmaps and grid warping.

Conventions (shared by every network): coordinates are (x, y) with x along the width,
-1 and +1 are the centres of the first and last pixel. ``align_corners`` selects how
``grid_sample`` reads such grids: True is what the published checkpoints were trained
with (torch <= 1.2); False is what the unmodified original code does on modern torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def inverse(matrices: Tensor) -> Tensor:
    """``torch.inverse``, also for half and bfloat16 matrices (a half model's jacobians):
    torch's linear algebra has no low-precision kernels, so those are inverted in float32."""
    if matrices.dtype in (torch.float16, torch.bfloat16):
        return torch.inverse(matrices.float()).to(matrices.dtype)
    return torch.inverse(matrices)


def make_coordinate_grid(
    height: int, width: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """(height, width, 2) grid of normalised (x, y) pixel-centre coordinates.

    Computed as ``2 * (i / (n - 1)) - 1`` in the working dtype, which is not always
    bit-identical to ``torch.linspace``; the published models were trained with this formula.
    """
    x = torch.arange(width, dtype=dtype, device=device)
    y = torch.arange(height, dtype=dtype, device=device)
    x = 2 * (x / (width - 1)) - 1
    y = 2 * (y / (height - 1)) - 1
    return torch.stack(
        [x.view(1, width).expand(height, width), y.view(height, 1).expand(height, width)], dim=-1
    )


def keypoint_heatmaps(value: Tensor, height: int, width: int, variance: float) -> Tensor:
    """Unnormalised Gaussians (peak 1) around keypoints: (..., K, 2) -> (..., K, h, w)."""
    grid = make_coordinate_grid(height, width, value.dtype, value.device)
    offsets = grid - value[..., None, None, :]
    return torch.exp(-0.5 * (offsets**2).sum(-1) / variance)


def warp(image: Tensor, grid: Tensor, align_corners: bool, padding_mode: str = "zeros") -> Tensor:
    """Backward warp: output(z) = image(grid(z)), bilinear.

    ``grid`` is (B, h, w, 2); when its size differs from the image's it is resized
    bilinearly (align_corners=False, as the original) to the image size first.
    """
    height, width = image.shape[-2:]
    if grid.shape[1:3] != (height, width):
        grid = resize_flow(grid, height, width)
    return F.grid_sample(
        image, grid.to(image.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=align_corners
    )


def upsample(maps: Tensor, size: tuple[int, int], align_corners: bool) -> Tensor:
    """Bilinear resize of (N, C, h, w) maps defined on the model's coordinate grid.

    The dense motion grid puts -1 and +1 on the centres of its border cells; with
    ``align_corners=True`` (the published models' convention) interpolating with the same
    convention keeps that, so a still flow upsamples to the exact identity at any
    resolution and a still source stays pixel-sharp. (The original's ``deformed`` output
    and :func:`resize_flow` use align_corners=False, which smears the
    outer half cell.)
    """
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=align_corners)


def warp_sharp(image: Tensor, deformation: Tensor, align_corners: bool) -> Tensor:
    """Backward-warp ``image`` with a coarser ``deformation``, the flow resized by
    :func:`upsample` (on the model's grid) rather than as :func:`warp` resizes it, so a still
    flow gives back the image pixel for pixel."""
    height, width = image.shape[-2:]
    flow = upsample(deformation.permute(0, 3, 1, 2), (height, width), align_corners).permute(0, 2, 3, 1)
    return warp(image, flow, align_corners)


def resize_flow(grid: Tensor, height: int, width: int) -> Tensor:
    """Bilinearly resize a (B, h, w, 2) sampling grid to (B, height, width, 2)."""
    channels_first = grid.permute(0, 3, 1, 2)
    resized = F.interpolate(channels_first, size=(height, width), mode="bilinear", align_corners=False)
    return resized.permute(0, 2, 3, 1)


def resize_map(values: Tensor, height: int, width: int) -> Tensor:
    """Bilinearly resize a (B, C, h, w) map (occlusion, masks) to (height, width)."""
    if values.shape[-2:] == (height, width):
        return values
    return F.interpolate(values, size=(height, width), mode="bilinear", align_corners=False)
