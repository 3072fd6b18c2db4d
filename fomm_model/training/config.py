"""Typed training configuration: the non-model sections of the original YAML schema."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..config import (
    PRESET_NAMES,
    ConfigError,
    ModelConfig,
    as_int,
    as_number,
    frame_shape_entry,
    model_config_from_yaml_data,
    preset_path,
    read_yaml,
    typed_from_mapping,
)


@dataclass(frozen=True)
class FlipParams:
    horizontal_flip: bool = False
    time_flip: bool = False


_AUGMENTATION = "dataset_params.augmentation_params"


@dataclass(frozen=True)
class JitterParams:
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation", "hue"):
            if not getattr(self, name) >= 0:  # NaN fails too
                raise ConfigError(f"{_AUGMENTATION}.jitter_param.{name} must be 0 or more, got {getattr(self, name)}")
        if self.hue > 0.5:
            raise ConfigError(f"{_AUGMENTATION}.jitter_param.hue must be at most 0.5 (half a turn), got {self.hue}")


@dataclass(frozen=True)
class AugmentationParams:
    """``dataset_params.augmentation_params``; absent sections are ``None`` (not applied)."""

    flip_param: FlipParams | None = None
    rotation_param: float | None = None  # degrees
    resize_param: tuple[float, float] | None = None  # ratio range
    crop_param: tuple[int, int] | None = None  # size (h, w)
    jitter_param: JitterParams | None = None

    def __post_init__(self) -> None:
        if self.rotation_param is not None and not 0 <= self.rotation_param < math.inf:
            raise ConfigError(f"{_AUGMENTATION}.rotation_param.degrees must be a number, 0 or more, got {self.rotation_param}")
        if self.resize_param is not None and not 0 < self.resize_param[0] <= self.resize_param[1] < math.inf:
            raise ConfigError(
                f"{_AUGMENTATION}.resize_param.ratio must be two increasing positive numbers, got {list(self.resize_param)}"
            )
        if self.crop_param is not None and min(self.crop_param) < 1:
            raise ConfigError(f"{_AUGMENTATION}.crop_param.size must be positive, got {list(self.crop_param)}")


@dataclass(frozen=True)
class DatasetParams:
    root_dir: str = "data"
    frame_shape: tuple[int, int, int] = (256, 256, 3)
    id_sampling: bool = False
    pairs_list: str | None = None
    augmentation_params: AugmentationParams = field(default_factory=AugmentationParams)


@dataclass(frozen=True)
class TransformParams:
    """Random warp used by the equivariance losses; without ``sigma_tps``/``points_tps`` it
    is affine only (as in the original)."""

    sigma_affine: float = 0.05
    sigma_tps: float | None = None
    points_tps: int | None = None


@dataclass(frozen=True)
class LossWeights:
    generator_gan: float = 0.0
    discriminator_gan: float = 1.0
    feature_matching: tuple[float, ...] = (10, 10, 10, 10)
    perceptual: tuple[float, ...] = (10, 10, 10, 10, 10)
    equivariance_value: float = 10.0
    equivariance_jacobian: float = 10.0


# Top-level sections of the original YAML schema (prediction_params: read by nothing here,
# but kept in some original configs).
_SECTIONS = {
    "dataset_params", "model_params", "train_params", "reconstruction_params", "animate_params",
    "visualizer_params", "prediction_params",
}  # fmt: skip


@dataclass(frozen=True)
class TrainParams:
    num_epochs: int = 100
    num_repeats: int = 1
    epoch_milestones: tuple[int, ...] = ()
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    lr_kp_detector: float = 2e-4
    batch_size: int = 8
    scales: tuple[float, ...] = (1, 0.5, 0.25, 0.125)
    checkpoint_freq: int = 50
    transform_params: TransformParams | None = TransformParams(sigma_affine=0.05, sigma_tps=0.005, points_tps=5)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    # Not in the original schema: batch norm keeps the statistics of the weights it starts
    # from and normalises with them while training. For fine-tuning at small batches, whose
    # statistics are noisy and differ from those the weights were trained with.
    freeze_batch_norm: bool = False

    def __post_init__(self) -> None:
        for name in ("num_epochs", "num_repeats", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train_params.{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class ReconstructionParams:
    num_videos: int = 1000
    format: str = ".mp4"


@dataclass(frozen=True)
class NormalizationParams:
    adapt_movement_scale: bool = False
    use_relative_movement: bool = True
    use_relative_jacobian: bool = True


@dataclass(frozen=True)
class AnimateParams:
    num_pairs: int = 50
    format: str = ".mp4"
    normalization_params: NormalizationParams = field(default_factory=NormalizationParams)


@dataclass(frozen=True)
class VisualizerParams:
    kp_size: int = 5
    draw_border: bool = True
    colormap: str = "gist_rainbow"


@dataclass(frozen=True)
class RunConfig:
    """A whole original-schema config: model plus data, training and evaluation settings."""

    model: ModelConfig
    dataset: DatasetParams = field(default_factory=DatasetParams)
    train: TrainParams = field(default_factory=TrainParams)
    reconstruction: ReconstructionParams = field(default_factory=ReconstructionParams)
    animate: AnimateParams = field(default_factory=AnimateParams)
    visualizer: VisualizerParams = field(default_factory=VisualizerParams)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "RunConfig":
        """Read a preset name or a YAML file in the original schema."""
        source = preset_path(str(path)) if str(path) in PRESET_NAMES else Path(path)
        data = read_yaml(source)
        return cls.from_mapping(data, str(path))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "config") -> "RunConfig":
        unknown = sorted(set(data) - _SECTIONS)
        if unknown:
            raise ConfigError(f"{source}: unknown sections {unknown}; the original schema has {sorted(_SECTIONS - {'prediction_params'})}")
        model = model_config_from_yaml_data(data, source)  # its errors name the source already
        try:
            run = cls(
                model=model,
                dataset=_dataset(data.get("dataset_params") or {}),
                train=_train(data.get("train_params") or {}),
                reconstruction=typed_from_mapping(
                    ReconstructionParams, data.get("reconstruction_params") or {}, "reconstruction_params"
                ),
                animate=_animate(data.get("animate_params") or {}),
                visualizer=typed_from_mapping(VisualizerParams, data.get("visualizer_params") or {}, "visualizer_params"),
            )
            crop = run.dataset.augmentation_params.crop_param
            if crop is not None and not all(model.accepts_side(side) for side in crop):
                # the frames are trained at the crop's size (padded first where it is larger, as in the original)
                raise ConfigError(
                    f"{_AUGMENTATION}.crop_param size {list(crop)} does not fit these networks: "
                    f"its sides must be multiples of {model.size_multiple()}"
                )
            return run  # a frame_shape the networks cannot take was refused with the model config
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def to_mapping(self) -> dict[str, Any]:
        """The original YAML schema (what ``fomm train`` copies into a run folder)."""
        dataset = _plain(dataclasses.asdict(self.dataset))
        aug = dataset["augmentation_params"]
        if aug.get("crop_param") is not None:
            aug["crop_param"] = {"size": aug["crop_param"]}
        if aug.get("resize_param") is not None:
            aug["resize_param"] = {"ratio": aug["resize_param"]}
        if aug.get("rotation_param") is not None:
            aug["rotation_param"] = {"degrees": aug["rotation_param"]}
        dataset["augmentation_params"] = {k: v for k, v in aug.items() if v is not None}
        if dataset["pairs_list"] is None:
            del dataset["pairs_list"]
        train = _plain(dataclasses.asdict(self.train))
        if not train["freeze_batch_norm"]:  # an extension: left out unless used, so the schema stays the original's
            del train["freeze_batch_norm"]
        return {
            "dataset_params": dataset,
            "model_params": self.model.to_model_params(),
            "train_params": train,
            "reconstruction_params": dataclasses.asdict(self.reconstruction),
            "animate_params": _plain(dataclasses.asdict(self.animate)),
            "visualizer_params": dataclasses.asdict(self.visualizer),
        }


def carried_training_config(checkpoint: str | Path) -> RunConfig | None:
    """The training config a checkpoint came with: a `fomm train` run folder's config.yaml, or
    the one the files `fomm train` writes carry (the embedded default among them, and their
    `fomm convert` copies); None for other checkpoints (the published ones)."""
    from ..checkpoint import TRAINING_CONFIG_KEY, read_checkpoint
    from ..loading import resolve_checkpoint_path

    if Path(checkpoint).is_dir() and (Path(checkpoint) / "config.yaml").is_file():
        return RunConfig.from_yaml(Path(checkpoint) / "config.yaml")
    carried = read_checkpoint(resolve_checkpoint_path(checkpoint)).extra.get(TRAINING_CONFIG_KEY)
    if not isinstance(carried, str):
        return None
    try:
        data = json.loads(carried)
    except json.JSONDecodeError:
        raise ConfigError(f"{checkpoint}: its training config is damaged; give --config") from None
    return RunConfig.from_mapping(data, f"the training config of {checkpoint}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _dataset(params: Mapping[str, Any]) -> DatasetParams:
    params = dict(params)
    aug = dict(params.pop("augmentation_params", None) or {})
    rotation = _augmentation_entry(aug, "rotation_param", "degrees", "{degrees: 30}")
    resize = _augmentation_entry(aug, "resize_param", "ratio", "{ratio: [0.9, 1.1]}")
    crop = _augmentation_entry(aug, "crop_param", "size", "{size: [256, 256]}")
    augmentation = AugmentationParams(
        flip_param=typed_from_mapping(FlipParams, aug.pop("flip_param"), "flip_param") if aug.get("flip_param") else None,
        rotation_param=None if rotation is None else float(as_number(rotation, f"{_AUGMENTATION}.rotation_param.degrees")),
        resize_param=None if resize is None else _pair(resize, f"{_AUGMENTATION}.resize_param.ratio", "[0.9, 1.1]"),  # type: ignore[arg-type]
        crop_param=None if crop is None else _pair(crop, f"{_AUGMENTATION}.crop_param.size", "[256, 256]"),  # type: ignore[arg-type]
        jitter_param=typed_from_mapping(JitterParams, aug.pop("jitter_param"), "jitter_param") if aug.get("jitter_param") else None,
    )
    unknown = sorted(k for k, v in aug.items() if v)
    if unknown:
        raise ConfigError(f"unknown entries in augmentation_params: {unknown}")
    if "frame_shape" in params:
        shape = list(frame_shape_entry(params["frame_shape"]))
        params["frame_shape"] = tuple(shape + [3] * (3 - len(shape)))
    dataset = typed_from_mapping(DatasetParams, dict(params, augmentation_params=augmentation), "dataset_params")
    _check_resize_is_cropped(dataset)
    return dataset


def _augmentation_entry(aug: dict[str, Any], section: str, key: str, example: str) -> Any:
    """The value of an augmentation written the original's way (``rotation_param: {degrees:
    30}``), taken out of ``aug``; ``None`` when the section is absent (or null)."""
    value = aug.pop(section, None)
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {key} or value[key] is None:
        raise ConfigError(f"{_AUGMENTATION}.{section} must be written {section}: {example} (the original schema), got {value!r}")
    return value[key]


def _pair(value: Any, name: str, example: str) -> tuple[float | int, float | int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{name} must be two numbers, e.g. {example}, got {value!r}")
    sizes = name.endswith(".size")
    return tuple(as_int(v, name) if sizes else float(as_number(v, name)) for v in value)  # type: ignore[return-value]


def _check_resize_is_cropped(dataset: DatasetParams) -> None:
    """A resize changes each clip's size by its own factor, so a batch could not be stacked:
    the original configs that resize crop afterwards."""
    aug = dataset.augmentation_params
    if aug.resize_param is not None and aug.crop_param is None:
        raise ConfigError(
            f"{_AUGMENTATION}.resize_param changes the frames' size, so the frames of a batch "
            f"would differ: add crop_param: {{size: {list(dataset.frame_shape[:2])}}} to cut them to one size, as "
            "the original configs do"
        )


def _train(params: Mapping[str, Any]) -> TrainParams:
    params = dict(params)
    transform = params.pop("transform_params", None)
    weights = params.pop("loss_weights", None) or {}
    train = typed_from_mapping(
        TrainParams,
        dict(
            params,
            transform_params=None if transform is None else typed_from_mapping(TransformParams, transform, "transform_params"),
            loss_weights=typed_from_mapping(LossWeights, weights, "loss_weights"),
        ),
        "train_params",
    )
    equivariance = train.loss_weights.equivariance_value or train.loss_weights.equivariance_jacobian
    if train.transform_params is None and equivariance:  # the original fails on this at its first step
        raise ConfigError(
            "train_params.transform_params is missing, but the equivariance losses it drives are weighted: add it "
            "(the original's is {sigma_affine: 0.05, sigma_tps: 0.005, points_tps: 5}) or set loss_weights' "
            "equivariance_value and equivariance_jacobian to 0"
        )
    return train


def _animate(params: Mapping[str, Any]) -> AnimateParams:
    params = dict(params)
    norm = params.pop("normalization_params", None) or {}
    return typed_from_mapping(
        AnimateParams,
        dict(params, normalization_params=typed_from_mapping(NormalizationParams, norm, "normalization_params")),
        "animate_params",
    )
