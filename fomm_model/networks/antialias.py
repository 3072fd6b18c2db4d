"""Anti-aliased downscaling and the multi-scale image pyramid built from it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur, then keep every (1/scale)-th row and column starting at index 0.

    The kernel is a persistent buffer named ``weight`` because the original stores it in
    its state dicts; it is fully determined by ``scale`` (sigma = (1/scale - 1) / 2).
    """

    def __init__(self, channels: int, scale: float):
        super().__init__()
        sigma = (1 / scale - 1) / 2
        kernel_size = 2 * round(sigma * 4) + 1
        self.ka = kernel_size // 2
        self.kb = self.ka - 1 if kernel_size % 2 == 0 else self.ka
        taps = torch.arange(kernel_size, dtype=torch.float32)
        mean = (kernel_size - 1) / 2
        if sigma == 0:  # scale 1: identity; forward never convolves
            gauss = torch.ones(kernel_size)
        else:
            gauss = torch.exp(-((taps - mean) ** 2) / (2 * sigma**2))
        kernel = gauss[:, None] * gauss[None, :]
        kernel = kernel / torch.sum(kernel)
        self.register_buffer("weight", kernel.expand(channels, 1, kernel_size, kernel_size).clone())
        self.groups = channels
        self.scale = scale
        self.stride = int(1 / scale)

    def forward(self, x: Tensor) -> Tensor:
        if self.scale == 1.0:
            return x
        out = F.pad(x, (self.ka, self.kb, self.ka, self.kb))
        out = F.conv2d(out, weight=self.weight.to(out.dtype), groups=self.groups)
        return out[:, :, :: self.stride, :: self.stride]


def scale_key(scale: float) -> str:
    """Module-dict key of a scale as in the original (``str(scale)`` with '.' -> '-')."""
    return str(scale).replace(".", "-")


class ImagePyramid(nn.Module):
    """Anti-aliased copies of an image at several scales, keyed ``prediction_<scale>``."""

    def __init__(self, scales: tuple[float, ...], num_channels: int):
        super().__init__()
        self.downs = nn.ModuleDict(
            {scale_key(scale): AntiAliasInterpolation2d(num_channels, scale) for scale in scales}
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {
            "prediction_" + key.replace("-", "."): down(x) for key, down in self.downs.items()
        }
