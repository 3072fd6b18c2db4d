"""The streaming fast path against the original per-frame loop, reference frames, progress,
cancellation and errors."""

from __future__ import annotations

import copy
import threading
import warnings

import numpy as np
import pytest
import torch
from animation_helpers import animation_model, frame_size, smooth_frames

import fomm_model as fm
from fomm_model.keypoints import find_best_frame
from fomm_model.pipeline import MotionOptions, animate_batches, animate_frames, frame_count, map_frames
from fomm_model.precision import has_native_support


@torch.no_grad()
def original_loop(
    model: fm.FirstOrderModel,
    source: torch.Tensor,
    driving: torch.Tensor,
    reference: int = 0,
    relative: bool = True,
    adapt_scale: bool = True,
) -> torch.Tensor:
    """The original demo, literally: whole generator per frame with batch 1, and for a later
    reference frame a forward run from it and a backward run to frame 0."""

    def run(frames: torch.Tensor) -> list[torch.Tensor]:
        kp_source = model.kp_detector(source)
        kp_initial = model.kp_detector(frames[:1])
        out = []
        for t in range(len(frames)):
            kp_norm = fm.normalize_keypoints(
                kp_source,
                model.kp_detector(frames[t : t + 1]),
                kp_initial,
                relative=relative,
                relative_jacobian=relative,
                adapt_scale=adapt_scale,
            )
            out.append(model.generator(source, kp_source, kp_norm)["prediction"][0])
        return out

    forward = run(driving[reference:])
    backward = run(driving[: reference + 1].flip(0))
    return torch.stack(backward[::-1] + forward[1:])


@pytest.fixture(scope="module")
def model() -> fm.FirstOrderModel:
    return animation_model()


@pytest.fixture(scope="module")
def clip(model: fm.FirstOrderModel) -> tuple[torch.Tensor, torch.Tensor]:
    frames = smooth_frames(8, frame_size(model), seed=3)
    return smooth_frames(1, frame_size(model), seed=4), frames


@pytest.mark.parametrize("batch_size", [1, 3, 8])
@pytest.mark.parametrize("relative", [True, False])
def test_fast_path_equals_per_frame_loop(model, clip, batch_size: int, relative: bool) -> None:
    source, driving = clip
    expected = original_loop(model, source, driving, relative=relative)
    frames = list(animate_frames(model, source, driving, relative=relative, batch_size=batch_size))
    assert len(frames) == len(driving) and frames[0].shape == driving.shape[1:]
    assert (torch.stack(frames) - expected).abs().max() <= 1e-4
    assert (model.animate(source, driving, relative=relative, batch_size=batch_size) - expected).abs().max() <= 1e-4


@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_cpu_batches_run_frame_parallel_with_the_same_frames(model, clip, two_threads, monkeypatch) -> None:
    """With 2 intra-op threads a CPU batch is split in two halves, each generated in its own
    worker thread (fomm_model.threads); the frames equal the per-frame loop's and the
    caller's thread count is restored. Not in train mode (batch norm would see halves)."""
    source, driving = clip
    expected = original_loop(model, source, driving[:6])
    calls: list[tuple[str, int, bool]] = []
    generate = model._generate_encoded

    def spy(encoded, kp_driving, *args):
        calls.append((threading.current_thread().name, len(kp_driving), torch.is_inference_mode_enabled()))
        return generate(encoded, kp_driving, *args)

    monkeypatch.setattr(model, "_generate_encoded", spy)
    frames = torch.stack(list(animate_frames(model, source, driving[:6], batch_size=6)))
    assert sorted(length for _, length, _ in calls) == [3, 3]
    assert all(name.startswith("fomm-frames") and inference for name, _, inference in calls)
    assert (frames - expected).abs().max() <= 1e-4
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
    calls.clear()
    assert (torch.stack(list(animate_frames(model, source, driving[:6], batch_size=6))) - frames).abs().max() <= 1e-6
    assert [length for _, length, _ in calls] == [6]
    torch.set_num_threads(2)
    calls.clear()
    statistics = copy.deepcopy(model.state_dict())  # train mode updates batch norm's running statistics
    model.train()
    try:
        model.animate(source, driving[:6], batch_size=6)
    finally:
        model.eval()
        model.load_state_dict(statistics)  # the model is shared with the other tests
    assert [length for _, length, _ in calls] == [6]


def test_frame_shards_give_every_thread_work() -> None:
    from fomm_model.threads import frame_shards

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    threads = torch.get_num_threads()
    try:
        expected = {(2, 8): [4, 4], (2, 1): [1], (12, 8): [2, 2, 2, 2], (16, 8): [1] * 8, (3, 2): [2], (2, 0): [0]}
        for (count, frames), lengths in expected.items():
            torch.set_num_threads(count)
            assert [s.stop - s.start for s in frame_shards(cpu, frames)] == lengths, (count, frames)
        assert frame_shards(cuda, 8) == [slice(0, 8)]
    finally:
        torch.set_num_threads(threads)


def test_a_callers_autocast_reaches_the_workers(two_threads) -> None:
    from fomm_model.threads import map_frame_shards

    seen: list[bool] = []

    def probe(frames: slice) -> dict[str, torch.Tensor]:
        seen.append(torch.is_autocast_enabled("cpu") if hasattr(torch, "get_autocast_dtype") else torch.is_autocast_cpu_enabled())
        return {"x": torch.zeros(frames.stop - frames.start)}

    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = map_frame_shards(torch.device("cpu"), 4, probe)
    assert seen == [True, True] and out["x"].shape == (4,)


def test_driving_as_list_of_frames_and_chunks(model, clip) -> None:
    source, driving = clip
    expected = torch.stack(list(animate_frames(model, source[0], driving, batch_size=3)))
    as_frames = torch.stack(list(animate_frames(model, source, list(driving), batch_size=3)))
    chunks = [driving[:1], driving[1:6], driving[6:]]
    as_chunks = torch.stack(list(animate_frames(model, source, iter(chunks), batch_size=4)))
    assert torch.equal(as_frames, expected)
    assert (as_chunks - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("reference", [3, 7])
def test_reference_frame_matches_forward_backward_runs(model, clip, reference: int) -> None:
    source, driving = clip
    expected = original_loop(model, source, driving, reference=reference)
    frames = torch.stack(list(animate_frames(model, source, list(driving), reference=reference, batch_size=3)))
    assert (frames - expected).abs().max() <= 1e-4


def test_best_reference_is_the_frame_posed_like_the_source(model, clip) -> None:
    source, driving = clip
    driving = driving.clone()
    driving[5] = source[0]
    batches = list(animate_batches(model, source, driving, MotionOptions(reference="best"), batch_size=3))
    assert {batch.reference for batch in batches} == {5}
    frames = torch.cat([batch.prediction for batch in batches])
    assert (frames - original_loop(model, source, driving, reference=5)).abs().max() <= 1e-4
    # Relative motion starting from the source's own pose: frame 5 is the source's reconstruction.
    assert torch.allclose(batches[1].kp_motion.value[2], model.detect_keypoints(source).value[0], atol=1e-6)


def test_find_best_frame_ignores_position_and_scale() -> None:
    generator = torch.Generator().manual_seed(0)
    source = torch.rand(1, 10, 2, generator=generator) - 0.5
    frames = torch.rand(6, 10, 2, generator=generator) - 0.5
    frames[4] = source[0] * 0.4 + torch.tensor([0.3, -0.2])  # same pose, smaller and moved
    frames[2] = source[0] + torch.randn(10, 2, generator=generator) * 0.05  # same place, other pose
    assert find_best_frame(fm.Keypoints(source), fm.Keypoints(frames)) == 4


def test_find_best_frame_skips_collinear_keypoints() -> None:
    source = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    line = torch.tensor([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0]])  # no hull: cannot be compared
    frames = torch.stack([line, source[0] * 3 + 1, line])
    assert find_best_frame(fm.Keypoints(source), fm.Keypoints(frames)) == 1
    with pytest.raises(ValueError, match="collinear"):
        find_best_frame(fm.Keypoints(line[None]), fm.Keypoints(frames))


def test_streaming_reads_at_most_one_batch_ahead(model, clip) -> None:
    source, driving = clip
    pulled: list[int] = []

    def reader():
        for index, frame in enumerate(driving):
            pulled.append(index)
            yield frame

    stream = animate_frames(model, source, reader(), batch_size=3)
    next(stream)
    assert len(pulled) == 3
    rest = list(stream)
    assert len(rest) == len(driving) - 1 and len(pulled) == len(driving)


def test_map_frames_is_lazy_sized_and_reiterable_like_its_input(model, clip) -> None:
    source, driving = clip
    seen: list[int] = []

    def darker(chunk: torch.Tensor) -> torch.Tensor:
        seen.append(len(chunk))
        return chunk * 0.5

    mapped = map_frames(driving, darker, chunk_size=3)
    assert seen == [] and frame_count(mapped) == len(driving)
    assert torch.equal(torch.cat(list(mapped)), driving * 0.5) and seen == [3, 3, 2]
    assert torch.equal(torch.cat(list(mapped)), driving * 0.5)  # a tensor can be read again
    best = list(animate_frames(model, source, map_frames(list(driving), darker), reference="best", batch_size=3))
    assert len(best) == len(driving)  # a list stays re-iterable: two passes work

    one_shot = map_frames(iter(driving), darker)
    assert iter(one_shot) is one_shot and frame_count(one_shot) is None
    with pytest.raises(ValueError, match="one-shot iterator"):
        next(animate_frames(model, source, one_shot, reference="best"))


def test_progress_counts_frames_and_cancels_promptly(model, clip) -> None:
    source, driving = clip
    calls: list[tuple[int, int | None]] = []
    list(animate_frames(model, source, driving, batch_size=3, on_progress=lambda d, t: calls.append((d, t))))
    assert calls[-1] == (len(driving), len(driving))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert {d for d, _ in calls} == set(range(len(driving) + 1))

    unknown: list[int | None] = []
    list(animate_frames(model, source, iter(driving), on_progress=lambda d, t: unknown.append(t)))
    assert set(unknown) == {None}

    pulled: list[int] = []

    def reader():
        for index, frame in enumerate(driving):
            pulled.append(index)
            yield frame

    class Interrupted(Exception):
        pass

    def cancel_after_two(done: int, total: int | None) -> None:
        if done >= 2:
            raise Interrupted

    got = []
    with pytest.raises(Interrupted):
        for frame in animate_frames(model, source, reader(), batch_size=2, on_progress=cancel_after_two):
            got.append(frame)
    assert len(got) == 1 and len(pulled) == 2  # stopped inside the first batch, nothing more read


class CountingReader:
    """A re-iterable driving video (like fomm_model.video.VideoReader) that counts the frames read."""

    def __init__(self, frames: torch.Tensor):
        self.frames = frames
        self.pulled = 0

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self):
        for frame in self.frames:
            self.pulled += 1
            yield frame


def test_best_frame_search_is_counted_in_progress(model, clip) -> None:
    source, driving = clip
    calls: list[tuple[int, int | None]] = []
    list(animate_frames(model, source, driving, reference="best", batch_size=3, on_progress=lambda d, t: calls.append((d, t))))
    total = 2 * len(driving)  # the search pass, then the frames
    assert {t for _, t in calls} == {total} and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    # one report before each search batch of 3 and one at its end, then the frames from 8 on
    assert [d for d, _ in calls[:5]] == [0, 3, 6, 8, 8]


@pytest.mark.parametrize("reference", ["best", 6])
def test_cancel_during_the_reference_pass_stops_within_one_batch(model, clip, reference) -> None:
    source, driving = clip
    reader = CountingReader(driving)

    class Interrupted(Exception):
        pass

    calls: list[int] = []

    def cancel_at_second_batch(done: int, total: int | None) -> None:
        calls.append(done)
        if len(calls) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        next(animate_frames(model, source, reader, reference=reference, batch_size=2, on_progress=cancel_at_second_batch))
    # Cancelled before the second batch of the pass: that batch was read, nothing after it.
    assert reader.pulled == 4 < len(driving)
    assert calls == ([0, 2] if reference == "best" else [0, 0])


def test_frames_are_ordinary_tensors(model, clip) -> None:
    source, driving = clip
    frame = next(animate_frames(model, source, driving))
    assert not frame.is_inference()
    frame.mul_(0.5)  # in-place edits work outside inference mode
    batch = next(animate_batches(model, source, driving, with_deformed=True))
    assert set(batch.outputs) >= {"prediction", "deformation", "occlusion_map", "mask", "deformed"}
    assert not any(t.is_inference() for t in batch.outputs.values())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_is_close_to_fp32(model, clip, precision: str) -> None:
    source, driving = clip
    reference = model.animate(source, driving)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reduced = model.animate(source, driving, precision=precision)
    slow = [w for w in caught if "emulated" in str(w.message)]
    assert bool(slow) != has_native_support(model.device, precision)
    assert reduced.dtype == torch.float32
    difference = (reduced - reference).abs()
    assert 0 < difference.mean() <= 1e-2 and difference.max() <= 0.1


def test_bad_arguments_are_explained(model, clip) -> None:
    source, driving = clip
    with pytest.raises(ValueError, match="batch_size"):
        next(animate_frames(model, source, driving, batch_size=0))
    with pytest.raises(ValueError, match="precision"):
        next(animate_frames(model, source, driving, precision="int8"))
    with pytest.raises(ValueError, match="no frames"):
        next(animate_frames(model, source, driving[:0]))
    with pytest.raises(ValueError, match="no frames"):
        next(animate_frames(model, source, [], reference="best"))
    with pytest.raises(ValueError, match="beyond the last"):
        next(animate_frames(model, source, driving, reference=8))
    with pytest.raises(ValueError, match="one-shot iterator"):
        next(animate_frames(model, source, iter(driving), reference="best"))
    with pytest.raises(ValueError, match="reference"):
        next(animate_frames(model, source, driving, reference="middle"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        next(animate_frames(model, source, [driving[0, 0]]))
    with pytest.raises(ValueError, match="one source"):
        next(animate_frames(model, driving[:2], driving))


def test_keypoint_spread_is_the_mean_distance_from_the_centroid_in_frame_sizes() -> None:
    spread_out = torch.tensor([[[-0.5, 0.0], [0.5, 0.0], [0.0, 0.5], [0.0, -0.5]]])  # 0.5 units = a quarter frame
    collapsed = torch.full((1, 4, 2), 0.3)
    spreads = fm.Keypoints(torch.cat([spread_out, collapsed + 0.01 * spread_out])).spread()
    assert spreads.shape == (2,)
    assert spreads[0].item() == pytest.approx(0.25)
    assert spreads[1].item() == pytest.approx(0.0025)


def test_keypoint_frames_are_picked_by_any_integer_and_checked() -> None:
    kp = fm.Keypoints(torch.rand(3, 4, 2), torch.rand(3, 4, 2, 2))
    for index in (1, np.int64(1), torch.tensor(1)):
        picked = kp[index]
        assert len(picked) == 1 and torch.equal(picked.value, kp.value[1:2]) and torch.equal(picked.jacobian, kp.jacobian[1:2])
    assert torch.equal(kp[-1].value, kp.value[2:]) and torch.equal(kp[-3].value, kp.value[:1])
    for outside in (3, -4, np.int64(5)):
        with pytest.raises(IndexError, match=f"keypoint frame {outside} is out of range for 3 frames"):
            kp[outside]
    assert len(kp[torch.tensor([0, 2])]) == 2 and len(kp[1:]) == 2
