"""The original training augmentations, applied to a whole clip with one set of random draws.

Order (as in the original): flip (time or left-right), rotation, resize, crop, colour jitter.
Every random number comes from the ``numpy.random.Generator`` passed in, so a seeded
generator gives the same augmentation in any process or DataLoader worker. Frames are
(H, W, 3) float32 RGB in [0, 1].
"""

from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np
from PIL import Image, ImageEnhance

from .config import AugmentationParams, JitterParams

Clip = list[np.ndarray]


def random_flip(clip: Clip, rng: np.random.Generator, time_flip: bool, horizontal_flip: bool) -> Clip:
    """With probability 1/2 reverse time (and nothing else); otherwise, with probability 1/2,
    mirror every frame left-right. Both coins are always tossed, so the draws do not depend
    on the flags."""
    reverse, mirror = rng.random() < 0.5, rng.random() < 0.5
    if reverse and time_flip:
        return clip[::-1]
    if mirror and horizontal_flip:
        return [np.ascontiguousarray(frame[:, ::-1]) for frame in clip]
    return clip


def random_rotation(clip: Clip, rng: np.random.Generator, degrees: float) -> Clip:
    """Rotate every frame by one angle, uniform in [-degrees, degrees], counter-clockwise about
    the centre, bilinear, black outside (skimage ``rotate``'s defaults)."""
    angle = rng.uniform(-degrees, degrees)
    height, width = clip[0].shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0)
    return [
        cv2.warpAffine(frame, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        for frame in clip
    ]


def random_resize(clip: Clip, rng: np.random.Generator, ratio: tuple[float, float]) -> Clip:
    """Scale every frame by one factor uniform in ``ratio`` (new size ``int(side * factor)``),
    nearest-neighbour sampling after a Gaussian anti-aliasing blur when shrinking."""
    factor = rng.uniform(ratio[0], ratio[1])
    height, width = clip[0].shape[:2]
    new_height, new_width = max(1, int(height * factor)), max(1, int(width * factor))
    sigma = max(0.0, (1 / factor - 1) / 2)
    out = []
    for frame in clip:
        if sigma > 0:
            frame = cv2.GaussianBlur(frame, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
        out.append(cv2.resize(frame, (new_width, new_height), interpolation=cv2.INTER_NEAREST_EXACT))
    return out


def random_crop(clip: Clip, rng: np.random.Generator, size: tuple[int, int]) -> Clip:
    """Cut the same ``size`` = (h, w) window from every frame, edge-padding (centred) first
    where a frame is smaller."""
    h, w = size
    height, width = clip[0].shape[:2]
    pad_h = (0, 0) if h <= height else ((h - height) // 2, (h - height + 1) // 2)
    pad_w = (0, 0) if w <= width else ((w - width) // 2, (w - width + 1) // 2)
    if pad_h != (0, 0) or pad_w != (0, 0):
        clip = [np.pad(frame, (pad_h, pad_w, (0, 0)), mode="edge") for frame in clip]
        height, width = clip[0].shape[:2]
    top = int(rng.integers(0, height - h + 1))
    left = int(rng.integers(0, width - w + 1))
    return [np.ascontiguousarray(frame[top : top + h, left : left + w]) for frame in clip]


def _shift_hue(image: Image.Image, shift: float) -> Image.Image:
    """Rotate the hue by ``shift`` turns (in [-0.5, 0.5]) in PIL's 8-bit HSV space."""
    h, s, v = image.convert("HSV").split()
    hue = (np.asarray(h, dtype=np.int16) + int(shift * 255)) % 256
    return Image.merge("HSV", (Image.fromarray(hue.astype(np.uint8), "L"), s, v)).convert("RGB")


def color_jitter(clip: Clip, rng: np.random.Generator, params: JitterParams) -> Clip:
    """Brightness, contrast and saturation factors uniform in [max(0, 1 - x), 1 + x] and a hue
    shift uniform in [-hue, hue], one draw each per clip, applied in a random order on 8-bit
    frames (PIL's enhancers, as torchvision's ``ColorJitter`` does)."""
    adjustments: list[Callable[[Image.Image], Image.Image]] = []
    for amount, enhancer in (
        (params.brightness, ImageEnhance.Brightness),
        (params.contrast, ImageEnhance.Contrast),
        (params.saturation, ImageEnhance.Color),
    ):
        if amount > 0:
            factor = rng.uniform(max(0.0, 1 - amount), 1 + amount)
            adjustments.append(lambda image, e=enhancer, f=factor: e(image).enhance(f))
    if params.hue > 0:
        shift = rng.uniform(-params.hue, params.hue)
        adjustments.append(lambda image, s=shift: _shift_hue(image, s))
    if not adjustments:
        return clip
    order = rng.permutation(len(adjustments))
    out = []
    for frame in clip:
        image = Image.fromarray(np.round(np.clip(frame, 0, 1) * 255).astype(np.uint8))
        for i in order:
            image = adjustments[i](image)
        out.append(np.asarray(image, dtype=np.float32) / 255)
    return out


class Augmentation:
    """``AllAugmentationTransform``: the configured steps in the original order."""

    def __init__(self, params: AugmentationParams):
        self.params = params  # checked when it was made

    def __call__(self, clip: Sequence[np.ndarray], rng: np.random.Generator) -> Clip:
        frames = list(clip)
        p = self.params
        if p.flip_param is not None:
            frames = random_flip(frames, rng, p.flip_param.time_flip, p.flip_param.horizontal_flip)
        if p.rotation_param is not None:
            frames = random_rotation(frames, rng, p.rotation_param)
        if p.resize_param is not None:
            frames = random_resize(frames, rng, p.resize_param)
        if p.crop_param is not None:
            frames = random_crop(frames, rng, p.crop_param)
        if p.jitter_param is not None:
            frames = color_jitter(frames, rng, p.jitter_param)
        return frames
