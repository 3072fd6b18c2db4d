"""The synthetic puppet dataset: reproducible, in the original layout, with real part motion."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fomm_model.cli import main
from fomm_model.training.config import DatasetParams
from fomm_model.training.data import FramesDataset, no_motion_l1, read_video
from fomm_model.training.synthetic import (
    SyntheticSpec,
    fit_to_frame,
    part_transforms,
    render_video,
    sample_puppet,
    video_rng,
    write_dataset,
)


def test_same_seed_and_index_give_the_same_video_and_others_differ():
    first = render_video(7, "train", 3, num_frames=6, size=64)
    assert first.shape == (6, 64, 64, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, render_video(7, "train", 3, num_frames=6, size=64))
    for other in (render_video(8, "train", 3, 6, 64), render_video(7, "train", 4, 6, 64), render_video(7, "test", 3, 6, 64)):
        assert np.abs(first.astype(int) - other).mean() > 10


@pytest.mark.parametrize("index", range(6))
def test_camera_is_static_and_the_body_moves_a_lot(index):
    video = render_video(11, "test", index, num_frames=24, size=128).astype(int)
    constant = (video == video[:1]).all(axis=(0, 3))
    changed = (np.abs(video - video[:1]).max(axis=3) > 20).any(axis=0)
    assert constant.mean() > 0.25  # background pixels the body never covers stay exactly the same
    assert changed.mean() > 0.12  # the body sweeps a good part of the frame
    assert np.abs(video[-1] - video[0]).mean() > 5  # and the last frame is far from the first


def test_parts_turn_independently_of_the_torso():
    rng = video_rng(3, "train", 0)
    puppet = sample_puppet(rng, 128)
    assert 3 <= len(puppet.parts) <= 10
    angles = []
    for t in range(40):
        transforms = part_transforms(puppet, float(t))
        torso = math.atan2(transforms[0][0][1, 0], transforms[0][0][0, 0])
        angles.append([math.atan2(m[1, 0], m[0, 0]) - torso for m, _ in transforms[1:]])
    relative = np.unwrap(np.array(angles), axis=0)
    swing = relative.max(axis=0) - relative.min(axis=0)
    assert (swing > math.radians(20)).all()  # every limb segment / head swings about its joint


@pytest.mark.parametrize("seed", range(4))
def test_body_stays_in_frame(seed):
    size = 96
    rng = video_rng(seed, "train", 1)
    puppet = sample_puppet(rng, size)
    times = np.arange(30, dtype=float)
    fit_to_frame(puppet, times, size)
    for t in times:
        for part, (matrix, _) in zip(puppet.parts, part_transforms(puppet, float(t))):
            for u in (part.u0, part.u1):  # bone ends
                x, y, _ = matrix @ np.array([u, 0.0, 1.0])
                assert -1 <= x <= size + 1 and -1 <= y <= size + 1


def test_make_synthetic_cli_is_reproducible_and_in_the_original_layout(tmp_path, capsys):
    args = ["--num-videos", "5", "--seed", "4", "--frames", "4", "--size", "48", "--quiet"]
    assert main(["make-synthetic", str(tmp_path / "a"), *args]) == 0
    assert "no-motion L1" in capsys.readouterr().out
    assert main(["make-synthetic", str(tmp_path / "b"), *args]) == 0
    a, b = tmp_path / "a", tmp_path / "b"
    assert sorted(p.name for p in (a / "train").iterdir()) == ["train00000", "train00001", "train00002", "train00003"]
    assert sorted(p.name for p in (a / "test").iterdir()) == ["test00000"]
    assert sorted(p.name for p in (a / "train" / "train00000").iterdir()) == ["0000.png", "0001.png", "0002.png", "0003.png"]
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert json.loads((a / "synthetic.json").read_text())["seed"] == 4
    video = read_video(a / "train" / "train00002")
    np.testing.assert_array_equal(np.round(video * 255).astype(np.uint8), render_video(4, "train", 2, 4, 48))


def test_a_bigger_dataset_keeps_the_videos_of_a_smaller_one(tmp_path):
    write_dataset(tmp_path / "small", SyntheticSpec(seed=2, num_train=2, num_test=1, num_frames=3, size=40))
    write_dataset(tmp_path / "big", SyntheticSpec(seed=2, num_train=4, num_test=2, num_frames=3, size=40))
    for rel in (Path("train/train00001/0002.png"), Path("test/test00000/0000.png")):
        assert (tmp_path / "small" / rel).read_bytes() == (tmp_path / "big" / rel).read_bytes()


def test_parallel_workers_write_the_same_files(tmp_path):
    spec = SyntheticSpec(seed=3, num_train=3, num_test=2, num_frames=3, size=40)
    write_dataset(tmp_path / "one", spec)
    assert main(["make-synthetic", str(tmp_path / "three"), "--num-videos", "5", "--test-videos", "2", "--seed", "3",
                 "--frames", "3", "--size", "40", "--workers", "3", "--quiet"]) == 0
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert len(files) == 15
    for rel in files:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "three" / rel).read_bytes()


def test_refuses_to_write_into_an_existing_dataset(tmp_path):
    spec = SyntheticSpec(seed=0, num_train=1, num_test=1, num_frames=2, size=32)
    write_dataset(tmp_path, spec)
    with pytest.raises(FileExistsError, match="not empty"):
        write_dataset(tmp_path, spec)
    assert main(["make-synthetic", str(tmp_path), "--num-videos", "2", "--seed", "0", "--quiet"]) == 1
    flat = tmp_path / "flat"  # a user's flat dataset: train/ and test/ beside its videos would hide them
    flat.mkdir()
    (flat / "clip.mp4").write_bytes(b"a video")
    with pytest.raises(FileExistsError, match="already holds clip.mp4; write the dataset to a new or empty folder"):
        write_dataset(flat, spec)
    assert sorted(p.name for p in flat.iterdir()) == ["clip.mp4"]
    left = tmp_path / "left"  # its own description, its videos deleted: written again
    left.mkdir()
    (left / "synthetic.json").write_text("{}")
    write_dataset(left, spec)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"seed": -1}, "seed"), ({"num_test": 0}, "at least one"), ({"num_frames": 1}, "2 frames"), ({"size": 8}, "size")],
)
def test_spec_rejects_bad_values(kwargs, message):
    values = {"seed": 0, "num_train": 1, "num_test": 1, "num_frames": 4, "size": 64, **kwargs}
    with pytest.raises(ValueError, match=message):
        SyntheticSpec(**values)


def test_from_total_splits_80_20():
    spec = SyntheticSpec.from_total(200, seed=1)
    assert (spec.num_train, spec.num_test) == (160, 40)
    assert SyntheticSpec.from_total(2, seed=1).num_test == 1


def test_no_motion_baseline_is_the_mean_difference_to_the_first_frame(tmp_path):
    write_dataset(tmp_path, SyntheticSpec(seed=5, num_train=1, num_test=2, num_frames=5, size=48))
    test = FramesDataset(DatasetParams(root_dir=str(tmp_path), frame_shape=(48, 48, 3)), is_train=False)
    videos = [render_video(5, "test", i, 5, 48).astype(np.float64) / 255 for i in range(2)]
    expected = np.mean([np.abs(v - v[:1]).mean(axis=(1, 2, 3)) for v in videos])
    assert no_motion_l1(test) == pytest.approx(expected, rel=1e-5)
    assert no_motion_l1(test) > 0.01
