"""Reading videos in every supported layout, and the training/test datasets built on them."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler

from fomm_model.training import data
from fomm_model.training.config import AugmentationParams, DatasetParams, FlipParams, JitterParams
from fomm_model.training.data import (
    DatasetRepeater,
    FramesDataset,
    PairedDataset,
    VideoReadError,
    read_video,
    train_test_split,
)
from fomm_model.video import MediaError


def make_frames(count: int, height: int = 24, width: int = 32) -> np.ndarray:
    """(T, H, W, 3) uint8 frames whose grey level encodes the frame index (20 * t + 10)."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    for t in range(count):
        frames[t] = 20 * t + 10
        frames[t, : height // 2, : width // 2, 0] = 250 - 20 * t  # a coloured corner, for channel order
    return frames


def frame_index(frame: np.ndarray) -> int:
    """Invert :func:`make_frames` from the grey part of a float frame."""
    return int(round((frame[-1, -1, 1] * 255 - 10) / 20))


def write_folder(path: Path, frames: np.ndarray, suffix: str = ".png") -> Path:
    path.mkdir(parents=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(path / f"{t:04d}{suffix}", quality=98)
    return path


def write_strip(path: Path, frames: np.ndarray) -> Path:
    Image.fromarray(np.concatenate(list(frames), axis=1)).save(path, quality=98)
    return path


def write_gif(path: Path, frames: np.ndarray) -> Path:
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    return path


def write_movie(path: Path, frames: np.ndarray) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (frames.shape[2], frames.shape[1]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


# ----------------------------------------------------------------------------- read_video
@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_read_folder_of_frames(tmp_path, suffix):
    frames = make_frames(5)
    video = read_video(write_folder(tmp_path / "clip", frames, suffix))
    assert video.shape == (5, 24, 32, 3) and video.dtype == np.float32
    if suffix == ".png":
        np.testing.assert_array_equal(video, frames / np.float32(255))
    else:  # lossy: close on average, and every frame where it belongs
        assert np.abs(video - frames / 255).mean() < 0.01
        assert [frame_index(f) for f in video] == list(range(5))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_read_horizontal_strip(tmp_path, suffix):
    frames = make_frames(4, 24, 24)
    video = read_video(write_strip(tmp_path / f"strip{suffix}", frames), (24, 24, 3))
    assert video.shape == (4, 24, 24, 3)
    assert [frame_index(f) for f in video] == [0, 1, 2, 3]
    if suffix == ".png":
        np.testing.assert_array_equal(video, frames / np.float32(255))


def test_strip_of_non_square_frames_uses_the_frame_shape_aspect(tmp_path):
    frames = make_frames(3, 20, 30)
    video = read_video(write_strip(tmp_path / "strip.png", frames), (20, 30))
    np.testing.assert_array_equal(video, frames / np.float32(255))
    with pytest.raises(VideoReadError, match="does not split"):
        read_video(tmp_path / "strip.png", (20, 40))


class NoGifCapture:
    """An OpenCV build whose FFmpeg has no GIF decoder: opens, but yields no frame."""

    def __init__(self, path: str):
        pass

    def read(self):
        return False, None

    def release(self) -> None:
        pass


def test_read_gif_with_opencv_and_with_pillow(tmp_path, monkeypatch):
    frames = make_frames(4)
    path = write_gif(tmp_path / "clip.gif", frames)
    video = read_video(path)
    assert video.shape == (4, 24, 32, 3)
    assert [frame_index(f) for f in video] == [0, 1, 2, 3]
    monkeypatch.setattr(cv2, "VideoCapture", NoGifCapture)
    np.testing.assert_allclose(read_video(path), video, atol=2 / 255)


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_read_movie_files(tmp_path, suffix):
    frames = make_frames(6, 32, 48)
    video = read_video(write_movie(tmp_path / f"clip{suffix}", frames))
    assert video.shape == (6, 32, 48, 3) and video.dtype == np.float32
    assert [frame_index(f) for f in video] == list(range(6))
    np.testing.assert_allclose(video.mean(axis=(1, 2)), frames.mean(axis=(1, 2)) / 255, atol=0.03)
    assert video[0, 2, 2, 0] > 0.8 and video[0, 2, 2, 2] < 0.2  # red stays red: RGB order, not BGR


def test_grey_rgba_and_16_bit_frames_become_rgb_float(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    grey = np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)
    Image.fromarray(grey).save(folder / "0000.png")
    rgba = np.dstack([make_frames(1)[0], np.full((24, 32), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "0001.png")
    cv2.imwrite(str(folder / "0002.png"), np.full((24, 32), 65535 // 2, np.uint16))
    cv2.imwrite(str(folder / "0003.png"), np.full((24, 32), 200 * 257, np.uint16))
    (folder / "notes.txt").write_text("not a frame")
    video = read_video(folder)
    assert video.shape == (4, 24, 32, 3)
    np.testing.assert_array_equal(video[0], np.repeat(grey[..., None], 3, -1) / np.float32(255))
    np.testing.assert_array_equal(video[1], make_frames(1)[0] / np.float32(255))  # alpha dropped
    np.testing.assert_allclose(video[2], 0.5, atol=0.5 / 255)  # 16 bit rounds to the nearest 8-bit value
    np.testing.assert_array_equal(video[3], np.float32(200) / 255)  # as fomm_model.video reads it


def test_frame_folders_are_in_natural_order_like_the_animation_reader(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for t, frame in enumerate(make_frames(4)):
        Image.fromarray(frame).save(folder / f"f{t * 5}.png")  # f0, f5, f10, f15: text order differs
    Image.fromarray(make_frames(1)[0]).save(folder / "._f7.png")  # a hidden companion file, not a frame
    video = read_video(folder)
    assert [frame_index(f) for f in video] == [0, 1, 2, 3]
    from fomm_model.video import read_video as read_for_animation

    as_tensors = np.stack([frame.permute(1, 2, 0).numpy() for frame in read_for_animation(folder)])
    np.testing.assert_array_equal(video, as_tensors)


def test_frames_are_resized_to_the_frame_shape(tmp_path):
    video = read_video(write_folder(tmp_path / "clip", make_frames(2, 48, 64)), (24, 32, 3))
    assert video.shape == (2, 24, 32, 3)
    assert [frame_index(f) for f in video] == [0, 1]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: (p / "empty").mkdir() or p / "empty", "no image frames"),
        (lambda p: (p / "broken.mp4").write_bytes(b"\x00garbage" * 50) and p / "broken.mp4", "no frames could be decoded"),
        (lambda p: (p / "broken.png").write_bytes(b"not a png") and p / "broken.png", "cannot read .* as an image"),
        (lambda p: (p / "clip.txt").write_text("hello") and p / "clip.txt", "unsupported format .txt"),
        (lambda p: p / "missing.mp4", "no such file"),
    ],
)
def test_unreadable_videos_raise_an_error_naming_them(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(MediaError, match=message) as info:
        read_video(path)
    assert path.name in str(info.value)


# ----------------------------------------------------------------------------- datasets
def params(root: Path, **kwargs) -> DatasetParams:
    return DatasetParams(root_dir=str(root), frame_shape=(24, 32, 3), **kwargs)


@pytest.fixture
def split_root(tmp_path) -> Path:
    """train/ with two folder videos, a gif and an mp4; test/ with a folder and a strip."""
    root = tmp_path / "data"
    write_folder(root / "train" / "a", make_frames(6))
    write_folder(root / "train" / "b", make_frames(3))
    write_gif(root / "train" / "c.gif", make_frames(4))
    write_movie(root / "train" / "d.mp4", make_frames(5))
    write_folder(root / "test" / "e", make_frames(4))
    write_strip(root / "test" / "f.png", make_frames(3, 24, 32))
    return root


def test_train_and_test_items(split_root):
    train = FramesDataset(params(split_root), is_train=True)
    assert train.names == ["a", "b", "c.gif", "d.mp4"] and len(train) == 4
    for index in range(len(train)):
        item = train[index]
        assert item["source"].shape == (3, 24, 32) and item["driving"].shape == (3, 24, 32)
        assert item["source"].dtype == torch.float32 and item["name"] == train.names[index]
    test = FramesDataset(DatasetParams(root_dir=str(split_root), frame_shape=(24, 32, 3)), is_train=False)
    assert test.names == ["e", "f.png"]
    assert test[0]["video"].shape == (3, 4, 24, 32) and test[1]["video"].shape == (3, 3, 24, 32)


def test_training_frames_are_drawn_with_replacement_in_order(split_root):
    train = FramesDataset(params(split_root), is_train=True)
    pairs = set()
    for draw in range(200):
        item = train.item(0, draw)
        source, driving = (frame_index(item[k].permute(1, 2, 0).numpy()) for k in ("source", "driving"))
        assert 0 <= source <= driving <= 5
        pairs.add((source, driving))
    assert any(s == d for s, d in pairs) and len(pairs) > 15  # same frame twice happens; most pairs occur


def test_folder_items_read_only_the_two_frames(split_root, monkeypatch):
    train = FramesDataset(params(split_root), is_train=True)
    reads: list[Path] = []
    original = data.decode_image
    monkeypatch.setattr(data, "decode_image", lambda path: reads.append(Path(path)) or original(path))
    train[0]
    assert len(reads) == 2 and all(p.parent.name == "a" for p in reads)


def test_video_file_items_decode_only_up_to_the_later_frame(tmp_path, monkeypatch):
    """A training item of a video file decodes frames up to the later of its two indices
    (the frame count comes from probing), one at a time in uint8."""
    (tmp_path / "train").mkdir()
    write_movie(tmp_path / "train" / "clip.mp4", make_frames(12, 48, 64))
    write_folder(tmp_path / "test" / "t", make_frames(2))
    train = FramesDataset(params(tmp_path), is_train=True)
    assert train.videos[0].frame_count == 12
    decoded: list[np.ndarray] = []
    original = data.decode_video

    def counting(path, stop=None):
        for frame in original(path, stop):
            decoded.append(frame)
            yield frame

    monkeypatch.setattr(data, "decode_video", counting)
    counts = []
    for draw in range(30):
        decoded.clear()
        item = train.item(0, draw)
        later = frame_index(item["driving"].permute(1, 2, 0).numpy())
        assert len(decoded) == later + 1 and all(f.dtype == np.uint8 for f in decoded)
        counts.append(len(decoded))
    assert min(counts) < 12 and max(counts) <= 12  # most items stop before the end


def test_items_are_deterministic_per_seed_epoch_and_draw(split_root):
    aug = AugmentationParams(flip_param=FlipParams(True, True), jitter_param=JitterParams(0.1, 0.1, 0.1, 0.1))
    first = FramesDataset(params(split_root, augmentation_params=aug), is_train=True, random_seed=3)
    second = FramesDataset(params(split_root, augmentation_params=aug), is_train=True, random_seed=3)
    other_seed = FramesDataset(params(split_root, augmentation_params=aug), is_train=True, random_seed=4)

    def stack(dataset: FramesDataset) -> torch.Tensor:
        return torch.stack([torch.cat([dataset[i]["source"], dataset[i]["driving"]]) for i in range(len(dataset))])

    reference = stack(first)
    assert torch.equal(reference, stack(second))
    assert not torch.equal(reference, stack(other_seed))
    second.set_epoch(1)
    assert not torch.equal(reference, stack(second))


def test_random_80_20_split_without_train_folder(tmp_path):
    for i in range(10):
        write_folder(tmp_path / f"v{i}", make_frames(2))
    train = FramesDataset(params(tmp_path), is_train=True, random_seed=1)
    test = FramesDataset(params(tmp_path), is_train=False, random_seed=1)
    assert len(train) == 8 and len(test) == 2 and not set(train.names) & set(test.names)
    assert (train.names, test.names) == train_test_split([f"v{i}" for i in range(10)], 1)
    assert FramesDataset(params(tmp_path), is_train=False, random_seed=1).names == test.names
    assert FramesDataset(params(tmp_path), is_train=False, random_seed=2).names != test.names


def test_train_folder_without_test_folder_is_an_error(tmp_path):
    write_folder(tmp_path / "train" / "a", make_frames(2))
    with pytest.raises(VideoReadError, match="no test/"):
        FramesDataset(params(tmp_path), is_train=True)


def test_id_sampling_groups_videos_by_id(tmp_path):
    names = ["id1#a", "id1#b", "id1#c", "id2#a", "id10#a"]
    for name in names:
        write_folder(tmp_path / "train" / name, make_frames(2))
    write_folder(tmp_path / "test" / "id3#a", make_frames(2))
    train = FramesDataset(params(tmp_path, id_sampling=True), is_train=True)
    assert train.ids == ["id1", "id10", "id2"] and len(train) == 3
    chosen = {train.item(0, draw)["name"] for draw in range(60)}
    assert chosen == {"id1#a", "id1#b", "id1#c"}  # every video of id1, and never id10's
    assert {train.item(1, draw)["name"] for draw in range(10)} == {"id10#a"}
    test = FramesDataset(params(tmp_path, id_sampling=True), is_train=False)
    assert test.names == ["id3#a"] and len(test) == 1


def test_unreadable_videos_are_reported_by_name_and_skipped(tmp_path, caplog):
    write_folder(tmp_path / "train" / "good", make_frames(2))
    (tmp_path / "train" / "empty").mkdir()
    (tmp_path / "train" / "broken.mp4").write_bytes(b"\x00garbage" * 50)
    (tmp_path / "train" / "readme.txt").write_text("hello")
    (tmp_path / "train" / ".DS_Store").write_text("hidden files are not videos")
    write_folder(tmp_path / "test" / "t", make_frames(2))
    with caplog.at_level(logging.WARNING, logger="fomm_model.training.data"):
        train = FramesDataset(params(tmp_path), is_train=True)
    assert train.names == ["good"]
    message = caplog.text
    assert "skipping 2 of 3 videos" in message and "ignoring 1 file(s) that are not videos: readme.txt" in message
    for name in ("empty", "broken.mp4"):
        assert name in message
    assert ".DS_Store" not in message


def test_stray_files_do_not_change_the_80_20_split(tmp_path, caplog):
    """A flat folder is split by name; a notes.txt beside the videos must not reshuffle it."""
    for index in range(10):
        write_folder(tmp_path / f"clip{index:02d}", make_frames(2))
    before = FramesDataset(params(tmp_path), is_train=False).names
    (tmp_path / "notes.txt").write_text("not a video")
    with caplog.at_level(logging.WARNING, logger="fomm_model.training.data"):
        after = FramesDataset(params(tmp_path), is_train=False).names
    assert after == before and len(before) == 2 and "notes.txt" in caplog.text


def test_datasets_with_nothing_to_learn_are_refused(tmp_path):
    single = tmp_path / "single"
    write_folder(single / "clip", make_frames(3))
    with pytest.raises(VideoReadError, match=r"holds a single video \(clip\); the 80/20 split needs several"):
        FramesDataset(params(single), is_train=True)
    assert FramesDataset(params(single), is_train=False).names == ["clip"]  # but fomm reconstruct scores it
    # --data naming one video's folder of frames: each frame a one-frame "strip"
    frames = tmp_path / "frames"
    write_folder(frames, make_frames(8))
    with pytest.raises(VideoReadError, match="every video has a single frame.*put them in a subfolder"):
        FramesDataset(params(frames), is_train=True)
    nested = tmp_path / "nested"
    for person in ("anna", "ben"):
        write_folder(nested / person / "talk", make_frames(2))
    with pytest.raises(VideoReadError, match="nested folders are not searched"):
        FramesDataset(params(nested), is_train=True)
    with pytest.raises(VideoReadError, match="a file, not a dataset folder"):
        FramesDataset(params(frames / sorted(p.name for p in frames.iterdir())[0]), is_train=True)


def test_all_unreadable_is_an_error(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.mp4").write_bytes(b"nope")
    (tmp_path / "train" / "b.mp4").write_bytes(b"nope")
    (tmp_path / "test").mkdir()
    with pytest.raises(VideoReadError, match="none of its 2 videos can be read"):
        FramesDataset(params(tmp_path), is_train=True)
    with pytest.raises(VideoReadError, match="holds no videos"):
        FramesDataset(params(tmp_path), is_train=False)
    with pytest.raises(VideoReadError, match="no such dataset folder"):
        FramesDataset(params(tmp_path / "elsewhere"), is_train=False)


def test_other_frame_sizes_are_resized_and_said_once(tmp_path, caplog):
    write_folder(tmp_path / "train" / "big1", make_frames(2, 48, 64))
    write_folder(tmp_path / "train" / "big2", make_frames(2, 48, 64))
    write_folder(tmp_path / "train" / "exact", make_frames(2))
    write_folder(tmp_path / "test" / "t", make_frames(2))
    with caplog.at_level(logging.WARNING, logger="fomm_model.training.data"):
        train = FramesDataset(params(tmp_path), is_train=True)
    resize_messages = [r for r in caplog.records if "resized" in r.getMessage()]
    assert len(resize_messages) == 1 and "2 of 3 videos" in resize_messages[0].getMessage()
    assert train[0]["source"].shape == (3, 24, 32)


def test_repeater_repeats_with_fresh_draws(split_root):
    train = FramesDataset(params(split_root), is_train=True)
    repeated = DatasetRepeater(train, 5)
    assert len(repeated) == 20
    assert repeated[6]["name"] == train.names[2]
    pairs = {tuple(frame_index(repeated[r * 4][k].permute(1, 2, 0).numpy()) for k in ("source", "driving")) for r in range(5)}
    assert len(pairs) > 1  # the five repeats of video a do not all see the same frames
    with pytest.raises(ValueError, match="num_repeats"):
        DatasetRepeater(train, 0)


def test_dataloader_workers_give_the_same_batches_as_the_main_process(split_root):
    aug = AugmentationParams(flip_param=FlipParams(True, True), jitter_param=JitterParams(0.1, 0.1, 0.1, 0.1))
    dataset = DatasetRepeater(FramesDataset(params(split_root, augmentation_params=aug), is_train=True), 3)
    dataset.set_epoch(2)

    def batches(workers: int) -> list[torch.Tensor]:
        loader = DataLoader(dataset, batch_size=4, shuffle=False, num_workers=workers)
        return [torch.cat([b["source"], b["driving"]]) for b in loader]

    in_process, in_workers = batches(0), batches(2)
    assert len(in_workers) == 3
    for a, b in zip(in_process, in_workers):
        assert torch.equal(a, b)


def test_distributed_sampler_shards_the_items(split_root):
    dataset = DatasetRepeater(FramesDataset(params(split_root), is_train=True), 2)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        loader = DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=0)
        seen.append([name for batch in loader for name in batch["name"]])
    assert len(seen[0]) == len(seen[1]) == 4
    assert sorted(seen[0] + seen[1]) == sorted(["a", "b", "c.gif", "d.mp4"] * 2)


# ----------------------------------------------------------------------------- pairs
@pytest.fixture
def test_videos(tmp_path) -> FramesDataset:
    for name in ("p", "q", "r", "s"):
        write_folder(tmp_path / "train" / name, make_frames(2))
        write_folder(tmp_path / "test" / name, make_frames(3))
    return FramesDataset(params(tmp_path), is_train=False)


def test_pairs_from_a_csv_keep_existing_videos_in_order(tmp_path, test_videos):
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("distance,source,driving,frame\n0,p,q,0\n0,missing,q,0\n0,s,r,0\n0,q,p,0\n")
    pairs = PairedDataset(test_videos, number_of_pairs=2, pairs_list=csv_path)
    assert len(pairs) == 2
    item = pairs[1]
    assert (item["source_name"], item["driving_name"]) == ("s", "r")
    assert item["source_video"].shape == (3, 3, 24, 32)


def test_pairs_list_needs_source_and_driving_columns(tmp_path, test_videos):
    bad = tmp_path / "bad.csv"
    bad.write_text("from,to\np,q\n")
    with pytest.raises(ValueError, match="'source' and 'driving'"):
        PairedDataset(test_videos, 5, pairs_list=bad)
    none = tmp_path / "none.csv"
    none.write_text("source,driving\nx,y\n")
    with pytest.raises(ValueError, match="none of its pairs"):
        PairedDataset(test_videos, 5, pairs_list=none)


def test_random_pairs_are_seeded_and_distinct(test_videos):
    first = PairedDataset(test_videos, number_of_pairs=6, seed=0)
    assert first.pairs == PairedDataset(test_videos, number_of_pairs=6, seed=0).pairs
    assert first.pairs != PairedDataset(test_videos, number_of_pairs=6, seed=1).pairs
    assert len(first) == 6 and len(set(first.pairs)) == 6
    assert all(0 <= d < 4 and 0 <= s < 4 for d, s in first.pairs)
    assert len(PairedDataset(test_videos, number_of_pairs=100).pairs) == 16  # all 4 x 4 pairs at most


def test_a_training_video_that_fails_mid_way_is_reported_and_replaced(tmp_path, caplog):
    write_folder(tmp_path / "train" / "a", make_frames(2))
    write_folder(tmp_path / "train" / "b", make_frames(2))
    (tmp_path / "train" / "a" / "0001.png").write_bytes(b"truncated")  # the probe only checks the first frame
    write_folder(tmp_path / "test" / "t", make_frames(2))
    train = FramesDataset(params(tmp_path), is_train=True)
    assert train.names == ["a", "b"]
    names = []
    with caplog.at_level(logging.WARNING, logger="fomm_model.training.data"):
        for draw in range(20):
            names.append(train.item(0, draw)["name"])
    assert set(names) == {"a", "b"}  # draws of frame 0 only still work; the others fall over to b
    assert "0001.png" in caplog.text and "uses the next video" in caplog.text
