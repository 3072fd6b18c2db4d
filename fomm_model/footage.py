"""Animating real footage: a region of a full-size photo, driven by a region of a video,
at the photo's own resolution.

The model only sees its trained frame size (256x256 for the published models). Around
:func:`fomm_model.pipeline.animate_batches` this module

* crops the region to animate from the source and from every driving frame (a
  :class:`~fomm_model.framing.Box`, or the whole picture) and fits it to the model size;
* renders the result either plainly (the generated frame scaled back up) or at full
  resolution: the full-resolution source region is warped with the upsampled dense flow,
  and the generated frame is used only where the model says the source cannot show the
  content (``out = visible * warped_source + (1 - visible) * generated``, ``visible`` the
  blend weight relative to the source's own at rest, see :func:`relative_visibility`: the
  occlusion map, or for a generator that blends the warped source itself its own
  ``source_weight``, with its decoded frame as ``generated``), so detail of a 1024x1024 or
  4K source survives instead of a blurry 256x256 upscale;
* pastes the region back into the full source with a feathered mask.

Frames stream one at a time; the full-resolution work is done per frame so that memory
stays bounded by one output frame, whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from torch import Tensor

from .framing import Box, FitMode, Framing, check_size, fit, paste, paste_mask, resize
from .geometry import upsample, warp_sharp
from .images import check_pixels
from .keypoints import Keypoints
from .model import FirstOrderModel
from .pipeline import AnimatedBatch, Driving, MotionOptions, ProgressCallback, animate_batches, frame_count, map_frames
from .precision import Precision


@dataclass(frozen=True)
class FootageOptions:
    """Where to animate and how to render.

    ``source_box``/``driving_box``: the region of the source image and of every driving
    frame (None: the whole picture). ``fit``: how a region is brought to the model's frame
    size (see :func:`fomm_model.framing.fit`). ``feather``: width of the blend at the pasted
    region's edges, as a fraction of its smaller side.
    """

    source_box: Box | None = None
    driving_box: Box | None = None
    fit: FitMode = "pad"
    full_resolution: bool = False
    feather: float = 0.08


def animate_footage(
    model: FirstOrderModel,
    source: Tensor,
    driving: Driving,
    motion: MotionOptions = MotionOptions(),
    options: FootageOptions = FootageOptions(),
    *,
    batch_size: int = 8,
    precision: Precision = "fp32",
    on_progress: ProgressCallback | None = None,
    on_batch: Callable[[AnimatedBatch], None] | None = None,
    with_deformed: bool = False,
) -> Iterator[Tensor]:
    """Animate a full-size ``source`` (C, H, W) with full-size driving frames; yields
    (C, H, W) frames at the source's size, in order, one at a time, on the CPU.

    ``driving`` is anything :func:`~fomm_model.pipeline.animate_frames` accepts, at its
    own size. ``on_batch`` sees every model-size batch (prediction, flow, occlusion,
    keypoints) before its frames are yielded, e.g. to write a visualisation.
    """
    if source.ndim != 3:
        raise ValueError(f"source must be one (C, H, W) image, got shape {tuple(source.shape)}")
    check_pixels(source[None], "source")
    source = source.float().cpu()
    height, width = source.shape[-2:]
    if options.source_box is None:
        check_size(height, width, "the source image")
    source_box = options.source_box or Box(0, 0, width, height)
    source_box.check_inside(height, width, "source")
    region = source_box.crop(source)
    model_source, framing = fit(region[None], model.config.frame_shape, options.fit)
    mask = paste_mask(source_box, (height, width), options.feather)
    renderer = RegionRenderer(model, region, framing, options.full_resolution)

    frames = map_frames(driving, _DrivingFraming(model.config.frame_shape, options.driving_box, options.fit), batch_size)
    progress = _FinishedFrames(on_progress, frame_count(frames))
    progress.start()
    for batch in animate_batches(
        model,
        model_source,
        frames,
        motion,
        batch_size=batch_size,
        precision=precision,
        on_progress=progress.search,
        with_deformed=with_deformed,
        count_generated=False,
    ):
        if on_batch is not None:
            on_batch(batch)
        for index in range(len(batch)):  # one frame at a time: a batch of 4K frames is large
            generated = renderer.render_batch(batch, slice(index, index + 1))[0]
            frame = paste(source, generated.clamp(0, 1), source_box, mask)
            progress.finished(batch.start + index)
            yield frame


class _FinishedFrames:
    """Progress counted in finished frames, not in frames the model has produced: each frame
    is rendered and pasted after the model's batch, which at full resolution takes far longer
    than the model (seconds a frame for a 4K source). So a callback that raises (ComfyUI's
    Cancel) stops the work within a frame. A reference search pass, reported by the pipeline,
    comes first: the frames then count after it, out of the total it set."""

    def __init__(self, callback: ProgressCallback | None, frames: int | None):
        self.callback = callback
        self.searched = 0
        self.total = frames

    def start(self) -> None:
        """Show the bar at 0 before any work (a callback that raises may stop it there)."""
        self.search(0, self.total)

    def search(self, done: int, total: int | None) -> None:
        """The pipeline's reports: with ``count_generated=False``, the reference search's only."""
        self.searched, self.total = done, total
        if self.callback is not None:
            self.callback(done, total)

    def finished(self, index: int) -> None:
        """Frame ``index`` (0-based, in driving order) is done."""
        if self.callback is not None:
            self.callback(self.searched + index + 1, self.total)


class RegionRenderer:
    """Turns the model-size outputs into frames of the source region at its own size: plainly
    (the generated frame restored to the region's size and aspect) or, with
    ``full_resolution``, by :func:`render_full_resolution` on the region itself. What a
    ``crop`` fit cut off, the model never saw: there the frames keep the region's own pixels
    rather than black."""

    def __init__(self, model: FirstOrderModel, region: Tensor, framing: Framing, full_resolution: bool):
        self.model = model
        self.framing = framing
        self.rest_weight: Tensor | None = None  # found on the first pipeline batch (render_batch)
        self.canvas: Tensor | None = None
        if full_resolution:
            th, tw = framing.target_size
            sh, sw = framing.scaled_size
            scale = max(region.shape[-2] / sh, region.shape[-1] / sw, 1.0)
            canvas, self.framing = fit(region[None], (round(th * scale), round(tw * scale)), framing.mode)  # type: ignore[arg-type]
            self.canvas = canvas.to(model.device, model.dtype)
        # (content mask, region, region at the scaled size) where a crop cut: the frames keep the region there
        self.outside: tuple[Tensor, Tensor, Tensor] | None = None
        if framing.cuts_picture():
            kept = region.float().cpu()
            self.outside = (framing.content_mask()[0], kept, resize(kept[None], self.framing.scaled_size))
        self.align_corners = model.align_corners

    def render(self, outputs: Mapping[str, Tensor], rest_weight: Tensor | None = None) -> Tensor:
        """Frames (n, C, h, w) of the region (CPU) from the model's outputs for n frames:
        ``prediction`` (n, C, H, W), ``deformation`` (n, H', W', 2), ``occlusion_map`` (or
        None), and for a generator that blends the warped source ``decoded`` and
        ``source_weight``; for full resolution also the source's :func:`rest_weight`."""
        prediction = outputs["prediction"]
        background = 0.0 if self.outside is None else self.outside[2]
        if self.canvas is None:
            frames = self.framing.restore(prediction.float().cpu(), background)
        else:
            device = self.canvas.device
            picture, weight = blend_inputs(outputs)
            frames = render_full_resolution(
                self.canvas.expand(prediction.shape[0], -1, -1, -1),
                picture.to(device),
                outputs["deformation"].to(device),
                None if weight is None else weight.to(device),
                self.align_corners,
                None if rest_weight is None else rest_weight.to(device),
            )
            frames = self.framing.restore(frames.float().cpu(), background)
        if self.outside is not None:
            content, region, _ = self.outside
            frames = content * frames + (1 - content) * region
        return frames

    def render_batch(self, batch: AnimatedBatch, frames: slice = slice(None)) -> Tensor:
        """:meth:`render` on the ``frames`` of a pipeline batch."""
        outputs = batch.outputs
        if self.canvas is not None and blend_inputs(outputs)[1] is not None and self.rest_weight is None:
            self.rest_weight = rest_weight(self.model, batch.source, batch.kp_source)
        return self.render({name: value[frames] for name, value in outputs.items()}, self.rest_weight)


def blend_inputs(outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor | None]:
    """What full-resolution rendering mixes with the warped source, and by which weight: for a
    generator that blends the warped source itself, its ``decoded`` frame and its own
    ``source_weight``; otherwise the ``prediction`` and the ``occlusion_map`` (or None)."""
    if "source_weight" in outputs:
        return outputs["decoded"], outputs["source_weight"]
    return outputs["prediction"], outputs.get("occlusion_map")


def render_full_resolution(
    image: Tensor,
    prediction: Tensor,
    deformation: Tensor,
    weight: Tensor | None,
    align_corners: bool,
    rest_weight: Tensor | None = None,
) -> Tensor:
    """Warp a high-resolution ``image`` (N, C, H, W) with a low-resolution ``deformation``
    and fill what it cannot show from the (upscaled) generated ``prediction``.

    The blend ``weight`` is what :func:`blend_inputs` names (the occlusion map, or the
    source weight of a generator that blends the warped source, whose ``decoded`` frame is
    then the ``prediction`` to pass), or with ``rest_weight`` (the source's own,
    :func:`rest_weight`) the :func:`relative_visibility`. Without a weight (models trained
    without an occlusion map) the warped image is the result.
    """
    height, width = image.shape[-2:]
    warped = warp_sharp(image, deformation, align_corners)
    if weight is None:
        return warped
    if rest_weight is not None:
        weight = relative_visibility(weight, rest_weight)
    visible = upsample(weight, (height, width), align_corners)
    return visible * warped + (1 - visible) * resize(prediction, (height, width))


def rest_weight(model: FirstOrderModel, source: Tensor, kp_source: Keypoints) -> Tensor | None:
    """The full-resolution blend weight (1, 1, h, w) of ``source`` moved to its own keypoints,
    what :func:`relative_visibility` measures against: the generator's ``source_weight`` for
    a model that blends the warped source, else the occlusion map (None for models without
    either): how far the model trusts the source at each place when nothing moves."""
    if model.generator.blends_source:
        return model.generate(source, kp_source, kp_source[:1])["source_weight"]
    return model.dense_motion(source, kp_source, kp_source[:1]).get("occlusion_map")


def relative_visibility(weight: Tensor, rest: Tensor) -> Tensor:
    """A blend ``weight`` relative to the source's at rest, clamped to [0, 1].

    The occlusion map scales the generator's features and is rarely 1, even for a still
    frame: the embedded default model's averaged 0.78 at rest. Used directly as the blend
    weight it mixes a quarter of the blurry generated frame into every pixel; what marks a
    place the source cannot show is the map falling below its rest level. A still frame
    thus gives back the source pixel for pixel, and on 40 held-out puppet videos (128x128)
    the L1 to the real frames dropped from 0.0292 to 0.0286 (``bench/full_resolution_l1.py``).
    Comparing each pixel with the rest level of the source place it is fetched from (the
    rest map warped by the flow) measured the same as this plain comparison with an earlier
    version of the model (0.0289 both), so the plain comparison is kept. A generator's own
    source weight is not 1 at rest either, and is measured against its rest level the same way.
    """
    return (weight / rest.clamp_min(1e-3)).clamp(0.0, 1.0)


@dataclass(frozen=True)
class _DrivingFraming:
    """Crop (optional) and fit driving frames (one (C, H, W) frame or an (n, C, H, W) chunk)
    to the model's frame size."""

    frame_shape: tuple[int, int]
    box: Box | None
    mode: FitMode

    def __call__(self, frame: Tensor) -> Tensor:
        frames = frame if frame.ndim == 4 else frame[None]
        check_pixels(frames, "driving")
        height, width = frames.shape[-2:]
        if self.box is not None:
            self.box.check_inside(height, width, "driving")
            frames = self.box.crop(frames)
        else:
            check_size(height, width, "the driving video")
        return fit(frames.float(), self.frame_shape, self.mode)[0]
