"""recipes/default-model/transplant.py: a model of another generator shape, or with another
model's motion networks, started from trained weights (how phases 6, 9, 12 and 15 of the
embedded default model began)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import torch
import yaml

import fomm_model as fm
from fomm_model.checkpoint import convert_checkpoint, read_checkpoint, write_safetensors
from fomm_model.model import FirstOrderModel
from fomm_model.networks.antialias import AntiAliasInterpolation2d
from fomm_model.training.config import RunConfig

from conftest import REPO, TINY

SCRIPT = REPO / "recipes" / "default-model" / "transplant.py"
# TINY with a second residual block, so that transplants show how each block starts
SMALL = copy.deepcopy(TINY)
SMALL["model_params"]["generator_params"]["num_bottleneck_blocks"] = 2


def _config(generator_changes: dict | None = None, dense_motion_changes: dict | None = None) -> dict:
    config = copy.deepcopy(SMALL)
    config["model_params"]["generator_params"].update(generator_changes or {})
    config["model_params"]["generator_params"]["dense_motion_params"].update(dense_motion_changes or {})
    return config


def _seeded_model(path: Path, seed: int, config: dict = SMALL) -> None:
    """A model with ``config`` and trained-looking weights (nothing learned left at its initial value)."""
    torch.manual_seed(seed)
    model = FirstOrderModel(RunConfig.from_mapping(config).model.replace(frame_shape=(64, 64), discriminator=None))
    kernels = {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, AntiAliasInterpolation2d)}
    for name, value in model.state_dict().items():
        if value.dtype.is_floating_point and name not in kernels:  # the anti-aliasing kernels are not learned
            value.add_(torch.rand_like(value) * 0.1)
    write_safetensors(path, {n: getattr(model, n).state_dict() for n in ("kp_detector", "generator")}, model.config)


def _run(source: Path, config: dict, config_path: Path, out: Path, *motion: Path) -> subprocess.CompletedProcess:
    """transplant.py SOURCE CONFIG OUT [MOTION], with ``config`` written to ``config_path``."""
    config_path.write_text(yaml.safe_dump(config))
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, (source, config_path, out, *motion))],
                          capture_output=True, text=True, cwd=REPO)


def _transplant(tmp_path: Path, generator_changes: dict, common_changes: dict | None = None,
                motion: Path | None = None) -> subprocess.CompletedProcess:
    """A seeded source model transplanted into SMALL with the generator changed."""
    source_path = tmp_path / "source.safetensors"
    _seeded_model(source_path, 1)
    target = _config(generator_changes)
    target["model_params"]["common_params"].update(common_changes or {})
    return _run(source_path, target, tmp_path / "target.yaml", tmp_path / "start.safetensors", *([motion] if motion else []))


def _transplanted(tmp_path: Path, generator_changes: dict, motion: Path | None = None) -> tuple[dict, dict, Path, str]:
    done = _transplant(tmp_path, generator_changes, motion=motion)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "start.safetensors"
    assert f"wrote {out}" in done.stdout and "keypoint detector: copied whole" in done.stdout
    return read_checkpoint(tmp_path / "source.safetensors").state_dicts, read_checkpoint(out).state_dicts, out, done.stdout


def test_one_down_block_fewer_keeps_the_motion_networks_and_the_full_resolution_ends(tmp_path):
    old, new, out, report = _transplanted(tmp_path, {"num_down_blocks": 1})
    for key, value in old["kp_detector"].items():
        assert torch.equal(new["kp_detector"][key], value), key
    motion = [k for k in old["generator"] if k.startswith("dense_motion_network.")]
    assert motion and all(torch.equal(new["generator"][k], old["generator"][k]) for k in motion)
    for key in ("first.conv.weight", "down_blocks.0.conv.weight", "final.weight"):
        assert torch.equal(new["generator"][key], old["generator"][key]), key
    # the last up block makes full-resolution features in both: matched from the end
    assert torch.equal(new["generator"]["up_blocks.0.conv.weight"], old["generator"]["up_blocks.1.conv.weight"])
    assert "up_blocks.1.conv.weight" not in new["generator"]
    # residual blocks of another width start fresh, as the identity: their last convolution is zero
    for block in ("r0", "r1"):
        assert new["generator"][f"bottleneck.{block}.conv1.weight"].abs().sum() > 0
        assert not new["generator"][f"bottleneck.{block}.conv2.weight"].any()
        assert not new["generator"][f"bottleneck.{block}.conv2.bias"].any()
    model = fm.load_model(out)
    assert model.config.generator.num_down_blocks == 1 and model.config.frame_shape == (64, 64)
    assert "zeroed (identity): bottleneck.r0" in report and "down_blocks.1" in report.split("unused from")[1]


def test_a_wider_generator_starts_fresh_where_shapes_differ(tmp_path):
    old, new, _, _ = _transplanted(tmp_path, {"num_down_blocks": 1, "block_expansion": 8})
    assert new["generator"]["first.conv.weight"].shape[0] == 8
    assert not torch.equal(new["generator"]["first.conv.weight"][:4], old["generator"]["first.conv.weight"])
    motion = [k for k in old["generator"] if k.startswith("dense_motion_network.")]
    assert all(torch.equal(new["generator"][k], old["generator"][k]) for k in motion)


def test_a_dense_motion_network_at_another_scale_keeps_its_weights_with_a_kernel_for_that_scale(tmp_path):
    dense_motion = SMALL["model_params"]["generator_params"]["dense_motion_params"] | {"scale_factor": 0.5}
    old, new, out, report = _transplanted(tmp_path, {"dense_motion_params": dense_motion})
    kernel = "dense_motion_network.down.weight"  # the anti-aliasing filter: fixed, sized for its scale
    assert all(torch.equal(new["generator"][k], v) for k, v in old["generator"].items() if k != kernel)
    model = fm.load_model(out)
    assert model.config.generator.dense_motion.scale_factor == 0.5
    fresh = FirstOrderModel(model.config)
    assert new["generator"][kernel].shape != old["generator"][kernel].shape
    assert torch.equal(new["generator"][kernel], fresh.generator.state_dict()[kernel])
    assert "fresh" not in report and "unused from" not in report  # a fixed kernel is neither


def test_an_antialiasing_kernel_is_kept_only_where_it_is_the_configs_own(tmp_path):
    """An fp16 file (as phases 6, 9 and 15 started from) keeps its rounded kernel where the scale
    is the same; another scale with a kernel of the same size (0.5 and 0.45: 5x5) gets its own."""
    kernel = "dense_motion_network.down.weight"
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    _seeded_model(full, 1, _config(dense_motion_changes={"scale_factor": 0.5}))
    convert_checkpoint(full, half, half=True)  # as `fomm convert --half` makes the recipe's starts
    for scale in (0.5, 0.45):
        out = tmp_path / f"{scale}.safetensors"
        done = _run(half, _config(dense_motion_changes={"scale_factor": scale}), tmp_path / f"{scale}.yaml", out)
        assert done.returncode == 0, done.stderr
        new = read_checkpoint(out).state_dicts["generator"][kernel]
        fresh = FirstOrderModel(fm.load_model(out).config).generator.state_dict()[kernel]
        assert new.shape == fresh.shape == (3, 1, 5, 5)
        if scale == 0.5:
            assert torch.equal(new, read_checkpoint(half).state_dicts["generator"][kernel].float()) and not torch.equal(new, fresh)
        else:
            assert torch.equal(new, fresh)


def test_a_generator_that_blends_the_warped_source_starts_as_an_even_blend_of_the_old_frame(tmp_path):
    """How phase 31 began: every trained weight kept, the new weight head at zero (a weight of
    one half everywhere), so the decoded frame is the source model's frame."""
    old, new, out, report = _transplanted(tmp_path, {"blend_warped_source": True})
    assert all(torch.equal(new["generator"][k], v) for k, v in old["generator"].items())
    assert not new["generator"]["blend.weight"].any() and not new["generator"]["blend.bias"].any()
    assert "zeroed (even blend): blend (" in report and "fresh" not in report
    blended, plain = fm.load_model(out), fm.load_model(tmp_path / "source.safetensors")
    assert blended.config.generator.blend_warped_source
    source, driving = torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64)
    kp_source = plain.detect_keypoints(source)
    kp_driving = plain.detect_keypoints(driving)
    out_blended = blended.generate(source, kp_source, kp_driving)
    out_plain = plain.generate(source, kp_source, kp_driving)
    assert torch.allclose(out_blended["decoded"], out_plain["prediction"], atol=1e-6)
    assert torch.allclose(out_blended["source_weight"], torch.full_like(out_blended["source_weight"], 0.5))


def test_a_keypoint_detector_that_does_not_fit_is_refused(tmp_path):
    done = _transplant(tmp_path, {"num_down_blocks": 1}, {"num_kp": 6})
    assert done.returncode != 0 and "its keypoint detector does not fit" in done.stderr
    assert not (tmp_path / "start.safetensors").exists()


def test_a_motion_model_gives_the_keypoints_and_the_dense_motion_the_rest_stays(tmp_path):
    motion_path = tmp_path / "motion.safetensors"  # another generator shape, as phase 12's was
    _seeded_model(motion_path, 2, _config({"num_down_blocks": 1}))
    old, new, out, report = _transplanted(tmp_path, {}, motion=motion_path)
    motion = read_checkpoint(motion_path).state_dicts
    for key, value in motion["kp_detector"].items():
        assert torch.equal(new["kp_detector"][key], value), key
    flow = [k for k in old["generator"] if k.startswith("dense_motion_network.")]
    assert flow and all(torch.equal(new["generator"][k], motion["generator"][k]) for k in flow)
    rest = [k for k in old["generator"] if not k.startswith("dense_motion_network.")]
    assert rest and all(torch.equal(new["generator"][k], old["generator"][k]) for k in rest)
    assert not any(torch.equal(old["generator"][k], motion["generator"][k]) for k in flow if k.endswith(".conv.weight"))  # they differ
    assert f"from {motion_path}, with its dense motion network" in report and "unused from" not in report
    assert read_checkpoint(out).extra["motion_from"] == str(motion_path)


def test_a_motion_model_whose_dense_motion_does_not_fit_is_refused(tmp_path):
    motion_path = tmp_path / "motion.safetensors"
    _seeded_model(motion_path, 2, _config(dense_motion_changes={"block_expansion": 8}))
    done = _transplant(tmp_path, {}, motion=motion_path)
    assert done.returncode != 0 and f"{motion_path}: its dense motion network does not fit" in done.stderr
    assert not (tmp_path / "start.safetensors").exists()
