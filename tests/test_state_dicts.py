"""Every published config builds networks whose state dicts match the original's exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fomm_model as fm

from conftest import key_manifests


@pytest.fixture(scope="module", params=key_manifests(), ids=lambda p: p.stem)
def manifest(request) -> dict:
    return json.loads(Path(request.param).read_text())


@pytest.fixture(scope="module")
def built(manifest: dict) -> fm.FirstOrderModel:
    return fm.build_model(manifest["config"])


def test_preset_model_params_equal_original(manifest: dict) -> None:
    config = fm.resolve_config(manifest["config"])
    assert fm.ModelConfig.from_model_params(manifest["model_params"]) == config.replace(frame_shape=(256, 256))


@pytest.mark.parametrize("network", ["generator", "kp_detector", "discriminator"])
def test_keys_shapes_and_order(manifest: dict, built: fm.FirstOrderModel, network: str) -> None:
    state = getattr(built, network).state_dict()
    got = [(key, list(value.shape)) for key, value in state.items()]
    assert got == list(manifest["state_dict"][network].items())


@pytest.mark.parametrize("network", ["generator", "kp_detector", "discriminator"])
def test_parameter_counts(manifest: dict, built: fm.FirstOrderModel, network: str) -> None:
    module = getattr(built, network)
    counts = manifest["param_counts"][network]
    assert sum(p.numel() for p in module.parameters()) == counts["parameters"]
    assert sum(b.numel() for b in module.buffers()) == counts["buffers"]
    assert len(module.state_dict()) == counts["state_dict_entries"]


def test_config_inferred_from_random_weights(manifest: dict, built: fm.FirstOrderModel) -> None:
    inferred = fm.infer_model_config(
        built.kp_detector.state_dict(), built.generator.state_dict(), built.discriminator.state_dict()
    )
    assert inferred == built.config
