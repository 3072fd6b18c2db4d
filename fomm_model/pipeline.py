"""Streaming animation: one source image, any number of driving frames, constant memory.

The source is encoded once (keypoints, generator features, the dense motion network's
downscaled copy); driving frames are read from a tensor or any iterable, grouped into
batches, and each batch goes through the keypoint detector and the generator under
``torch.inference_mode``. Frames come out in order as soon as their batch is done, so
memory does not grow with the number of frames. This is the one animation loop of the
toolkit: ``model.animate``, the ``fomm animate`` command and the ComfyUI nodes all use it.

Reference frame (where the relative motion starts): ``"first"``, a frame index, or
``"best"`` (:func:`fomm_model.keypoints.find_best_frame`). The original demo animates
forwards and backwards from a later reference frame; every frame's motion there is
measured against the reference frame alone, so producing the frames in their natural
order gives the same result.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal, Union

import torch
from torch import Tensor

from .keypoints import Keypoints, find_best_frame, normalize_keypoints
from .precision import Precision, check_precision, warn_if_slow

if TYPE_CHECKING:
    from .model import FirstOrderModel

Reference = Union[Literal["first", "best"], int]
ProgressCallback = Callable[[int, Union[int, None]], None]
Driving = Union[Tensor, Iterable[Tensor]]
NO_FRAMES = "the driving video has no frames"


@dataclass(frozen=True)
class MotionOptions:
    """How driving motion is transferred to the source (the original demo's flags)."""

    relative: bool = True
    relative_jacobian: bool = True
    adapt_scale: bool = True
    reference: Reference = "first"


@dataclass(frozen=True)
class AnimatedBatch:
    """One batch of generated frames with the intermediates that produced them.

    ``outputs`` holds the generator's ``prediction`` (n, C, H, W), ``deformation``
    (n, h, w, 2), ``mask``, ``sparse_deformed``, ``occlusion_map`` (when the model has
    one) and ``deformed`` (when asked for). All tensors are ordinary (not inference)
    tensors on the model's device.
    """

    start: int  # index of the batch's first frame in the driving sequence
    reference: int  # index of the reference driving frame (0 in absolute mode)
    source: Tensor  # (1, C, H, W) the source image
    driving: Tensor  # (n, C, H, W) the driving frames
    kp_source: Keypoints
    kp_driving: Keypoints
    kp_motion: Keypoints  # the keypoints the source was moved to
    outputs: dict[str, Tensor]

    @property
    def prediction(self) -> Tensor:
        return self.outputs["prediction"]

    def __len__(self) -> int:
        return self.driving.shape[0]


def animate_frames(
    model: FirstOrderModel,
    source: Tensor,
    driving: Driving,
    *,
    relative: bool = True,
    relative_jacobian: bool = True,
    adapt_scale: bool = True,
    reference: Reference = "first",
    batch_size: int = 8,
    precision: Precision = "fp32",
    on_progress: ProgressCallback | None = None,
) -> Iterator[Tensor]:
    """Animate ``source`` with ``driving``; yields the frames one by one, in order, as (C, H, W).

    ``source``: (C, H, W) or (1, C, H, W) float in [0, 1]. ``driving``: a (T, C, H, W)
    tensor, or any iterable of (C, H, W) frames or (n, C, H, W) chunks (a list, a video
    reader...). ``reference="best"`` or an index other than 0 reads ``driving`` twice, so
    it must then be a tensor or re-iterable (not a one-shot iterator). ``precision``:
    "fp32", or "bf16"/"fp16" for the decoder (see :mod:`fomm_model.precision`).

    ``on_progress(done, total)`` is called before each batch of work starts (a
    cancellation point: raise from it to stop) and once per finished frame; ``total`` is
    None when the length of ``driving`` is unknown. The count is in frames: one step per
    generated frame, plus, with ``reference="best"``, one per frame of the search pass
    that runs first (``total`` is then twice the frame count, and the search is its first
    half). Frames are in the model's dtype, on its device.
    """
    progress = _Progress(on_progress or _ignore_progress, frame_count(driving))
    stream = _stream(
        model,
        source,
        driving,
        MotionOptions(relative, relative_jacobian, adapt_scale, reference),
        batch_size=batch_size,
        precision=precision,
        with_deformed=False,
        progress=progress,
    )
    for batch in stream:
        for index, frame in enumerate(batch.prediction):
            progress.generated(batch.start + index + 1)
            yield frame


def animate_batches(
    model: FirstOrderModel,
    source: Tensor,
    driving: Driving,
    motion: MotionOptions = MotionOptions(),
    *,
    batch_size: int = 8,
    precision: Precision = "fp32",
    on_progress: ProgressCallback | None = None,
    with_deformed: bool = False,
    count_generated: bool = True,
) -> Iterator[AnimatedBatch]:
    """:func:`animate_frames` one batch at a time, with keypoints and motion intermediates
    (for full-resolution output and visualisation). ``on_progress`` is called as in
    :func:`animate_frames`, for each frame of a batch before the batch is yielded; with
    ``count_generated=False`` only for the reference search, for a caller that does more
    with each frame and counts the frames it finishes itself."""
    progress = _Progress(on_progress or _ignore_progress, frame_count(driving), count_generated)
    for batch in _stream(
        model,
        source,
        driving,
        motion,
        batch_size=batch_size,
        precision=precision,
        with_deformed=with_deformed,
        progress=progress,
    ):
        for index in range(len(batch)):
            progress.generated(batch.start + index + 1)
        yield batch


def _stream(
    model: FirstOrderModel,
    source: Tensor,
    driving: Driving,
    motion: MotionOptions,
    *,
    batch_size: int,
    precision: Precision,
    with_deformed: bool,
    progress: _Progress,
) -> Iterator[AnimatedBatch]:
    check_precision(precision)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if source.ndim == 3:
        source = source.unsqueeze(0)
    model.check_images(source, "source")
    if source.shape[0] != 1:
        raise ValueError(f"animate one source image at a time (1, C, H, W), got {source.shape[0]}")
    warn_if_slow(model.device, precision)

    with torch.inference_mode():
        encoded = model.encode_source(source)
    reference, kp_reference, kp_all = _resolve_reference(model, encoded.keypoints, driving, motion, batch_size, progress)
    source_image = _ordinary(encoded.image)
    kp_source = _ordinary_keypoints(encoded.keypoints)

    done = 0
    for frames in batches(driving, batch_size):
        progress.generated(done)
        model.check_images(frames, "driving")
        with torch.inference_mode():
            frames = frames.to(model.device, model.dtype)
            kp_driving = (
                model.kp_detector(frames) if kp_all is None else kp_all[done : done + len(frames)].to(model.device)
            )
            if kp_reference is None:  # reference "first": the first batch holds it
                kp_reference = kp_driving[0]
            kp_motion = normalize_keypoints(
                encoded.keypoints,
                kp_driving,
                kp_reference,
                relative=motion.relative,
                relative_jacobian=motion.relative_jacobian,
                adapt_scale=motion.adapt_scale,
            )
            outputs = model.generate_encoded(encoded, kp_motion, precision=precision, with_deformed=with_deformed)
        yield AnimatedBatch(
            start=done,
            reference=reference,
            source=source_image,
            driving=_ordinary(frames),
            kp_source=kp_source,
            kp_driving=_ordinary_keypoints(kp_driving),
            kp_motion=_ordinary_keypoints(kp_motion),
            outputs={key: _ordinary(value) for key, value in outputs.items()},
        )
        done += len(frames)
    if done == 0:
        raise ValueError(NO_FRAMES)


def batches(driving: Driving, batch_size: int) -> Iterator[Tensor]:
    """Regroup a (T, C, H, W) tensor or an iterable of frames/chunks into (n <= batch_size, C, H, W)."""
    if isinstance(driving, Tensor):
        if driving.ndim != 4:
            raise ValueError(f"driving frames must be (T, C, H, W), got shape {tuple(driving.shape)}")
        if len(driving):
            yield from driving.split(batch_size)
        return
    pending: list[Tensor] = []
    count = 0
    for item in driving:
        if not isinstance(item, Tensor) or item.ndim not in (3, 4):
            shape = tuple(item.shape) if isinstance(item, Tensor) else type(item).__name__
            raise ValueError(f"driving frames must be (C, H, W) or (n, C, H, W) tensors, got {shape}")
        chunk = item.unsqueeze(0) if item.ndim == 3 else item
        pending.append(chunk)
        count += chunk.shape[0]
        while count >= batch_size:
            merged = torch.cat(pending)
            yield merged[:batch_size]
            rest = merged[batch_size:]
            pending, count = ([rest] if len(rest) else []), len(rest)
    if count:
        yield torch.cat(pending)


def map_frames(driving: Driving, function: Callable[[Tensor], Tensor], chunk_size: int = 1) -> MappedFrames:
    """``driving`` with ``function`` applied to each frame or chunk as it is read (fitting
    frames to the model, cropping a region, converting a ComfyUI IMAGE batch...).

    Lazy: nothing is read until the result is iterated, and only one chunk is held at a
    time. A tensor is cut into chunks of ``chunk_size`` frames along its first dimension;
    an iterable's items are passed on as they come. The result states the frame count of
    ``driving`` (:func:`frame_count`) and is re-iterable exactly when ``driving`` is, so
    the pipeline's two-pass references ("best", an index) still refuse a one-shot input.
    """
    return MappedFrames(driving, function, chunk_size)


class MappedFrames:
    """What :func:`map_frames` returns: an iterable of mapped chunks with a length."""

    def __init__(self, driving: Driving, function: Callable[[Tensor], Tensor], chunk_size: int = 1):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.driving = driving
        self.function = function
        self.chunk_size = chunk_size
        self._one_shot = not isinstance(driving, Tensor) and iter(driving) is driving

    def __iter__(self) -> Iterator[Tensor]:
        if self._one_shot:
            return self
        items = self.driving.split(self.chunk_size) if isinstance(self.driving, Tensor) else self.driving
        return (self.function(item) for item in items)

    def __next__(self) -> Tensor:
        return self.function(next(self.driving))  # type: ignore[call-overload]

    def __len__(self) -> int:
        count = frame_count(self.driving)
        if count is None:
            raise TypeError("the driving frames do not state their count")
        return count


def frame_count(driving: Driving) -> int | None:
    """Number of driving frames when it can be known without reading them, else None."""
    if isinstance(driving, Tensor):
        return driving.shape[0] if driving.ndim == 4 else None
    if isinstance(driving, Sequence) and all(isinstance(item, Tensor) for item in driving):
        return sum(1 if item.ndim == 3 else item.shape[0] for item in driving)
    try:
        return len(driving)  # type: ignore[arg-type]
    except TypeError:
        return None


def check_reference(reference: Reference) -> None:
    """Refuse anything but "first", "best" or a frame index >= 0."""
    if reference in ("first", "best"):
        return
    if isinstance(reference, bool) or not isinstance(reference, int) or reference < 0:
        raise ValueError(f'reference must be "first", "best" or a frame index >= 0, got {reference!r}')


def reference_frame(reference: Reference, kp_source: Keypoints, kp_driving: Keypoints) -> int:
    """The index of the reference frame among driving keypoints that are all known already
    (the step-by-step nodes have them in memory): 0 for "first", the frame posed most like
    the source for "best" (:func:`~fomm_model.keypoints.find_best_frame`), or the index,
    checked against the number of frames. The streaming pipeline resolves the reference
    itself, with the same rules, reading the driving frames as it goes."""
    check_reference(reference)
    if len(kp_driving) == 0:
        raise ValueError(NO_FRAMES)
    if reference == "first":
        return 0
    if reference == "best":
        return find_best_frame(kp_source, kp_driving)
    if reference >= len(kp_driving):
        raise _beyond(reference, len(kp_driving))
    return int(reference)


def _beyond(index: int, count: int) -> ValueError:
    return ValueError(f"reference frame {index} is beyond the last driving frame ({count - 1})")


class _Progress:
    """Counts the pipeline's passes over the driving frames for ``on_progress``: the
    optional search pass of ``reference="best"`` first, then the generated frames."""

    def __init__(self, callback: ProgressCallback, frames: int | None, count_generated: bool = True):
        self.callback = callback
        self.frames = frames
        self.count_generated = count_generated  # False: the caller counts the frames it finishes
        self.passes = 1
        self.searched = 0  # frames counted by the search pass

    @property
    def total(self) -> int | None:
        return None if self.frames is None else self.frames * self.passes

    def start_search(self) -> None:
        self.passes = 2

    def search(self, done: int) -> None:
        self.searched = done
        self.callback(done, self.total)

    def generated(self, done: int) -> None:
        if self.count_generated:
            self.callback(self.searched + done, self.total)


def _resolve_reference(
    model: FirstOrderModel,
    kp_source: Keypoints,
    driving: Driving,
    motion: MotionOptions,
    batch_size: int,
    progress: _Progress,
) -> tuple[int, Keypoints | None, Keypoints | None]:
    """(reference index, its keypoints or None when the first batch gives them, keypoints of
    every frame when a search pass computed them). Every batch read here is a progress and
    cancellation point: the search for "best" runs the keypoint detector over the whole
    video, and even skipping to an index decodes every frame before it."""
    reference = motion.reference
    if not motion.relative or reference in ("first", 0):
        return 0, None, None
    check_reference(reference)
    if not isinstance(driving, Tensor) and iter(driving) is driving:
        raise ValueError(
            f"reference={reference!r} reads the driving frames twice: pass a tensor, a list or a "
            "re-iterable reader (fomm_model.video.read_video), not a one-shot iterator"
        )
    if reference == "best":
        progress.start_search()
        found: list[Keypoints] = []
        searched = 0
        for frames in batches(driving, batch_size):
            progress.search(searched)
            with torch.inference_mode():
                found.append(model.detect_keypoints(frames))
            searched += len(frames)
        if not found:
            raise ValueError(NO_FRAMES)
        progress.search(searched)
        kp_all = Keypoints.cat(found)
        best = reference_frame("best", kp_source, kp_all)
        return best, kp_all[best], kp_all
    known = frame_count(driving)
    if known and reference >= known:  # say so before reading the video
        raise _beyond(reference, known)
    seen = 0
    for frames in batches(driving, batch_size):
        progress.generated(0)
        if reference < seen + len(frames):
            with torch.inference_mode():
                return reference, model.detect_keypoints(frames[reference - seen : reference - seen + 1]), None
        seen += len(frames)
    raise _beyond(reference, seen) if seen else ValueError(NO_FRAMES)


def _ignore_progress(done: int, total: int | None) -> None:
    pass


def _ordinary(tensor: Tensor) -> Tensor:
    """An inference-mode tensor as an ordinary one, so callers may edit it in place."""
    return tensor.clone() if tensor.is_inference() else tensor


def _ordinary_keypoints(kp: Keypoints) -> Keypoints:
    return Keypoints(_ordinary(kp.value), None if kp.jacobian is None else _ordinary(kp.jacobian))
