"""The original augmentations: what each does to a clip, and that one draw covers the clip."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from fomm_model.training.augmentation import (
    Augmentation,
    color_jitter,
    random_crop,
    random_flip,
    random_resize,
    random_rotation,
)
from fomm_model.config import ConfigError
from fomm_model.training.config import AugmentationParams, FlipParams, JitterParams


def textured_clip(count: int = 3, height: int = 20, width: int = 28, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.1, 0.9, (height, width, 3)).astype(np.float32) for _ in range(count)]


def outcomes(transform, clip, draws: int = 40) -> list[list[np.ndarray]]:
    return [transform(clip, np.random.default_rng(seed)) for seed in range(draws)]


def test_horizontal_flip_mirrors_every_frame_or_none():
    clip = textured_clip()
    kinds = set()
    for out in outcomes(lambda c, r: random_flip(c, r, time_flip=False, horizontal_flip=True), clip):
        if all(np.array_equal(o, f) for o, f in zip(out, clip)):
            kinds.add("same")
        else:
            assert all(np.array_equal(o, f[:, ::-1]) for o, f in zip(out, clip))
            kinds.add("mirrored")
    assert kinds == {"same", "mirrored"}


def test_time_flip_reverses_the_clip_and_never_also_mirrors():
    clip = textured_clip(4)
    kinds = set()
    for out in outcomes(lambda c, r: random_flip(c, r, time_flip=True, horizontal_flip=True), clip, 60):
        if all(np.array_equal(o, f) for o, f in zip(out, clip[::-1])):
            kinds.add("reversed")
        elif all(np.array_equal(o, f[:, ::-1]) for o, f in zip(out, clip)):
            kinds.add("mirrored")
        else:
            assert all(np.array_equal(o, f) for o, f in zip(out, clip))
            kinds.add("same")
    assert kinds == {"reversed", "mirrored", "same"}


def test_rotation_turns_counter_clockwise_about_the_centre():
    frame = np.zeros((21, 21, 3), np.float32)
    frame[2:5, 9:12] = 1.0  # a dot above the centre
    for seed in range(5):
        drawn = np.random.default_rng(seed).uniform(-90, 90)  # the angle the transform will draw
        out = random_rotation([frame, frame], np.random.default_rng(seed), degrees=90)
        ys, xs = np.nonzero(out[0][..., 0] > 0.5)
        direction = np.degrees(np.arctan2(-(ys.mean() - 10), xs.mean() - 10))  # image y points down
        assert direction == pytest.approx(90 + drawn, abs=6)
        assert np.array_equal(out[0], out[1])


def test_resize_scales_by_one_factor_within_the_ratio():
    clip = textured_clip(2, 40, 60)
    sizes = set()
    for out in outcomes(lambda c, r: random_resize(c, r, (0.5, 1.5)), clip, 20):
        height, width = out[0].shape[:2]
        assert out[1].shape == out[0].shape
        assert 20 <= height <= 60 and 30 <= width <= 90
        assert abs(height / 40 - width / 60) < 0.05  # aspect kept
        sizes.add((height, width))
    assert len(sizes) > 5
    doubled = random_resize([clip[0]], np.random.default_rng(0), (2.0, 2.0))[0]
    np.testing.assert_array_equal(doubled[::2, ::2], clip[0])  # nearest neighbour: pixels repeated


def test_crop_cuts_the_same_window_from_every_frame():
    clip = textured_clip(2, 30, 40)
    clip[1] = clip[0].copy()
    for out in outcomes(lambda c, r: random_crop(c, r, (16, 24)), clip, 10):
        assert out[0].shape == (16, 24, 3)
        assert np.array_equal(out[0], out[1])
        matches = [
            (y, x) for y in range(15) for x in range(17) if np.array_equal(clip[0][y : y + 16, x : x + 24], out[0])
        ]
        assert len(matches) == 1


def test_crop_larger_than_the_frame_pads_with_edge_pixels():
    frame = textured_clip(1, 10, 12)[0]
    out = random_crop([frame], np.random.default_rng(0), (14, 12))[0]
    assert out.shape == (14, 12, 3)
    np.testing.assert_array_equal(out[2:12], frame)
    np.testing.assert_array_equal(out[0], frame[0])
    np.testing.assert_array_equal(out[13], frame[-1])


def test_brightness_jitter_scales_colours_within_bounds():
    clip = textured_clip(2)
    ratios = []
    for out in outcomes(lambda c, r: color_jitter(c, r, JitterParams(brightness=0.2)), clip, 20):
        ratio = out[0].mean() / clip[0].mean()
        assert 0.78 <= ratio <= 1.22
        assert out[1].mean() / clip[1].mean() == pytest.approx(ratio, abs=0.01)  # same factor for the clip
        ratios.append(ratio)
    assert max(ratios) - min(ratios) > 0.1


def test_contrast_and_saturation_jitter_stay_within_bounds():
    grey = [np.full((8, 8, 3), 0.4, np.float32)]
    for out in outcomes(lambda c, r: color_jitter(c, r, JitterParams(saturation=0.5)), grey, 5):
        np.testing.assert_allclose(out[0], grey[0], atol=1 / 255)  # no colour to saturate
    clip = textured_clip(1)
    spreads = [o[0].std() / clip[0].std() for o in outcomes(lambda c, r: color_jitter(c, r, JitterParams(contrast=0.3)), clip, 20)]
    assert min(spreads) >= 0.68 and max(spreads) <= 1.32 and max(spreads) - min(spreads) > 0.1


def test_hue_jitter_rotates_hue_and_keeps_brightness():
    red = [np.tile(np.float32([0.9, 0.2, 0.2]), (6, 6, 1))]
    hues = []
    for out in outcomes(lambda c, r: color_jitter(c, r, JitterParams(hue=0.3)), red, 20):
        pixel = out[0][0, 0]
        h, _, v = colorsys.rgb_to_hsv(*pixel)
        assert v == pytest.approx(0.9, abs=0.02)
        shift = (h + 0.5) % 1 - 0.5  # red is hue 0
        assert abs(shift) <= 0.3 + 0.01
        hues.append(shift)
    assert max(hues) > 0.1 and min(hues) < -0.1
    with pytest.raises(ValueError, match="hue"):
        color_jitter(red, np.random.default_rng(0), JitterParams(hue=0.7))


def test_jitter_applies_one_draw_to_the_whole_clip():
    frame = textured_clip(1)[0]
    jitter = JitterParams(0.3, 0.3, 0.3, 0.2)
    out = color_jitter([frame, frame.copy()], np.random.default_rng(5), jitter)
    assert np.array_equal(out[0], out[1]) and not np.allclose(out[0], frame, atol=0.02)


def test_full_augmentation_is_reproducible_from_the_generator():
    params = AugmentationParams(
        flip_param=FlipParams(True, True), rotation_param=10, resize_param=(0.9, 1.1), crop_param=(20, 28),
        jitter_param=JitterParams(0.1, 0.1, 0.1, 0.5),
    )
    augment = Augmentation(params)
    clip = textured_clip(2)
    first = augment(clip, np.random.default_rng(9))
    assert all(f.shape == (20, 28, 3) and f.dtype == np.float32 for f in first)
    again = augment(clip, np.random.default_rng(9))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    other = augment(clip, np.random.default_rng(10))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_no_augmentation_leaves_the_clip_alone():
    clip = textured_clip(2)
    out = Augmentation(AugmentationParams())(clip, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(out, clip))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: AugmentationParams(rotation_param=-1), r"augmentation_params\.rotation_param\.degrees must be a number, 0 or more"),
        (lambda: AugmentationParams(rotation_param=float("nan")), r"rotation_param\.degrees must be a number"),
        (lambda: AugmentationParams(resize_param=(1.1, 0.9)), r"resize_param\.ratio must be two increasing positive numbers"),
        (lambda: AugmentationParams(crop_param=(0, 10)), r"crop_param\.size must be positive"),
        (lambda: JitterParams(hue=0.6), r"jitter_param\.hue must be at most 0\.5"),
        (lambda: JitterParams(brightness=-0.1), r"jitter_param\.brightness must be 0 or more"),
    ],
)
def test_bad_parameters_are_rejected_when_made(make, message):
    """When the config is read, naming the entry (they used to stop the first training step)."""
    with pytest.raises(ConfigError, match=message):
        make()
