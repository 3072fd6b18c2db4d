"""The public model API: shapes, broadcasting, variants and errors."""

from __future__ import annotations

import copy

import pytest
import torch

import fomm_model as fm
from fomm_model.footage import render_full_resolution
from fomm_model.geometry import make_coordinate_grid, warp, warp_sharp
from fomm_model.pipeline import animate_frames

SMALL = fm.ModelConfig(
    kp_detector=fm.KeypointDetectorConfig(block_expansion=8, max_features=32, num_blocks=3, scale_factor=0.5),
    generator=fm.GeneratorConfig(
        block_expansion=8,
        max_features=32,
        num_bottleneck_blocks=2,
        dense_motion=fm.DenseMotionConfig(block_expansion=8, max_features=32, num_blocks=3, scale_factor=0.5),
    ),
    discriminator=None,
    frame_shape=(64, 96),
)


@pytest.fixture(scope="module")
def model() -> fm.FirstOrderModel:
    return fm.build_model(SMALL)


def test_non_square_shapes(model: fm.FirstOrderModel) -> None:
    source, driving = torch.rand(1, 3, 64, 96), torch.rand(5, 3, 64, 96)
    kp = model.detect_keypoints(driving)
    assert kp.value.shape == (5, 10, 2) and kp.jacobian.shape == (5, 10, 2, 2)
    out = model.generate(source, model.detect_keypoints(source), kp)
    assert out["prediction"].shape == (5, 3, 64, 96)
    assert out["deformed"].shape == (5, 3, 64, 96)
    assert out["deformation"].shape == (5, 32, 48, 2)
    assert out["mask"].shape == (5, 11, 32, 48)
    assert out["occlusion_map"].shape == (5, 1, 32, 48)
    assert out["sparse_deformed"].shape == (5, 11, 3, 32, 48)
    assert torch.allclose(out["mask"].sum(1), torch.ones(5, 32, 48), atol=1e-5)


def test_batched_generate_equals_per_frame(model: fm.FirstOrderModel) -> None:
    source, driving = torch.rand(1, 3, 64, 96), torch.rand(4, 3, 64, 96)
    kp_source = model.detect_keypoints(source)
    kp_driving = model.detect_keypoints(driving)
    batched = model.generate(source, kp_source, kp_driving)["prediction"]
    single = torch.cat([model.generate(source, kp_source, kp_driving[t])["prediction"] for t in range(4)])
    assert (batched - single).abs().max() < 1e-5


def test_animate_matches_manual_pipeline(model: fm.FirstOrderModel) -> None:
    source, driving = torch.rand(1, 3, 64, 96), torch.rand(3, 3, 64, 96)
    frames = model.animate(source, driving, adapt_scale=False)
    kp_source, kp_driving = model.detect_keypoints(source), model.detect_keypoints(driving)
    motion = fm.normalize_keypoints(kp_source, kp_driving, kp_driving[0], adapt_scale=False)
    expected = model.generate(source, kp_source, motion)["prediction"]
    assert frames.shape == (3, 3, 64, 96)
    assert (frames - expected).abs().max() < 1e-5


def test_identity_motion_on_first_frame(model: fm.FirstOrderModel) -> None:
    """Relative mode: at the reference frame the motion is the source's own keypoints."""
    source, driving = torch.rand(1, 3, 64, 96), torch.rand(2, 3, 64, 96)
    kp_source, kp_driving = model.detect_keypoints(source), model.detect_keypoints(driving)
    motion = fm.normalize_keypoints(kp_source, kp_driving, kp_driving[0])
    assert torch.allclose(motion.value[0], kp_source.value[0], atol=1e-6)
    assert torch.allclose(motion.jacobian[0], kp_source.jacobian[0], atol=1e-5)


def test_zero_order_model_ignores_relative_jacobian() -> None:
    model = fm.build_model(SMALL.replace(estimate_jacobian=False))
    source, driving = torch.rand(1, 3, 64, 96), torch.rand(2, 3, 64, 96)
    assert model.detect_keypoints(source).jacobian is None
    frames = model.animate(source, driving, relative=True, relative_jacobian=True)
    assert frames.shape == (2, 3, 64, 96)


def test_no_occlusion_variant() -> None:
    generator = fm.GeneratorConfig(**{**SMALL.generator.__dict__, "estimate_occlusion_map": False})
    model = fm.build_model(SMALL.replace(generator=generator))
    source = torch.rand(1, 3, 64, 96)
    out = model.generate(source, model.detect_keypoints(source), model.detect_keypoints(source))
    assert "occlusion_map" not in out


def test_size_errors_name_working_sizes(model: fm.FirstOrderModel) -> None:
    with pytest.raises(ValueError, match=r"multiples of 16 \(e\.g\. 16, 32"):
        model.detect_keypoints(torch.rand(1, 3, 60, 96))


def test_input_errors(model: fm.FirstOrderModel) -> None:
    with pytest.raises(ValueError, match="empty"):
        model.detect_keypoints(torch.rand(0, 3, 64, 96))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model.detect_keypoints(torch.rand(64, 96, 3))
    with pytest.raises(ValueError, match="uint8"):
        model.detect_keypoints(torch.zeros(1, 3, 64, 96, dtype=torch.uint8))
    with pytest.raises(ValueError, match="one source"):
        model.animate(torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96))
    with pytest.raises(ValueError, match=r"from 0\.\d+ to 2\d\d; .*divide 0-255 values by 255"):
        model.detect_keypoints(torch.rand(1, 3, 64, 96) * 255)
    with pytest.raises(ValueError, match="NaN"):
        model.detect_keypoints(torch.full((1, 3, 64, 96), float("nan")))
    with pytest.raises(TypeError, match=r"got ndarray; .*to_tensor"):
        model.detect_keypoints(torch.rand(1, 3, 64, 96).numpy())


def test_streaming_refuses_8_bit_frames_before_converting_them(model: fm.FirstOrderModel) -> None:
    """animate_frames converts driving frames to the model's dtype: an 8-bit frame must be
    refused first, not turned into 0-255 floats."""
    source, driving = torch.rand(1, 3, 64, 96), torch.rand(2, 3, 64, 96)
    with pytest.raises(ValueError, match="driving must be floating point.*uint8"):
        list(animate_frames(model, source, (driving * 255).byte()))
    with pytest.raises(ValueError, match="driving has values from"):
        list(animate_frames(model, source, [frame * 255 for frame in driving]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_low_precision_model_animates(model: fm.FirstOrderModel, dtype: torch.dtype) -> None:
    """Half models invert their jacobians in float32 (torch has no half linear algebra)."""
    source, driving = torch.rand(1, 3, 64, 96), torch.rand(3, 3, 64, 96)
    low = copy.deepcopy(model).to(dtype)
    frames = low.animate(source, driving)
    assert frames.dtype == dtype
    tolerance = 0.01 if dtype == torch.float16 else 0.05
    assert (frames.float() - model.animate(source, driving)).abs().max() < tolerance


def test_keypoints_from_other_model_are_rejected(model: fm.FirstOrderModel) -> None:
    other = fm.build_model(SMALL.replace(num_kp=5))
    source = torch.rand(1, 3, 64, 96)
    with pytest.raises(ValueError, match="different model"):
        model.generate(source, other.detect_keypoints(source), other.detect_keypoints(source))


def test_align_corners_switch(model: fm.FirstOrderModel) -> None:
    source, driving = torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96)
    model.align_corners = False
    a = model.animate(source, driving)
    model.align_corners = True
    b = model.animate(source, driving)
    assert model.generator.dense_motion_network.align_corners is True
    assert (a - b).abs().max() > 1e-4


def test_default_model_error_is_clear(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr("fomm_model.loading.default_model_path", lambda: tmp_path / "absent.safetensors")
    with pytest.raises(fm.CheckpointError, match="embedded default model"):
        fm.load_model("default")


def test_dense_motion_then_render_equals_generate(model: fm.FirstOrderModel) -> None:
    source, driving = torch.rand(1, 3, 64, 96), torch.rand(3, 3, 64, 96)
    kp_source, kp_driving = model.detect_keypoints(source), model.detect_keypoints(driving)
    motion = model.dense_motion(source, kp_source, kp_driving)
    frames = model.render(source, motion["deformation"], motion["occlusion_map"])
    expected = model.generate(source, kp_source, kp_driving)
    assert torch.equal(motion["deformation"], expected["deformation"])
    assert (frames - expected["prediction"]).abs().max() < 1e-6
    encoded = model.encode_source(source)  # encoded once, rendered in two chunks
    chunks = [model.render(encoded, motion["deformation"][part], motion["occlusion_map"][part]) for part in (slice(0, 2), slice(2, 3))]
    assert (torch.cat(chunks) - frames).abs().max() < 1e-6
    with pytest.raises(ValueError, match="occlusion"):
        model.render(source, motion["deformation"])


def test_a_generator_that_blends_the_warped_source() -> None:
    """blend_warped_source: the frame is the decoded frame and the source warped by the flow
    (on the model's grid), mixed by the generator's own weight, on every path that renders."""
    generator = fm.GeneratorConfig(**{**SMALL.generator.__dict__, "blend_warped_source": True})
    model = fm.build_model(SMALL.replace(generator=generator))
    with torch.no_grad():
        model.generator.blend.bias.fill_(0.7)  # not an even blend, so that the weight's side is tested
        model.generator.blend.weight.normal_(0, 0.01)
    source, driving = torch.rand(1, 3, 64, 96), torch.rand(3, 3, 64, 96)
    kp_source, kp_driving = model.detect_keypoints(source), model.detect_keypoints(driving)
    out = model.generate(source, kp_source, kp_driving)
    weight = out["source_weight"]
    assert weight.shape == (3, 1, 64, 96) and 0 < weight.min() and weight.max() < 1
    assert (weight - torch.sigmoid(torch.tensor(0.7))).abs().mean() < 0.05
    warped = warp_sharp(source.expand(3, -1, -1, -1), out["deformation"], model.align_corners)
    expected = weight * warped + (1 - weight) * out["decoded"]
    assert (out["prediction"] - expected).abs().max() < 1e-6
    motion = model.dense_motion(source, kp_source, kp_driving)
    rendered = model.render_outputs(model.encode_source(source), motion["deformation"], motion["occlusion_map"])
    assert (rendered["prediction"] - out["prediction"]).abs().max() < 1e-6
    assert (model.render(source, motion["deformation"], motion["occlusion_map"]) - out["prediction"]).abs().max() < 1e-6
    assert (model.animate(source, driving, relative=False) - out["prediction"]).abs().max() < 1e-5
    # full resolution at the model's own size is the model's frame: the same formula, the same warp
    full = render_full_resolution(source.expand(3, -1, -1, -1), out["decoded"], out["deformation"], weight, True)
    assert (full - out["prediction"]).abs().max() < 1e-6
    # a still flow at the dense motion network's size warps the source pixel for pixel (the
    # original's resize of the flow, as for ``deformed``, smears the border)
    still = make_coordinate_grid(32, 48)[None]
    assert (warp_sharp(source, still, True) - source).abs().max() < 1e-4
    assert (warp(source, still, True) - source).abs().max() > 0.01
    with pytest.raises(ValueError, match="warped_source"):
        model.generator.decode(model.generator.encode(source))


def test_every_public_name_loads() -> None:
    """The package loads its names on first use; each one named in __all__ must resolve, and
    an unknown one must still be an AttributeError (hasattr, getattr with a default)."""
    for name in fm.__all__:
        assert getattr(fm, name) is not None, name
    assert set(fm.__all__) <= set(dir(fm))
    assert sorted(fm.__all__) == sorted(fm._EXPORTS), "__all__ and the lazily loaded names disagree"
    assert not hasattr(fm, "no_such_name")
