"""First Order Motion Model for Image Animation, in plain PyTorch.

Public API::

    model = fomm_model.load_model("vox-cpk.pth.tar")        # or "default", or *.safetensors
    kp_source = model.detect_keypoints(source)              # (1, 3, H, W) in [0, 1]
    kp_driving = model.detect_keypoints(driving)            # (T, 3, H, W)
    motion = fomm_model.normalize_keypoints(kp_source, kp_driving, kp_driving[0])
    out = model.generate(source, kp_source, motion)         # out["prediction"]: (T, 3, H, W)
    frames = model.animate(source, driving)                 # all of the above in one call
"""

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

__version__ = "0.1.0"

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
