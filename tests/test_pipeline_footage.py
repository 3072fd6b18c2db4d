"""Real-footage animation: regions, paste-back at the source's size, full-resolution output."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from animation_helpers import animation_model, frame_size, smooth_frames

import fomm_model as fm
from fomm_model.footage import FootageOptions, animate_footage, relative_visibility, render_full_resolution, rest_weight
from fomm_model.framing import Box, fit
from fomm_model.geometry import make_coordinate_grid
from fomm_model.pipeline import MotionOptions, animate_frames
from fomm_model.training.synthetic import render_video


@pytest.fixture(scope="module")
def model() -> fm.FirstOrderModel:
    return animation_model()


def detail(images: torch.Tensor) -> float:
    """Mean absolute Laplacian: how much fine detail an image holds."""
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return F.conv2d(images.reshape(-1, 3, *images.shape[-2:]), kernel, groups=3).abs().mean().item()


def test_whole_picture_output_keeps_the_source_size(model) -> None:
    source = smooth_frames(1, (90, 150), seed=1)[0]
    driving = smooth_frames(5, (70, 70), seed=2)
    frames = torch.stack(list(animate_footage(model, source, driving, batch_size=2)))
    assert frames.shape == (5, 3, 90, 150)
    model_source, framing = fit(source[None], frame_size(model), "pad")
    model_driving = fit(driving, frame_size(model), "pad")[0]
    expected = framing.restore(torch.stack(list(animate_frames(model, model_source, model_driving))))
    assert (frames - expected.clamp(0, 1)).abs().max() < 1e-5


def test_source_region_is_pasted_back_into_the_full_picture(model) -> None:
    # An untrained model of the embedded one's shape: its frames differ from the source
    # everywhere, so the feather can be read at every edge (the embedded model gives still
    # edges back as the source).
    torch.manual_seed(0)
    model = fm.build_model(model.config)
    source = smooth_frames(1, (120, 200), seed=3)[0]
    driving = smooth_frames(3, frame_size(model), seed=4)
    box = Box(60, 20, 80, 80)
    frames = torch.stack(list(animate_footage(model, source, driving, options=FootageOptions(source_box=box))))
    outside = torch.ones(120, 200, dtype=torch.bool)
    outside[box.y : box.bottom, box.x : box.right] = False
    assert torch.equal(frames[:, :, outside], source[:, outside].expand(3, -1, -1))
    model_source, framing = fit(box.crop(source)[None], frame_size(model), "pad")
    generated = framing.restore(torch.stack(list(animate_frames(model, model_source, driving))))
    inside = frames[:, :, box.y + 10 : box.bottom - 10, box.x + 10 : box.right - 10]
    assert (inside - generated[:, :, 10:-10, 10:-10].clamp(0, 1)).abs().max() < 1e-5
    # The region's edge is feathered: each pasted pixel is w * generated + (1 - w) * source,
    # with w near 0 on the box's border and 1 from 10 pixels in. w is read back where the
    # generated frame differs enough from the source for the ratio to be meaningful (the
    # frames are float32, so a change of 0.002 still gives w to about 1e-4).
    pasted = frames[:, :, box.y : box.bottom, box.x : box.right]
    original = box.crop(source).expand_as(pasted)
    change = generated.clamp(0, 1) - original
    measurable = change.abs() > 0.002
    weight = (pasted - original) / change.where(measurable, torch.ones(()))

    def mean_weight(rows: slice, cols: slice) -> float:
        mask = measurable[:, :, rows, cols]
        assert mask.sum() >= 10, "the generated frames barely differ from the source; the test needs motion"
        return weight[:, :, rows, cols][mask].mean().item()

    assert mean_weight(slice(0, 1), slice(10, -10)) < 0.1  # top edge
    assert mean_weight(slice(-1, None), slice(10, -10)) < 0.1  # bottom edge
    assert mean_weight(slice(10, -10), slice(0, 1)) < 0.1  # left edge
    assert 0.1 < mean_weight(slice(3, 4), slice(10, -10)) < 0.95  # blending inwards
    assert abs(mean_weight(slice(10, -10), slice(10, -10)) - 1) < 1e-4  # the model's frame inside


def test_driving_region_is_what_the_model_sees(model) -> None:
    source = smooth_frames(1, frame_size(model), seed=5)[0]
    full = smooth_frames(4, (100, 160), seed=6)
    box = Box(40, 10, 80, 80)
    cropped = torch.stack(list(animate_footage(model, source, full, options=FootageOptions(driving_box=box))))
    direct = torch.stack(list(animate_footage(model, source, box.crop(full))))
    assert torch.equal(cropped, direct)
    with pytest.raises(ValueError, match="reaches outside"):
        list(animate_footage(model, source, full, options=FootageOptions(driving_box=Box(100, 0, 80, 80))))


def test_full_resolution_of_a_still_flow_is_the_source_itself() -> None:
    image = torch.rand(1, 3, 200, 260)
    flow = make_coordinate_grid(16, 20)[None]
    generated = torch.zeros(1, 3, 64, 80)
    out = render_full_resolution(image, generated, flow, torch.ones(1, 1, 16, 20), align_corners=True)
    assert (out - image).abs().max() < 1e-4
    half = render_full_resolution(image, generated, flow, torch.full((1, 1, 16, 20), 0.5), align_corners=True)
    assert (half - image / 2).abs().max() < 1e-4  # occluded half: the generated frame (black) mixed in
    no_occlusion = render_full_resolution(image, generated, flow, None, align_corners=True)
    assert (no_occlusion - image).abs().max() < 1e-4


def test_visibility_is_measured_against_the_weight_at_rest() -> None:
    image = torch.rand(1, 3, 200, 260)
    flow = make_coordinate_grid(16, 20)[None]
    generated = torch.zeros(1, 3, 64, 80)
    rest = torch.rand(1, 1, 16, 20) * 0.5 + 0.3
    same = render_full_resolution(image, generated, flow, rest, True, rest)
    assert (same - image).abs().max() < 1e-4  # as visible as at rest: the source itself
    half = render_full_resolution(image, generated, flow, rest / 2, True, rest)
    assert (half - image / 2).abs().max() < 1e-4
    assert torch.equal(relative_visibility(rest * 1.5, rest), torch.ones_like(rest))  # never above 1


def test_full_resolution_keeps_the_detail_of_a_large_source(model) -> None:
    """At the reference frame the motion is the identity and the occlusion its rest level,
    so full resolution gives back the sharp source, whatever the model's occlusion values
    (a seeded model's are far from 1), while the plain output is the model-size frame
    scaled up."""
    height, width = (4 * s for s in frame_size(model))
    source = (smooth_frames(1, (height, width), seed=7)[0] * 0.7 + torch.rand(3, height, width) * 0.3).clamp(0, 1)
    driving = smooth_frames(3, (60, 60), seed=8)
    motion = MotionOptions(adapt_scale=False)
    sharp = torch.stack(list(animate_footage(model, source, driving, motion, FootageOptions(full_resolution=True))))
    plain = torch.stack(list(animate_footage(model, source, driving, motion)))
    assert sharp.shape == plain.shape == (3, 3, height, width)
    assert (sharp[0] - source).abs().max() < 2e-3
    assert detail(sharp[0]) > 3 * detail(plain[0])
    assert (sharp[1:] - source).abs().mean() > 1e-4  # later frames do move


def test_a_still_video_gives_back_the_source_with_the_default_model() -> None:
    """The embedded model's blend weight (its generator's source weight; before phase 31 its
    occlusion map, which averaged 0.74) is not 1 everywhere when nothing moves; used directly
    it would mix blur into a still photo (here by up to 0.015 of a pixel's value)."""
    model = fm.load_model("default")
    source = torch.from_numpy(render_video(11, "test", 0, num_frames=1, size=512)[0]).permute(2, 0, 1).float() / 255
    frames = list(animate_footage(model, source, source[None].repeat(3, 1, 1, 1), options=FootageOptions(full_resolution=True)))
    small = fit(source[None], model.config.frame_shape)[0]
    rest = rest_weight(model, small, model.detect_keypoints(small))
    assert rest is not None and rest.min() < 0.95
    assert max((frame - source).abs().max().item() for frame in frames) < 1 / 255


def test_full_resolution_uses_the_generator_where_occluded(model) -> None:
    source = torch.rand(3, 128, 128)
    driving = smooth_frames(2, (64, 64), seed=9)
    out = list(animate_footage(model, source, driving, options=FootageOptions(full_resolution=True), with_deformed=True))
    assert out[0].shape == (3, 128, 128) and 0 <= out[0].min() and out[0].max() <= 1


def test_footage_errors(model) -> None:
    source = smooth_frames(1, (100, 100))[0]
    with pytest.raises(ValueError, match="too small"):
        list(animate_footage(model, source, smooth_frames(2, (20, 20))))
    with pytest.raises(ValueError, match="too small"):
        list(animate_footage(model, smooth_frames(1, (24, 100))[0], smooth_frames(2, (64, 64))))
    with pytest.raises(ValueError, match="reaches outside"):
        list(animate_footage(model, source, smooth_frames(2, (64, 64)), options=FootageOptions(source_box=Box(50, 50, 60, 60))))
    with pytest.raises(ValueError, match="one-shot"):
        list(animate_footage(model, source, iter(smooth_frames(2, (64, 64))), MotionOptions(reference="best")))
    with pytest.raises(ValueError, match="source must be floating point.*uint8"):
        list(animate_footage(model, (source * 255).byte(), smooth_frames(2, (64, 64))))
    with pytest.raises(ValueError, match="driving must be floating point.*uint8"):
        list(animate_footage(model, source, (smooth_frames(2, (64, 64)) * 255).byte()))
