"""Typed model configuration, the eight published presets, and the original YAML schema.

A :class:`ModelConfig` mirrors the ``model_params`` section of the original
first-order-model YAML files (``common_params``, ``kp_detector_params``,
``generator_params`` with nested ``dense_motion_params``, ``discriminator_params``) plus
the frame size the model was trained at, so that a config read from YAML, stored in a
safetensors header or inferred from a checkpoint's tensors all land in one typed object.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

PRESET_NAMES: tuple[str, ...] = (
    "vox-256",
    "vox-adv-256",
    "taichi-256",
    "taichi-adv-256",
    "mgif-256",
    "fashion-256",
    "bair-256",
    "nemo-256",
)


class ConfigError(ValueError):
    """A config file or value that cannot describe a FOMM model."""


@dataclass(frozen=True)
class KeypointDetectorConfig:
    """``kp_detector_params`` of the original schema."""

    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    temperature: float = 0.1
    scale_factor: float = 0.25
    single_jacobian_map: bool = False
    pad: int = 0


@dataclass(frozen=True)
class DenseMotionConfig:
    """``generator_params.dense_motion_params`` of the original schema."""

    block_expansion: int = 64
    max_features: int = 1024
    num_blocks: int = 5
    scale_factor: float = 0.25
    kp_variance: float = 0.01


@dataclass(frozen=True)
class GeneratorConfig:
    """``generator_params`` of the original schema."""

    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    num_bottleneck_blocks: int = 6
    estimate_occlusion_map: bool = True
    dense_motion: DenseMotionConfig = field(default_factory=DenseMotionConfig)
    # Not in the original (which always decodes every pixel): the decoder also predicts a
    # per-pixel weight for the source image warped by the flow, and the frame is the blend of
    # the two, so pixels that merely move keep the source's sharpness. The embedded default
    # model uses it; the published models do not have it (and their configs do not name it).
    blend_warped_source: bool = False


@dataclass(frozen=True)
class DiscriminatorConfig:
    """``discriminator_params`` of the original schema (training only)."""

    scales: tuple[float, ...] = (1,)
    block_expansion: int = 32
    max_features: int = 512
    num_blocks: int = 4
    sn: bool = False
    use_kp: bool = False
    kp_variance: float = 0.01


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build the three networks of a FOMM model.

    ``frame_shape`` is (height, width) of the frames the model was trained on; the networks
    accept other sizes (see :meth:`check_image_size`) but work best at this one.
    """

    num_kp: int = 10
    num_channels: int = 3
    estimate_jacobian: bool = True
    kp_detector: KeypointDetectorConfig = field(default_factory=KeypointDetectorConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig | None = field(default_factory=DiscriminatorConfig)
    frame_shape: tuple[int, int] = (256, 256)

    # ------------------------------------------------------------------ original schema
    @classmethod
    def from_model_params(
        cls, model_params: Mapping[str, Any], frame_shape: tuple[int, int] | None = None
    ) -> "ModelConfig":
        """Build from the ``model_params`` mapping of an original YAML config."""
        params = dict(model_params)
        common = dict(params.pop("common_params", {}) or {})
        kp_params = dict(params.pop("kp_detector_params", {}) or {})
        gen_params = dict(params.pop("generator_params", {}) or {})
        disc_params = params.pop("discriminator_params", None)
        if params:
            raise ConfigError(f"unknown entries in model_params: {sorted(params)}")
        dm_params = gen_params.pop("dense_motion_params", None)
        if dm_params is None:
            raise ConfigError(
                "generator_params.dense_motion_params is missing; every FOMM generator needs a "
                "dense motion network"
            )
        # The original networks take common_params as keyword arguments too and ignore
        # estimate_jacobian where it has no meaning; accept (and drop) the duplicates.
        gen_params.pop("estimate_jacobian", None)
        kp_params.pop("estimate_jacobian", None)
        occlusion = gen_params.pop("estimate_occlusion_map", False)
        kwargs: dict[str, Any] = dict(
            num_kp=as_int(common.pop("num_kp", 10), "num_kp"),
            num_channels=as_int(common.pop("num_channels", 3), "num_channels"),
            estimate_jacobian=bool(common.pop("estimate_jacobian", False)),
            kp_detector=typed_from_mapping(KeypointDetectorConfig, kp_params, "kp_detector_params"),
            generator=typed_from_mapping(
                GeneratorConfig,
                dict(
                    gen_params,
                    estimate_occlusion_map=bool(occlusion),
                    dense_motion=typed_from_mapping(DenseMotionConfig, dm_params, "dense_motion_params"),
                ),
                "generator_params",
            ),
            discriminator=None
            if disc_params is None
            else typed_from_mapping(DiscriminatorConfig, _discriminator_params(disc_params), "discriminator_params"),
        )
        if common:
            raise ConfigError(f"unknown entries in common_params: {sorted(common)}")
        if frame_shape is not None:
            kwargs["frame_shape"] = (int(frame_shape[0]), int(frame_shape[1]))
        config = cls(**kwargs)
        config.validate()
        if frame_shape is not None:  # stated, not a default: the model was trained and is used at this size
            height, width = config.frame_shape
            if not (config.accepts_side(height) and config.accepts_side(width)):
                step = config.size_multiple()
                raise ConfigError(
                    f"frame_shape {height}x{width} does not fit these networks: its sides must be multiples of {step} "
                    f"(e.g. {2 * step}x{2 * step}), the size a model of this architecture is trained and run at"
                )
        return config

    def to_model_params(self) -> dict[str, Any]:
        """The ``model_params`` mapping of the original schema."""
        kp = dataclasses.asdict(self.kp_detector)
        gen = dataclasses.asdict(self.generator)
        gen["dense_motion_params"] = gen.pop("dense_motion")
        if not gen["blend_warped_source"]:  # an extension of ours: original-schema configs stay as they were
            del gen["blend_warped_source"]
        params: dict[str, Any] = {
            "common_params": {
                "num_kp": self.num_kp,
                "num_channels": self.num_channels,
                "estimate_jacobian": self.estimate_jacobian,
            },
            "kp_detector_params": kp,
            "generator_params": gen,
        }
        if self.discriminator is not None:
            disc = dataclasses.asdict(self.discriminator)
            disc["scales"] = list(disc["scales"])
            params["discriminator_params"] = disc
        return params

    def to_json(self) -> str:
        """Compact JSON used in safetensors metadata."""
        return json.dumps(
            {"model_params": self.to_model_params(), "frame_shape": list(self.frame_shape)},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        try:
            data = json.loads(text)
            return cls.from_model_params(data["model_params"], tuple(data["frame_shape"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"invalid stored model config: {exc}") from exc

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Reject values the networks cannot be built with, naming the field."""
        positive = {
            "num_kp": self.num_kp,
            "num_channels": self.num_channels,
            "kp_detector_params.block_expansion": self.kp_detector.block_expansion,
            "kp_detector_params.max_features": self.kp_detector.max_features,
            "kp_detector_params.num_blocks": self.kp_detector.num_blocks,
            "generator_params.block_expansion": self.generator.block_expansion,
            "generator_params.max_features": self.generator.max_features,
            "dense_motion_params.block_expansion": self.generator.dense_motion.block_expansion,
            "dense_motion_params.max_features": self.generator.dense_motion.max_features,
            "dense_motion_params.num_blocks": self.generator.dense_motion.num_blocks,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        for name, scale in (
            ("kp_detector_params.scale_factor", self.kp_detector.scale_factor),
            ("dense_motion_params.scale_factor", self.generator.dense_motion.scale_factor),
        ):
            if not 0 < scale <= 1:
                raise ConfigError(f"{name} must be in (0, 1], got {scale}")
        if self.kp_detector.temperature <= 0:
            raise ConfigError("kp_detector_params.temperature must be positive")

    def check_image_size(self, height: int, width: int) -> None:
        """Raise a :class:`ValueError` naming working sizes when (height, width) cannot be used.

        The hourglasses of the keypoint detector and of the dense motion network concatenate
        skip connections, so their (downscaled) inputs must be divisible by 2**num_blocks,
        exactly like the original implementation.
        """
        problems = [side for side in (height, width) if not self.accepts_side(side)]
        if not problems:
            return
        step = self.size_multiple()
        examples = ", ".join(str(step * i) for i in range(1, 5))
        raise ValueError(
            f"this model cannot take {height}x{width} images: image sides must be multiples "
            f"of {step} (e.g. {examples}); resize, crop or pad the images first"
        )

    def accepts_side(self, side: int) -> bool:
        for scale, blocks in self._hourglass_inputs():
            reduced = _downscaled_side(side, scale)
            if reduced < 2**blocks or reduced % 2**blocks:
                return False
        return side >= 2**self.generator.num_down_blocks

    def size_multiple(self) -> int:
        """Smallest step such that every multiple of it is an accepted image side."""
        step = 2**self.generator.num_down_blocks
        for scale, blocks in self._hourglass_inputs():
            inverse = 1 if scale == 1 else int(1 / scale)
            step = math.lcm(step, inverse * 2**blocks)
        return step

    def _hourglass_inputs(self) -> tuple[tuple[float, int], ...]:
        return (
            (self.kp_detector.scale_factor, self.kp_detector.num_blocks),
            (self.generator.dense_motion.scale_factor, self.generator.dense_motion.num_blocks),
        )


def _downscaled_side(side: int, scale: float) -> int:
    """Side length after AntiAliasInterpolation2d (strided slice from index 0)."""
    if scale == 1:
        return side
    return -(-side // int(1 / scale))


_BOOLEAN_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _as_bool(value: Any, name: str) -> bool:
    """YAML's true/false; a quoted "false" must not turn into True as ``bool("false")`` does."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOLEAN_WORDS:
        return _BOOLEAN_WORDS[value.strip().lower()]
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def frame_shape_entry(value: Any, name: str = "dataset_params.frame_shape") -> tuple[int, ...]:
    """The config's ``frame_shape``: [height, width] or [height, width, channels]."""
    if not isinstance(value, (list, tuple)) or len(value) not in (2, 3):
        raise ConfigError(f"{name} must be [height, width, channels], e.g. [256, 256, 3], got {value!r}")
    return tuple(as_int(v, name) for v in value)


def as_int(value: Any, name: str) -> int:
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if not as_float.is_integer():
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    return int(as_float)


def _discriminator_params(params: Mapping[str, Any]) -> dict[str, Any]:
    # The original Discriminator swallows unknown keyword arguments (common_params are
    # splatted into it); keep only what it uses.
    known = {f.name for f in dataclasses.fields(DiscriminatorConfig)}
    values = {k: v for k, v in dict(params).items() if k in known}
    if "scales" in values:
        values["scales"] = tuple(values["scales"])
    return values


def typed_from_mapping(cls: type, params: Mapping[str, Any], section: str) -> Any:
    """Instantiate a config dataclass from a mapping, converting and checking each field."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ConfigError(f"unknown entries in {section}: {unknown}")
    values: dict[str, Any] = {}
    for name, value in params.items():
        default = fields[name].default
        if dataclasses.is_dataclass(value):
            values[name] = value
        elif isinstance(default, bool):
            values[name] = _as_bool(value, f"{section}.{name}")
        elif isinstance(default, int):
            values[name] = as_int(value, f"{section}.{name}")
        elif isinstance(default, float):
            try:
                values[name] = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{section}.{name} must be a number, got {value!r}") from None
        elif isinstance(default, tuple) or name == "scales":
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{section}.{name} must be a list, e.g. [{value}], got {value!r}")
            values[name] = tuple(as_number(v, f"{section}.{name}") for v in value)
        else:
            values[name] = value
    return cls(**values)


def as_number(value: Any, name: str) -> float | int:
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must hold numbers, got {value!r}") from None
    # Keep integral scales as int: their name in state dicts is str(scale) ("1", not "1.0").
    return int(as_float) if as_float.is_integer() else as_float


# ---------------------------------------------------------------------------------- YAML


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config in the original YAML schema (plain data only, no tags executed)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or "model_params" not in data:
        raise ConfigError(
            f"{path} is not a FOMM config: expected a mapping with a 'model_params' section "
            "(the schema of the original config/*.yaml files)"
        )
    return data


def model_config_from_yaml_data(data: Mapping[str, Any], source: str = "config") -> ModelConfig:
    frame_shape = (data.get("dataset_params") or {}).get("frame_shape")
    try:
        shape = None if frame_shape is None else frame_shape_entry(frame_shape)
        return ModelConfig.from_model_params(data["model_params"], shape[:2] if shape else None)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def preset_path(name: str) -> Path:
    if name not in PRESET_NAMES:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESET_NAMES)}")
    return Path(str(resources.files("fomm_model") / "configs" / f"{name}.yaml"))


def resolve_config(config: "ModelConfig | str | Path") -> ModelConfig:
    """Accept a config object, a preset name (``vox-256``) or a YAML path."""
    if isinstance(config, ModelConfig):
        return config
    text = str(config)
    if text in PRESET_NAMES:
        return model_config_from_yaml_data(read_yaml(preset_path(text)), text)
    path = Path(text)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        return model_config_from_yaml_data(read_yaml(path), str(path))
    raise ConfigError(
        f"{text!r} is neither a preset ({', '.join(PRESET_NAMES)}) nor a YAML config file"
    )
