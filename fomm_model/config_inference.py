"""Recover a :class:`ModelConfig` from a checkpoint's tensors alone.

Every architectural choice of FOMM leaves a trace in the weights (widths, counts, which
heads exist, the anti-aliasing kernels). Two values never do: the softmax temperature and
the keypoint conv padding, which take the values of every published config (0.1, 0), and
a ``max_features`` cap that the widths never reach, which has no effect on the network.
"""

from __future__ import annotations

import math
import re
from typing import Mapping

from torch import Tensor

from .config import (
    ConfigError,
    DenseMotionConfig,
    DiscriminatorConfig,
    GeneratorConfig,
    KeypointDetectorConfig,
    ModelConfig,
)

StateDict = Mapping[str, Tensor]

# Published configs: what an unobservable cap most likely was.
_DEFAULT_GENERATOR_MAX_FEATURES = 512


def infer_model_config(
    kp_detector: StateDict, generator: StateDict, discriminator: StateDict | None = None
) -> ModelConfig:
    """Infer the architecture of the three networks from their state dicts."""
    try:
        num_channels = _shape(kp_detector, "predictor.encoder.down_blocks.0.conv.weight")[1]
        num_kp = _shape(kp_detector, "kp.weight")[0]
        kp_config, estimate_jacobian = _keypoint_detector(kp_detector, num_kp, num_channels)
        disc_config = None if not discriminator else _discriminator(discriminator, num_kp, num_channels)
        gen_config = _generator(generator, num_kp, num_channels, disc_config)
    except KeyError as exc:
        raise ConfigError(f"cannot infer the model config: the checkpoint lacks tensor {exc}") from None
    config = ModelConfig(
        num_kp=num_kp,
        num_channels=num_channels,
        estimate_jacobian=estimate_jacobian,
        kp_detector=kp_config,
        generator=gen_config,
        discriminator=disc_config,
    )
    config.validate()
    return config


def _shape(state: StateDict, key: str) -> tuple[int, ...]:
    if key not in state:
        raise KeyError(key)
    return tuple(state[key].shape)


def _count(state: StateDict, pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for key in state if (m := regex.match(key))})


def _hourglass(state: StateDict, prefix: str) -> tuple[int, int, int]:
    """(block_expansion, num_blocks, max_features) of an hourglass under ``prefix``."""
    num_blocks = _count(state, re.escape(prefix) + r"encoder\.down_blocks\.(\d+)\.")
    if num_blocks == 0:
        raise KeyError(prefix + "encoder.down_blocks.0.conv.weight")
    block_expansion = _shape(state, f"{prefix}decoder.up_blocks.{num_blocks - 1}.conv.weight")[0]
    deepest = _shape(state, f"{prefix}encoder.down_blocks.{num_blocks - 1}.conv.weight")[0]
    return block_expansion, num_blocks, deepest


def _scale_factor(state: StateDict, key: str) -> float:
    """Recover the anti-aliasing scale from its Gaussian kernel (1 when there is none)."""
    if key not in state:
        return 1
    kernel = state[key][0, 0].double()
    centre = kernel.shape[-1] // 2
    ratio = (kernel[centre, centre + 1] / kernel[centre, centre]).item()
    sigma = math.sqrt(-1 / (2 * math.log(ratio)))
    inverse = 2 * sigma + 1
    if abs(inverse - round(inverse)) < 1e-3:
        return 1 / round(inverse)
    return round(1 / inverse, 6)


def _keypoint_detector(state: StateDict, num_kp: int, num_channels: int) -> tuple[KeypointDetectorConfig, bool]:
    block_expansion, num_blocks, deepest = _hourglass(state, "predictor.")
    estimate_jacobian = "jacobian.weight" in state
    single_map = estimate_jacobian and _shape(state, "jacobian.weight")[0] == 4 and num_kp != 1
    return (
        KeypointDetectorConfig(
            block_expansion=block_expansion,
            max_features=deepest,
            num_blocks=num_blocks,
            scale_factor=_scale_factor(state, "down.weight"),
            single_jacobian_map=single_map,
        ),
        estimate_jacobian,
    )


def _generator(
    state: StateDict, num_kp: int, num_channels: int, discriminator: DiscriminatorConfig | None
) -> GeneratorConfig:
    dm_be, dm_blocks, dm_deepest = _hourglass(state, "dense_motion_network.hourglass.")
    dense_motion = DenseMotionConfig(
        block_expansion=dm_be,
        max_features=dm_deepest,
        num_blocks=dm_blocks,
        scale_factor=_scale_factor(state, "dense_motion_network.down.weight"),
    )
    block_expansion = _shape(state, "first.conv.weight")[0]
    num_down = _count(state, r"down_blocks\.(\d+)\.")
    bottleneck_width = (
        _shape(state, f"down_blocks.{num_down - 1}.conv.weight")[0] if num_down else block_expansion
    )
    return GeneratorConfig(
        block_expansion=block_expansion,
        max_features=_generator_cap(block_expansion, num_down, bottleneck_width, discriminator),
        num_down_blocks=num_down,
        num_bottleneck_blocks=_count(state, r"bottleneck\.r(\d+)\."),
        estimate_occlusion_map="dense_motion_network.occlusion.weight" in state,
        dense_motion=dense_motion,
        blend_warped_source="blend.weight" in state,
    )


def _generator_cap(block_expansion: int, num_down: int, bottleneck_width: int, disc: DiscriminatorConfig | None) -> int:
    """The generator's ``max_features``: exact when the widths hit it, else a guess.

    When the widths never reach the cap it cannot be read from the weights (and changes
    nothing). The original configs give the generator and the discriminator the same cap,
    so that one is used when it is consistent, else the published value, else the width.
    """
    if bottleneck_width < block_expansion * 2**num_down:
        return bottleneck_width
    for candidate in (disc.max_features if disc else None, _DEFAULT_GENERATOR_MAX_FEATURES):
        if candidate is not None and candidate >= bottleneck_width:
            return candidate
    return bottleneck_width


def _discriminator(state: StateDict, num_kp: int, num_channels: int) -> DiscriminatorConfig:
    scale_keys = list(dict.fromkeys(key.split(".")[1] for key in state if key.startswith("discs.")))
    if not scale_keys:
        raise KeyError("discs.<scale>.conv.bias")
    first = scale_keys[0]
    prefix = f"discs.{first}."
    sn = f"{prefix}conv.weight_orig" in state
    suffix = "weight_orig" if sn else "weight"
    num_blocks = _count(state, re.escape(prefix) + r"down_blocks\.(\d+)\.")
    first_shape = _shape(state, f"{prefix}down_blocks.0.conv.{suffix}")
    return DiscriminatorConfig(
        scales=tuple(_parse_scale(key) for key in scale_keys),
        block_expansion=first_shape[0] // 2,  # the first block already doubles the width
        max_features=_shape(state, f"{prefix}down_blocks.{num_blocks - 1}.conv.{suffix}")[0],
        num_blocks=num_blocks,
        sn=sn,
        use_kp=first_shape[1] == num_channels + num_kp,
    )


def _parse_scale(key: str) -> float | int:
    value = float(key.replace("-", "."))
    return int(value) if value.is_integer() and "-" not in key else value


__all__ = ["infer_model_config"]
