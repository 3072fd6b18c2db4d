"""Small models and frames for the animation, video and CLI tests.

Every test of the animation pipeline gets its model from :func:`animation_model`; when the
embedded default model exists, ``return fm.load_model("default")`` there switches them all
to it (sizes come from ``model.config.frame_shape``).
"""

from __future__ import annotations

import functools

import torch

import fomm_model as fm

SMALL = fm.ModelConfig(
    kp_detector=fm.KeypointDetectorConfig(block_expansion=8, max_features=32, num_blocks=3, scale_factor=0.5),
    generator=fm.GeneratorConfig(
        block_expansion=8,
        max_features=32,
        num_bottleneck_blocks=2,
        dense_motion=fm.DenseMotionConfig(block_expansion=8, max_features=32, num_blocks=3, scale_factor=0.5),
    ),
    discriminator=None,
    frame_shape=(64, 64),
)


@functools.lru_cache(maxsize=None)
def animation_model() -> fm.FirstOrderModel:
    """A small seeded model (occlusion, jacobians) whose batch norms are not the identity."""
    generator = torch.Generator().manual_seed(1234)
    model = fm.build_model(SMALL)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
        # Non-identity jacobians, so relative-jacobian composition is exercised.
        jacobian = model.kp_detector.jacobian
        jacobian.weight.copy_(torch.randn(jacobian.weight.shape, generator=generator) * 0.01)
    return model


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
