"""First Order Motion Model for Image Animation, in plain PyTorch.

Public API::

    model = fomm_model.load_model("vox-cpk.pth.tar")        # or "default", or *.safetensors
    kp_source = model.detect_keypoints(source)              # (1, 3, H, W) in [0, 1]
    kp_driving = model.detect_keypoints(driving)            # (T, 3, H, W)
    motion = fomm_model.normalize_keypoints(kp_source, kp_driving, kp_driving[0])
    out = model.generate(source, kp_source, motion)         # out["prediction"]: (T, 3, H, W)
    frames = model.animate(source, driving)                 # all of the above in one call
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public names and the module that defines each. They load on first use (PEP 562), so that
# `import fomm_model` and the `fomm` command start without importing torch: a Ctrl-C in the
# seconds torch takes to import then reaches the command's own handler, not a traceback.
_EXPORTS = {
    "CheckpointError": "checkpoint",
    "convert_checkpoint": "checkpoint",
    "read_checkpoint": "checkpoint",
    "PRESET_NAMES": "config",
    "ConfigError": "config",
    "DenseMotionConfig": "config",
    "DiscriminatorConfig": "config",
    "GeneratorConfig": "config",
    "KeypointDetectorConfig": "config",
    "ModelConfig": "config",
    "resolve_config": "config",
    "infer_model_config": "config_inference",
    "Keypoints": "keypoints",
    "movement_scale": "keypoints",
    "normalize_keypoints": "keypoints",
    "default_model_path": "loading",
    "load_model": "loading",
    "FirstOrderModel": "model",
    "build_model": "model",
}

__all__ = [
    "PRESET_NAMES",
    "CheckpointError",
    "ConfigError",
    "DenseMotionConfig",
    "DiscriminatorConfig",
    "FirstOrderModel",
    "GeneratorConfig",
    "KeypointDetectorConfig",
    "Keypoints",
    "ModelConfig",
    "build_model",
    "convert_checkpoint",
    "default_model_path",
    "infer_model_config",
    "load_model",
    "movement_scale",
    "normalize_keypoints",
    "read_checkpoint",
    "resolve_config",
]

if TYPE_CHECKING:
    from .checkpoint import CheckpointError, convert_checkpoint, read_checkpoint
    from .config import (
        PRESET_NAMES,
        ConfigError,
        DenseMotionConfig,
        DiscriminatorConfig,
        GeneratorConfig,
        KeypointDetectorConfig,
        ModelConfig,
        resolve_config,
    )
    from .config_inference import infer_model_config
    from .keypoints import Keypoints, movement_scale, normalize_keypoints
    from .loading import default_model_path, load_model
    from .model import FirstOrderModel, build_model


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
