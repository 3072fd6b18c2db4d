"""Shared test helpers: where the reference fixtures live, and small deterministic models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# The smallest training config in the original schema that trains every part (GAN included):
# 64x64 frames, 4 keypoints, networks a few channels wide.
TINY = {
    "dataset_params": {
        "root_dir": "unused",
        "frame_shape": [64, 64, 3],
        "augmentation_params": {"flip_param": {"horizontal_flip": True, "time_flip": True}, "jitter_param": {"hue": 0.05}},
    },
    "model_params": {
        "common_params": {"num_kp": 4, "num_channels": 3, "estimate_jacobian": True},
        "kp_detector_params": {"temperature": 0.1, "block_expansion": 4, "max_features": 16, "scale_factor": 0.25, "num_blocks": 3},
        "generator_params": {
            "block_expansion": 4, "max_features": 16, "num_down_blocks": 2, "num_bottleneck_blocks": 1,
            "estimate_occlusion_map": True,
            "dense_motion_params": {"block_expansion": 4, "max_features": 16, "num_blocks": 3, "scale_factor": 0.25},
        },
        "discriminator_params": {"scales": [1], "block_expansion": 4, "max_features": 16, "num_blocks": 2, "sn": True, "use_kp": True},
    },
    "train_params": {
        "num_epochs": 3, "num_repeats": 1, "epoch_milestones": [2], "lr_generator": 2e-4, "lr_discriminator": 2e-4,
        "lr_kp_detector": 2e-4, "batch_size": 2, "scales": [1, 0.5], "checkpoint_freq": 1,
        "transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
        "loss_weights": {"generator_gan": 1, "discriminator_gan": 1, "feature_matching": [10, 10],
                         "perceptual": [10, 10, 10, 10, 10], "equivariance_value": 10, "equivariance_jacobian": 10},
    },
}


def shared_fixtures() -> Path:
    """The read-only reference fixtures (``../shared/fixtures`` next to the checkout).

    Set ``FOMM_SHARED_FIXTURES`` to use another location. Missing fixtures are an error,
    not a skip: the parity tests are the proof that the library is exact.
    """
    path = Path(os.environ.get("FOMM_SHARED_FIXTURES", REPO.parent / "shared" / "fixtures"))
    if not path.is_dir():
        raise FileNotFoundError(
            f"reference fixtures not found at {path}; set FOMM_SHARED_FIXTURES to the folder "
            "holding fomm_keys/ and fomm_parity/"
        )
    return path


def parity_cases() -> list[Path]:
    return sorted(p for p in (shared_fixtures() / "fomm_parity").iterdir() if (p / "meta.json").is_file())


def key_manifests() -> list[Path]:
    return sorted((shared_fixtures() / "fomm_keys").glob("*.json"))


# One intra-op thread: the suite runs beside servers and subprocesses (ComfyUI, Blender,
# torchrun), and OpenMP threads spin-waiting against them cost far more than they gain.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
