"""What the library takes as pictures: float tensors of pixels in [0, 1], channels first.

Every entry point checks its pictures here before converting them, so an 8-bit or a
0-255 float image is refused with what to do instead of being animated into a saturated,
washed-out result.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Resampling (bicubic, antialiased) may overshoot [0, 1] slightly; 0-255 values do not fit.
_LOWEST, _HIGHEST = -0.5, 1.5


def check_pixels(images: Tensor, name: str, num_channels: int | None = None) -> None:
    """Validate an (N, C, H, W) batch of float pixels in [0, 1], with messages that say what to change."""
    if not isinstance(images, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor, got {type(images).__name__}; read files with "
            "fomm_model.video.read_image(path), convert a PIL image or an (H, W, 3) uint8 array with "
            "fomm_model.video.to_tensor(numpy.asarray(image.convert('RGB')))"
        )
    channels = "C" if num_channels is None else num_channels
    if images.ndim != 4 or (num_channels is not None and images.shape[1] != num_channels):
        raise ValueError(f"{name} must be (N, {channels}, H, W) float in [0, 1], got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty: give at least one frame")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be floating point in [0, 1], got {images.dtype}; divide uint8 by 255")
    low, high = torch.stack(torch.aminmax(images)).tolist()  # one device sync for both
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if low < _LOWEST or high > _HIGHEST:
        raise ValueError(f"{name} has values from {low:.4g} to {high:.4g}; pixels must be in [0, 1] (divide 0-255 values by 255)")
