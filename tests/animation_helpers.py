"""The model and frames for the animation, video and CLI tests.

Every test of the animation pipeline gets its model from :func:`animation_model` and every
CLI test its ``--checkpoint`` from :func:`model_checkpoint`: the embedded default model, the
one users get (10 keypoints with jacobians, occlusion, 128x128 frames). Tests take sizes
from ``model.config.frame_shape``, so another model is a one-line change here.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

import fomm_model as fm


@functools.lru_cache(maxsize=None)
def animation_model() -> fm.FirstOrderModel:
    """The embedded default model (occlusion, jacobians, trained batch norms): what users get."""
    return fm.load_model("default")


def frame_size(model: fm.FirstOrderModel) -> tuple[int, int]:
    return tuple(model.config.frame_shape)  # type: ignore[return-value]


def smooth_frames(count: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """(count, 3, H, W) images in [0, 1]: moving blurred blobs, so keypoints move smoothly."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size
    y = torch.linspace(-1, 1, height).view(height, 1)
    x = torch.linspace(-1, 1, width).view(1, width)
    centres = torch.rand(3, 2, generator=generator) * 1.2 - 0.6
    colours = torch.rand(3, 3, generator=generator)
    velocity = (torch.rand(3, 2, generator=generator) - 0.5) * 0.1
    frames = []
    for t in range(count):
        image = torch.full((3, height, width), 0.2)
        for (cx, cy), (vx, vy), colour in zip(centres, velocity, colours):
            blob = torch.exp(-((x - cx - vx * t) ** 2 + (y - cy - vy * t) ** 2) / 0.08)
            image = image * (1 - blob) + colour.view(3, 1, 1) * blob
        frames.append(image)
    return torch.stack(frames).clamp(0, 1)


def model_checkpoint() -> str:
    """The ``--checkpoint`` argument for CLI tests: the embedded model."""
    return "default"


def drawn_face(size: tuple[int, int], centre: tuple[int, int], scale: float = 1.0) -> torch.Tensor:
    """(3, H, W) picture of a cartoon face (skin, hair, eyes, brows, nose, mouth) that
    OpenCV's frontal-face cascade detects; about 120x160 pixels at scale 1."""
    height, width = size
    cx, cy = centre
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = (60, 90, 40)  # BGR background

    def s(value: float) -> int:
        return int(round(value * scale))

    cv2.ellipse(image, (cx, cy), (s(60), s(80)), 0, 0, 360, (150, 180, 225), -1)
    cv2.ellipse(image, (cx, cy - s(70)), (s(66), s(40)), 0, 180, 360, (30, 40, 60), -1)
    for dx in (-25, 25):
        cv2.ellipse(image, (cx + s(dx), cy - s(15)), (s(14), s(7)), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(image, (cx + s(dx), cy - s(15)), s(6), (40, 30, 20), -1)
        cv2.line(image, (cx + s(dx) - s(15), cy - s(32)), (cx + s(dx) + s(15), cy - s(30)), (30, 40, 60), max(1, s(4)))
    cv2.line(image, (cx, cy - s(10)), (cx - s(6), cy + s(18)), (110, 140, 190), max(1, s(3)))
    cv2.ellipse(image, (cx, cy + s(38)), (s(22), s(8)), 0, 0, 180, (60, 60, 170), -1)
    image = cv2.GaussianBlur(image, (5, 5), 0)
    return torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1])).permute(2, 0, 1).float() / 255
