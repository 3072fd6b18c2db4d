"""ComfyUI's services as the nodes use them: model residency, progress, cancellation, and the
conversion between ComfyUI's IMAGE/MASK tensors and the library's (N, C, H, W) batches.

Only a few stable entry points of ComfyUI are touched (``comfy.model_management``,
``comfy.utils.ProgressBar``); they are imported where used, so importing this pack never
initialises a device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from einops import rearrange
from torch import Tensor

from fomm_model import FirstOrderModel
from fomm_model.framing import Framing, fit, resize
from fomm_model.pipeline import MappedFrames, MotionOptions, map_frames

from .options import MotionInputs
from .types import KeypointSet, LoadedModel

log = logging.getLogger("comfyui-fomm")


def use_model(model: LoadedModel) -> FirstOrderModel:
    """Have ComfyUI put the model on its device (evicting others if memory is short).

    ``force_full_load``: FOMM's networks are plain torch modules, which ComfyUI's partial
    (low-VRAM) loading cannot split; they are small enough to always load whole.
    """
    import comfy.model_management

    comfy.model_management.load_models_gpu([model.patcher], force_full_load=True)
    return model.fomm


def output_device() -> torch.device:
    """Where IMAGE/MASK outputs live (CPU unless ComfyUI runs with --gpu-only)."""
    import comfy.model_management

    return comfy.model_management.intermediate_device()


class FrameProgress:
    """The node's progress bar, advanced per frame; each update also honours Cancel.

    ComfyUI's cancel only sets a flag: work stops where a node polls it, so the nodes poll it
    before every chunk of frames and at every progress report.
    """

    def __init__(self, total: int):
        import comfy.utils

        self.total = total
        self.bar = comfy.utils.ProgressBar(total)

    def check_cancelled(self) -> None:
        """Raise ComfyUI's interruption if the user pressed Cancel."""
        import comfy.model_management

        comfy.model_management.throw_exception_if_processing_interrupted()

    def update(self, done: int, total: int | None = None) -> None:
        """Honour Cancel, then show ``done`` of ``total`` (which may change: a reference
        search pass doubles the work; see ``fomm_model.pipeline.animate_frames``)."""
        self.check_cancelled()
        if total is not None:
            self.total = total
        self.bar.update_absolute(done, self.total)


def chunks(total: int, batch_size: int, progress: FrameProgress) -> Iterator[slice]:
    """Slices of at most ``batch_size`` frames; progress advances after each is consumed."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for start in range(0, total, batch_size):
        progress.check_cancelled()
        stop = min(start + batch_size, total)
        yield slice(start, stop)
        progress.update(stop)


# ------------------------------------------------------------------------------ images
def image_batch(image: Tensor, name: str) -> Tensor:
    """ComfyUI IMAGE [B, H, W, C] -> (B, 3, H, W) float32 in [0, 1] on the CPU.

    RGBA drops its alpha (FOMM sees colour only); grayscale (C = 1, or 2 with alpha) is
    repeated to RGB; an fp16 IMAGE (``--fp16-intermediates``) becomes float32.
    """
    if not isinstance(image, Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"{name} must be an IMAGE batch [frames, height, width, channels], got {shape}")
    if image.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch: connect at least one image or video frame")
    channels = image.shape[-1]
    if channels in (3, 4):
        rgb = image[..., :3]
    elif channels in (1, 2):
        rgb = image[..., :1].expand(-1, -1, -1, 3)
    else:
        raise ValueError(f"{name} has {channels} channels per pixel; expected RGB (3), RGBA (4) or grayscale (1)")
    return rearrange(rgb.detach().to("cpu", torch.float32), "b h w c -> b c h w").clamp(0, 1)


def driving_chunks(images: Tensor, batch_size: int) -> MappedFrames:
    """An IMAGE batch read as (n <= batch_size, 3, H, W) chunks at their own size, as the
    library consumes them (it fits them to the model): the whole video is never held twice
    (once as ComfyUI's IMAGE, once converted). Re-iterable and sized, so a reference frame
    other than the first (read in a second pass) works."""
    return map_frames(images, lambda chunk: image_batch(chunk, "driving"), batch_size)


@dataclass(frozen=True)
class DrivenRun:
    """What FOMM Animate and FOMM Save Motion both start from, checked before any work."""

    fomm: FirstOrderModel  # on ComfyUI's device
    source: Tensor  # (1, 3, H, W): the first image of the source batch, at its own size
    driving: MappedFrames  # the driving IMAGE batch as (n, 3, H, W) chunks, converted as consumed
    motion: MotionOptions
    progress: FrameProgress


def prepare_run(model: LoadedModel, source: Tensor, driving: Tensor, motion: MotionInputs, batch_size: int) -> DrivenRun:
    """Check the source, the driving batch and the motion inputs, load the model and start
    the progress bar. The driving chunks stay at their size: the library fits them."""
    source_image = first_image(source, "source")
    image_batch(driving[:1], "driving")  # validates the batch before any work
    options = motion.options(driving.shape[0])
    return DrivenRun(
        fomm=use_model(model),
        source=source_image,
        driving=driving_chunks(driving, batch_size),
        motion=options,
        progress=FrameProgress(driving.shape[0]),
    )


def first_image(image: Tensor, name: str) -> Tensor:
    """The first image of an IMAGE batch as (1, 3, H, W): a still source, as in FOMM."""
    return image_batch(image[:1], name)


def to_comfy_image(frames: Tensor) -> Tensor:
    """(N, 3, H, W) -> ComfyUI IMAGE [N, H, W, 3] float32 on the output device."""
    return rearrange(frames.detach().float().clamp(0, 1), "n c h w -> n h w c").to(output_device()).contiguous()


def collect_images(frames: Iterable[Tensor], count: int) -> Tensor:
    """Frames (n, 3, H, W) as they come -> one IMAGE [count, H, W, 3], filled in place: the
    result is never held twice (once in pieces, once joined)."""
    (out,) = collect_image_sets(((chunk,) for chunk in frames), count)
    return out


def collect_image_sets(chunks: Iterable[tuple[Tensor, ...]], count: int) -> tuple[Tensor, ...]:
    """:func:`collect_images` for nodes with several IMAGE outputs: each chunk gives the next
    frames (n, 3, H, W) of every output, in order."""
    outs: list[Tensor] = []
    done = 0
    for pictures in chunks:
        images = [to_comfy_image(picture) for picture in pictures]
        if not outs:
            outs = [torch.empty((count, *image.shape[1:]), dtype=image.dtype, device=image.device) for image in images]
        for out, image in zip(outs, images):
            out[done : done + len(image)] = image
        done += len(images[0])
    if not outs or done != count:
        raise RuntimeError(f"expected {count} frames, got {done}")
    return tuple(outs)


def to_comfy_mask(maps: Tensor) -> Tensor:
    """(N, 1, H, W) -> ComfyUI MASK [N, H, W] float32 on the output device."""
    return maps.detach().float().clamp(0, 1)[:, 0].to(output_device()).contiguous()


SAME_SOURCE_HINT = (
    "connect the same source image to every step (after FOMM Load Motion: its source output)"
)


def fit_like(images: Tensor, framing: Framing, name: str, hint: str = SAME_SOURCE_HINT) -> Tensor:
    """Fit images to the model exactly as an earlier step fitted the same picture."""
    check_framed(images, framing, name, hint)
    fitted, _ = fit(images, framing.target_size, framing.mode)  # type: ignore[arg-type]
    return fitted


def check_framed(images: Tensor, framing: Framing, name: str, hint: str = SAME_SOURCE_HINT) -> None:
    """Images must have the size ``framing`` was made for: keypoints or flows computed for one
    image do not describe another. ``hint`` tells the user what to connect instead."""
    size = tuple(images.shape[-2:])
    if size != tuple(framing.input_size):
        (h, w), (eh, ew) = size, framing.input_size
        raise ValueError(
            f"{name} is {w}x{h} pixels but the keypoints/flow it is used with were computed on a {ew}x{eh} "
            f"image: {hint}"
        )


def maps_to_input(maps: Tensor, framing: Framing, outside: float = 0.0) -> Tensor:
    """Maps (N, C, h, w) at the dense-motion resolution or the model's frame size -> the size
    and aspect of ``framing``'s input; ``outside``: the value where a crop fit cut the picture
    (the model saw nothing there)."""
    return framing.restore(resize(maps.float(), framing.target_size), outside).clamp(0, 1)


def check_same_model(model: LoadedModel, produced_by: str | None, what: str) -> None:
    """Refuse data made by another model: keypoints of one model mean nothing to another."""
    if produced_by is not None and produced_by != model.key:
        raise ValueError(
            f"the {what} were computed with a different FOMM model than the one connected here "
            f"({model.name}); connect the same FOMM Load Model node to every step"
        )


def check_keypoints_fit(model: LoadedModel, keypoints: KeypointSet, what: str) -> None:
    """Refuse keypoints made by another model. Those read from a motion file name no model,
    so at least their keypoint count must be this model's. Their frame size may differ on
    purpose (``fomm motion --size``): they run at the size they were computed at, with a
    note in the log, since a file from another model cannot be told from it."""
    check_same_model(model, keypoints.model_key, what)
    (height, width), count = keypoints.framing.target_size, keypoints.keypoints.value.shape[1]
    num_kp = model.fomm.config.num_kp
    if count != num_kp:
        raise ValueError(
            f"the {what} have {count} keypoints but {model.name} has {num_kp}: connect the model they were made with"
        )
    if (height, width) != model.frame_size:
        log.warning(
            "the %s were computed at %dx%d but %s was trained at %s; running at %dx%d as they were (if they come "
            "from another model, connect that one)",
            what, height, width, model.name, "x".join(map(str, model.frame_size)), height, width,
        )  # fmt: skip
