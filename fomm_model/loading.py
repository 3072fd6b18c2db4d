"""``load_model``: any FOMM checkpoint (or the embedded default) to a ready model."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import torch

from .checkpoint import CHECKPOINT_NAME, MODEL_NAME, Checkpoint, CheckpointError, read_checkpoint
from .config import ModelConfig, resolve_config
from .config_inference import infer_model_config
from .model import FirstOrderModel

DEFAULT_MODEL_NAME = "default"


def default_model_path() -> Path:
    """Where the embedded default model ships inside the package."""
    return Path(str(resources.files("fomm_model") / "weights" / "default.safetensors"))


def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    if str(path) == DEFAULT_MODEL_NAME:
        default = default_model_path()
        if not default.is_file():
            raise CheckpointError(
                f"the embedded default model is missing from this installation ({default}); "
                "reinstall the package or pass a checkpoint path"
            )
        return default
    path = Path(path)
    if path.is_dir():  # a training run's folder: its checkpoint, always the latest state (the model is the last end's)
        for name in (CHECKPOINT_NAME, MODEL_NAME):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} is a folder without a checkpoint: give a file, or a `fomm train` run folder")
    return path


def load_model(
    path: str | os.PathLike,
    config: ModelConfig | str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    align_corners: bool = True,
) -> FirstOrderModel:
    """Load a FOMM checkpoint into a model in eval mode.

    ``path``: an original ``.pth.tar`` (read with ``weights_only=True``), a safetensors
    file, or ``"default"`` for the embedded model. ``config``: a preset name, YAML path or
    :class:`ModelConfig`; when omitted the config stored in the file is used, else it is
    inferred from the tensors. ``align_corners=True`` reproduces the grid sampling the
    published checkpoints were trained with; ``False`` the unmodified original code on
    modern torch.
    """
    path = resolve_checkpoint_path(path)
    checkpoint = read_checkpoint(path)
    model_config = _choose_config(checkpoint, config, path)
    model = FirstOrderModel(model_config, align_corners=align_corners)
    _load_weights(model, checkpoint, path, explicit_config=config is not None)
    return model.to(device).eval()


def _choose_config(checkpoint: Checkpoint, config: ModelConfig | str | os.PathLike | None, path: Path) -> ModelConfig:
    sds = checkpoint.state_dicts
    if config is not None:
        chosen = resolve_config(config)
    elif checkpoint.config is not None:
        chosen = checkpoint.config
    else:
        return infer_model_config(sds["kp_detector"], sds["generator"], sds.get("discriminator"))
    if not checkpoint.has_discriminator:
        return chosen.replace(discriminator=None)
    if chosen.discriminator is None:
        inferred = infer_model_config(sds["kp_detector"], sds["generator"], sds["discriminator"])
        return chosen.replace(discriminator=inferred.discriminator)
    return chosen


def _load_weights(model: FirstOrderModel, checkpoint: Checkpoint, path: Path, explicit_config: bool) -> None:
    check_weights_fit(model, checkpoint.state_dicts, path, explicit_config)
    for name in ("kp_detector", "generator", "discriminator"):
        network = getattr(model, name)
        if network is not None:
            network.load_state_dict(checkpoint.state_dicts[name])


def check_weights_fit(model: FirstOrderModel, state_dicts: dict[str, dict], path: Path, explicit_config: bool) -> None:
    """Raise :class:`CheckpointError` naming the first keys that are missing, unexpected or
    of another shape when ``state_dicts`` do not fit ``model``'s networks."""
    for name in ("kp_detector", "generator", "discriminator"):
        network = getattr(model, name)
        if network is None:
            continue
        state = state_dicts[name]
        expected = network.state_dict()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        mismatched = [
            f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
            for k, v in expected.items()
            if k in state and tuple(state[k].shape) != tuple(v.shape)
        ]
        if missing or unexpected or mismatched:
            hint = (
                "the config given does not describe this checkpoint; omit it to use the one stored in the checkpoint "
                "or inferred from its tensors"
                if explicit_config
                else "the checkpoint's tensors do not form a FOMM model"
            )
            details = "; ".join(
                part
                for part in (
                    f"missing {missing[:3]}" if missing else "",
                    f"unexpected {unexpected[:3]}" if unexpected else "",
                    f"shape mismatch {mismatched[:3]}" if mismatched else "",
                )
                if part
            )
            raise CheckpointError(f"{path}: {name} weights do not fit: {details} ({hint})")
