"""Bringing images of any size to the model's frame size, and back.

``fit`` letterboxes (resize keeping the aspect ratio, then pad) or centre-crops (resize to
cover, then crop) a batch to the model's (height, width); the returned :class:`Framing`
remembers the geometry so :meth:`Framing.restore` puts generated frames back at the
input's size and aspect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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

    def restore(self, frames: Tensor) -> Tensor:
        """Frames at the target size (N, C, h, w) -> the input's size and aspect (N, C, H, W).

        For ``pad`` the padding is cut away; for ``crop`` the cropped-away border cannot be
        generated and is left black (paste onto the source with a mask to fill it).
        """
        top, left = self.offset
        sh, sw = self.scaled_size
        th, tw = self.target_size
        if self.mode == "stretch":
            return resize(frames, self.input_size)
        canvas = frames.new_zeros(frames.shape[0], frames.shape[1], sh, sw)
        src_top, src_left = max(top, 0), max(left, 0)
        dst_top, dst_left = max(-top, 0), max(-left, 0)
        height = min(th - src_top, sh - dst_top)
        width = min(tw - src_left, sw - dst_left)
        canvas[:, :, dst_top : dst_top + height, dst_left : dst_left + width] = frames[
            :, :, src_top : src_top + height, src_left : src_left + width
        ]
        return resize(canvas, self.input_size)

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
