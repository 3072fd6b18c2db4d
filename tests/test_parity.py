"""Numerical parity with the original implementation, on every case in fomm_parity/.

Each case folder holds an original-format checkpoint, inputs and the original code's
outputs. Tests dispatch on the stored keys, so cases without jacobians, occlusion or a
discriminator are checked the same way.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import fomm_model as fm
from fomm_model.networks import ImagePyramid
from fomm_model.training.config import RunConfig
from fomm_model.training.objective import DiscriminatorObjective, GeneratorObjective
from fomm_model.training.transform import RandomTPS

from conftest import parity_cases

KP_TOL = 1e-5
FIELD_TOL = 1e-5  # deformation, masks, occlusion
IMAGE_TOL = 1e-4
LOSS_RTOL = 1e-4

SETTINGS = {
    "rel_jac_adapt": dict(relative=True, relative_jacobian=True, adapt_scale=True),
    "rel_jac": dict(relative=True, relative_jacobian=True, adapt_scale=False),
    "abs": dict(relative=False, relative_jacobian=False, adapt_scale=False),
}


class Case:
    def __init__(self, folder: Path):
        self.folder = folder
        self.meta = json.loads((folder / "meta.json").read_text())
        self.ref = load_file(str(folder / "outputs.safetensors"))
        inputs = np.load(folder / "inputs.npz")
        self.source = torch.from_numpy(inputs["source"])
        self.driving = torch.from_numpy(inputs["driving"])
        self.checkpoint = folder / "checkpoint.pth.tar"
        self.config = folder / "config.yaml"

    def model(self, align_corners: bool = True) -> fm.FirstOrderModel:
        return fm.load_model(self.checkpoint, align_corners=align_corners)

    def keypoints(self, model: fm.FirstOrderModel) -> tuple[fm.Keypoints, fm.Keypoints]:
        # The original ran the detector with batch 1 per driving frame.
        kp_source = model.detect_keypoints(self.source)
        kp_driving = fm.Keypoints.cat(model.detect_keypoints(frame[None]) for frame in self.driving)
        return kp_source, kp_driving


@pytest.fixture(scope="module", params=parity_cases(), ids=lambda p: p.name)
def case(request) -> Case:
    return Case(request.param)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float, name: str) -> None:
    assert tuple(actual.shape) == tuple(expected.shape), f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    error = (actual.double() - expected.double()).abs().max().item()
    assert error <= tol, f"{name}: max abs error {error:.3g} > {tol:g}"


def test_keypoints(case: Case) -> None:
    kp_source, kp_driving = case.keypoints(case.model())
    assert_close(kp_source.value, case.ref["kp_source.value"], KP_TOL, "kp_source.value")
    assert_close(kp_driving.value, case.ref["kp_driving.value"], KP_TOL, "kp_driving.value")
    if "kp_source.jacobian" in case.ref:
        assert_close(kp_source.jacobian, case.ref["kp_source.jacobian"], KP_TOL, "kp_source.jacobian")
        assert_close(kp_driving.jacobian, case.ref["kp_driving.jacobian"], KP_TOL, "kp_driving.jacobian")
    else:
        assert kp_source.jacobian is None and kp_driving.jacobian is None


def test_batched_keypoints_match_per_frame(case: Case) -> None:
    model = case.model()
    assert_close(model.detect_keypoints(case.driving).value, case.ref["kp_driving.value"], KP_TOL, "batched kp")


def test_movement_scale(case: Case) -> None:
    kp_source, kp_driving = case.keypoints(case.model())
    scale = fm.movement_scale(kp_source, kp_driving[0])
    assert abs(scale - case.ref["adapt_movement_scale"].item()) <= 1e-5 * abs(scale)


@pytest.mark.parametrize("setting", SETTINGS)
def test_normalisation(case: Case, setting: str) -> None:
    kp_source, kp_driving = case.keypoints(case.model())
    motion = fm.normalize_keypoints(kp_source, kp_driving, kp_driving[0], **SETTINGS[setting])
    assert_close(motion.value, case.ref[f"kp_norm.{setting}.value"], KP_TOL, f"{setting}.value")
    if f"kp_norm.{setting}.jacobian" in case.ref:
        assert_close(motion.jacobian, case.ref[f"kp_norm.{setting}.jacobian"], KP_TOL, f"{setting}.jacobian")


def tolerance(key: str) -> float:
    return FIELD_TOL if key in ("deformation", "mask", "occlusion_map") else IMAGE_TOL


@pytest.mark.parametrize("align_corners", [True, False], ids=["ac_true", "ac_false"])
def test_generator_outputs(case: Case, align_corners: bool) -> None:
    model = case.model(align_corners)
    kp_source, kp_driving = case.keypoints(model)
    motion = fm.normalize_keypoints(kp_source, kp_driving, kp_driving[0], **SETTINGS["rel_jac_adapt"])
    out = model.generate(case.source, kp_source, motion)
    prefix = f"gen.ac_{str(align_corners).lower()}."
    stored = [k for k in case.ref if k.startswith(prefix) and k.count(".") == 2]
    assert "prediction" in [k.split(".")[-1] for k in stored]
    for key in stored:
        name = key.split(".")[-1]
        assert_close(out[name], case.ref[key], tolerance(name), key)
    assert ("occlusion_map" in out) == model.config.generator.estimate_occlusion_map


def test_absolute_prediction(case: Case) -> None:
    model = case.model()
    kp_source, kp_driving = case.keypoints(model)
    out = model.generate(case.source, kp_source, kp_driving)
    assert_close(out["prediction"], case.ref["gen.ac_true.abs.prediction"], IMAGE_TOL, "abs.prediction")


def test_pyramid(case: Case) -> None:
    keys = [k for k in case.ref if k.startswith("pyramid.")]
    scales = tuple(float(k.removeprefix("pyramid.prediction_")) for k in keys)
    out = ImagePyramid(scales, case.source.shape[1])(case.source)
    for key in keys:
        assert_close(out[key.removeprefix("pyramid.")], case.ref[key], IMAGE_TOL, key)


def test_discriminator(case: Case) -> None:
    model = case.model()
    assert model.discriminator is not None
    pyramid = ImagePyramid(model.discriminator.scales, case.source.shape[1])(case.source)
    with torch.no_grad():
        out = model.discriminator(pyramid, model.detect_keypoints(case.source))
    keys = [k for k in case.ref if k.startswith("disc.")]
    assert keys
    for key in keys:
        name = key.removeprefix("disc.")
        if name.startswith("feature_maps_"):
            scale, index = name.removeprefix("feature_maps_").rsplit(".", 1)
            actual = out[f"feature_maps_{scale}"][int(index)]
        else:
            actual = out[name]
        assert_close(actual, case.ref[key], IMAGE_TOL, key)


def test_tps_transform(case: Case) -> None:
    params = RunConfig.from_yaml(case.config).train.transform_params
    batch = case.ref["train.transform.theta"].shape[0]
    torch.manual_seed(case.meta["train_transform_seed"])
    transform = RandomTPS(batch, params)
    assert_close(transform.theta, case.ref["train.transform.theta"], 0, "theta")
    assert_close(transform.control_params, case.ref["train.transform.control_params"], 0, "control_params")
    assert_close(transform.control_points, case.ref["train.transform.control_points"], 0, "control_points")
    probe = case.ref["train.transform.probe_coordinates"]
    assert_close(transform.warp_coordinates(probe), case.ref["train.transform.probe_warped"], KP_TOL, "warp")
    assert_close(transform.jacobian(probe), case.ref["train.transform.probe_jacobian"], KP_TOL, "jacobian")


def test_training_losses(case: Case) -> None:
    """One train-mode forward of both objectives, with the fixture's loss-weight overrides."""
    run = RunConfig.from_yaml(case.config)
    weights = dataclasses.replace(run.train.loss_weights, perceptual=(0.0,) * 5, generator_gan=1.0)
    params = dataclasses.replace(run.train, loss_weights=weights)
    model = case.model()
    kp_detector, generator, discriminator = (
        copy.deepcopy(model.kp_detector).train(),
        copy.deepcopy(model.generator).train(),
        copy.deepcopy(model.discriminator).train(),
    )
    source = torch.cat([case.source, case.source])
    driving = case.driving[[1, 3]]
    generator_objective = GeneratorObjective(kp_detector, generator, discriminator, params)
    torch.manual_seed(case.meta["train_transform_seed"])
    losses, generated = generator_objective(source, driving)
    losses.update(
        DiscriminatorObjective(discriminator, params, source.shape[1])(
            driving, generated["prediction"], generated["kp_driving"]
        )
    )
    for key in [k for k in case.ref if k.startswith("train.loss.")]:
        expected = case.ref[key].item()
        actual = losses[key.removeprefix("train.loss.")].item()
        assert abs(actual - expected) <= LOSS_RTOL * abs(expected), f"{key}: {actual} vs {expected}"
    assert_close(generated["transformed_frame"], case.ref["train.transformed_frame"], IMAGE_TOL, "transformed_frame")
    for name in ("transformed_kp", "kp_driving"):
        assert_close(generated[name].value, case.ref[f"train.{name}.value"], 1e-4, f"train.{name}.value")
        if f"train.{name}.jacobian" in case.ref:
            assert_close(generated[name].jacobian, case.ref[f"train.{name}.jacobian"], 1e-4, f"train.{name}.jacobian")


def test_config_inference_matches_case_config(case: Case) -> None:
    """The architecture inferred from the tensors is the one in the case's config file."""
    inferred = fm.read_checkpoint(case.checkpoint)
    sds = inferred.state_dicts
    config = fm.infer_model_config(sds["kp_detector"], sds["generator"], sds.get("discriminator"))
    expected = RunConfig.from_yaml(case.config).model
    assert config == expected.replace(frame_shape=config.frame_shape)


def test_loading_with_explicit_config_gives_same_numbers(case: Case) -> None:
    inferred = case.model()
    explicit = fm.load_model(case.checkpoint, config=case.config)
    assert explicit.config.frame_shape == tuple(case.meta["input_hw"])
    kp_a = inferred.detect_keypoints(case.source)
    kp_b = explicit.detect_keypoints(case.source)
    assert torch.equal(kp_a.value, kp_b.value)
