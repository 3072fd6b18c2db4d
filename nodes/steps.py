"""The steps of FOMM as separate nodes: keypoints -> motion -> dense flow -> frames.

Wired in order they give exactly what FOMM Animate gives in one node (the same library calls),
with every intermediate available to preview, edit or reuse.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from comfy_api.latest import io
from einops import rearrange
from torch import Tensor

from fomm_model import Keypoints, normalize_keypoints
from fomm_model.footage import RegionRenderer, rest_weight
from fomm_model.framing import Framing, check_size, resize
from fomm_model.framing import fit as fit_frames

from .options import MODEL_TOOLTIP, MotionInputs, batch_size_input, fit_input, full_resolution_input, motion_inputs
from .runtime import (
    FrameProgress,
    check_keypoints_fit,
    check_same_model,
    chunks,
    collect_images,
    first_image,
    fit_like,
    image_batch,
    maps_to_input,
    to_comfy_mask,
    use_model,
)
from .types import FlowData, FommFlow, FommKeypoints, FommModel, FommMotion, KeypointSet, LoadedModel, MotionData


class DetectKeypoints(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FOMM_DetectKeypoints",
            display_name="FOMM Detect Keypoints",
            category="FOMM/steps",
            description="Find the model's keypoints (positions and local affine motion, the 'Jacobians') in every "
            "image of a batch: one image for the source, all frames for a driving video.",
            inputs=[
                FommModel.Input("model", tooltip=MODEL_TOOLTIP),
                io.Image.Input("images", tooltip="An image or a batch of video frames, any size."),
                fit_input(),
                batch_size_input(),
            ],
            outputs=[FommKeypoints.Output(display_name="keypoints", tooltip="Keypoints of every frame.")],
        )

    @classmethod
    def execute(cls, model: LoadedModel, images: Tensor, fit: str, batch_size: int) -> io.NodeOutput:
        image_batch(images[:1], "images")  # validates the batch before any work
        check_size(images.shape[1], images.shape[2], "an image")  # as FOMM Animate refuses it
        fomm = use_model(model)
        progress = FrameProgress(images.shape[0])
        found: list[Keypoints] = []
        framing = None
        for part in chunks(images.shape[0], batch_size, progress):
            fitted, framing = fit_frames(image_batch(images[part], "images"), model.frame_size, fit)
            found.append(fomm.detect_keypoints(fitted).to("cpu", torch.float32))
        assert framing is not None
        return io.NodeOutput(KeypointSet(Keypoints.cat(found), framing, model.key))


class EstimateMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FOMM_EstimateMotion",
            display_name="FOMM Estimate Motion",
            category="FOMM/steps",
            description="Transfer the driving video's keypoint motion onto the source's keypoints, one pose per "
            "driving frame.",
            inputs=[
                FommKeypoints.Input("source_keypoints", tooltip="Keypoints of the source image (its first frame is used)."),
                FommKeypoints.Input("driving_keypoints", tooltip="Keypoints of the driving frames."),
                *motion_inputs(),
            ],
            outputs=[
                FommMotion.Output(display_name="motion", tooltip="Source keypoints plus where they move in each frame."),
                FommKeypoints.Output(
                    display_name="moved_keypoints",
                    tooltip="The moved source keypoints per frame, to draw on the source image.",
                ),
            ],
        )

    @classmethod
    def execute(
        cls,
        source_keypoints: KeypointSet,
        driving_keypoints: KeypointSet,
        relative: bool,
        relative_jacobian: bool,
        adapt_scale: bool,
        reference: str,
        reference_index: int,
    ) -> io.NodeOutput:
        if None not in (source_keypoints.model_key, driving_keypoints.model_key) and (
            source_keypoints.model_key != driving_keypoints.model_key
        ):
            raise ValueError(
                "the source and driving keypoints were detected by different FOMM models: "
                "connect the same FOMM Load Model node to both FOMM Detect Keypoints nodes"
            )
        for name, given in (("source_keypoints", source_keypoints), ("driving_keypoints", driving_keypoints)):
            if given.moved:
                raise ValueError(
                    f"{name} are moved keypoints (FOMM Estimate Motion's moved_keypoints output, for drawing): "
                    "connect FOMM Detect Keypoints' keypoints here"
                )
        kp_source = source_keypoints.keypoints[0]
        kp_driving = driving_keypoints.keypoints
        if kp_source.num_kp != kp_driving.num_kp:
            raise ValueError(
                f"the source has {kp_source.num_kp} keypoints and the driving frames {kp_driving.num_kp}: "
                "they were detected by different models"
            )
        ref = MotionInputs(relative, relative_jacobian, adapt_scale, reference, reference_index).reference_frame(
            kp_source, kp_driving
        )
        moved = normalize_keypoints(
            kp_source, kp_driving, kp_driving[ref],
            relative=relative, relative_jacobian=relative_jacobian, adapt_scale=adapt_scale,
        )
        source = KeypointSet(kp_source, source_keypoints.framing, source_keypoints.model_key)
        moved_set = KeypointSet(moved, source_keypoints.framing, source_keypoints.model_key, moved=True)
        return io.NodeOutput(MotionData(source=source, driving=moved_set, reference_frame=ref), moved_set)


class DenseMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FOMM_DenseMotion",
            display_name="FOMM Dense Motion",
            category="FOMM/steps",
            description="Turn the keypoint motion into a dense flow over the whole source image, which parts of "
            "the source stay visible (occlusion), and which keypoint moves each pixel (masks).",
            inputs=[
                FommModel.Input("model", tooltip=MODEL_TOOLTIP),
                io.Image.Input("source", tooltip="The source image the source keypoints were detected on."),
                FommMotion.Input("motion", tooltip="From FOMM Estimate Motion or FOMM Load Motion."),
                batch_size_input(),
            ],
            outputs=[
                FommFlow.Output(display_name="flow", tooltip="Dense backward flow per frame, for FOMM Generate."),
                io.Mask.Output(
                    display_name="occlusion",
                    tooltip="Per frame, at the source's aspect and the model's resolution (e.g. 256x144 for a "
                    "1920x1080 source and a 256x256 model; scale it up where you need the source's size): 1 where "
                    "the source stays visible, 0 where the generator has to invent content (all 1 for models "
                    "without an occlusion map).",
                ),
                io.Mask.Output(
                    display_name="keypoint_masks",
                    tooltip="K+1 masks per frame (frame-major: frame t, region k is t*(K+1)+k): region 0 is the "
                    "still background, region k follows keypoint k. At the source's aspect, as occlusion, and at "
                    "the dense motion network's resolution, where the model computes them (a quarter of the "
                    "model's: 64x36 for a 1920x1080 source and a 256x256 published model): scale them up where "
                    "you use them.",
                ),
            ],
        )

    @classmethod
    def execute(cls, model: LoadedModel, source: Tensor, motion: MotionData, batch_size: int) -> io.NodeOutput:
        check_keypoints_fit(model, motion.source, "motion keypoints")
        framing = motion.source.framing
        fitted = fit_like(first_image(source, "source"), framing, "the source image")
        fomm = use_model(model)
        kp_source = motion.source.keypoints
        kp_driving = motion.driving.keypoints
        progress = FrameProgress(len(kp_driving))
        parts: list[dict[str, Tensor]] = []
        for part in chunks(len(kp_driving), batch_size, progress):
            out = fomm.dense_motion(fitted, kp_source, kp_driving[part])
            parts.append({k: v.to("cpu", torch.float32) for k, v in out.items() if k != "sparse_deformed"})
        deformation = torch.cat([p["deformation"] for p in parts])
        masks = torch.cat([p["mask"] for p in parts])
        occlusion = torch.cat([p["occlusion_map"] for p in parts]) if "occlusion_map" in parts[0] else None
        rest = rest_weight(fomm, fitted, kp_source)
        if rest is not None:
            rest = rest.to("cpu", torch.float32)
        flow = FlowData(deformation, occlusion, masks, framing, model.key, rest)
        # At the source's aspect but the model's resolution: ComfyUI keeps every output in its cache, used or
        # not, and at the source's size this mask would hold 1 GB for 120 frames of 1920x1080.
        compact = framing.at_model_scale()
        if occlusion is None:
            visible = torch.ones(len(flow), 1, *compact.input_size)
        else:
            visible = maps_to_input(occlusion, compact, outside=1.0)  # a crop's borders keep the source
        regions = _regions_at_source_aspect(masks, compact, fomm.config.generator.dense_motion.scale_factor, batch_size)
        return io.NodeOutput(flow, to_comfy_mask(visible), to_comfy_mask(rearrange(regions, "n k h w -> (n k) 1 h w")))


class Generate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FOMM_Generate",
            display_name="FOMM Generate",
            category="FOMM/steps",
            description="Render the animated frames: warp the source image's features along the flow, hide what "
            "is occluded, decode. Frames come back at the source's size and aspect.",
            inputs=[
                FommModel.Input("model", tooltip=MODEL_TOOLTIP),
                io.Image.Input("source", tooltip="The source image the flow was computed for."),
                FommFlow.Input("flow", tooltip="From FOMM Dense Motion."),
                io.Mask.Input(
                    "occlusion",
                    optional=True,
                    tooltip="Optional replacement occlusion (1 = source visible), at the size FOMM Dense Motion "
                    "gives it or at the source's size, one per frame or one for all. Unconnected: the flow's own occlusion is used. With full_resolution the "
                    "blend weight is it divided by the source's occlusion at rest (clamped to 1), as for the flow's own; "
                    "a model that blends the warped source itself, like the embedded default, uses its generator's "
                    "own weight against that weight at rest.",
                ),
                full_resolution_input(),
                batch_size_input(),
            ],
            outputs=[io.Image.Output(display_name="frames", tooltip="The animated frames, one per driving frame.")],
        )

    @classmethod
    def execute(
        cls,
        model: LoadedModel,
        source: Tensor,
        flow: FlowData,
        full_resolution: bool,
        batch_size: int,
        occlusion: Tensor | None = None,
    ) -> io.NodeOutput:
        check_same_model(model, flow.model_key, "flow")
        image = first_image(source, "source")
        fitted = fit_like(image, flow.framing, "the source image")
        visibility = flow.occlusion if occlusion is None else _occlusion_for_flow(occlusion, flow)
        fomm = use_model(model)
        encoded = fomm.encode_source(fitted)  # once, not per chunk
        renderer = RegionRenderer(fomm, image[0], flow.framing, full_resolution)
        progress = FrameProgress(len(flow))

        def frames() -> Iterator[Tensor]:
            for part in chunks(len(flow), batch_size, progress):
                maps = None if visibility is None else visibility[part] if len(visibility) > 1 else visibility
                deformation = flow.deformation[part]
                generated = fomm.render_outputs(encoded, deformation, maps)
                for i in range(len(deformation)):  # one frame at a time: full-resolution frames are large
                    frame_maps = None if maps is None else maps[i : i + 1] if len(maps) > 1 else maps
                    outputs = {name: value[i : i + 1] for name, value in generated.items()}
                    outputs |= {"deformation": deformation[i : i + 1]}
                    if frame_maps is not None:
                        outputs["occlusion_map"] = frame_maps
                    frame = renderer.render(outputs, flow.rest_weight)
                    progress.update(part.start + i + 1)  # per frame (and Cancel): at full resolution each takes seconds
                    yield frame

        return io.NodeOutput(collect_images(frames(), len(flow)))


def _regions_at_source_aspect(masks: Tensor, compact: Framing, scale: float, batch_size: int) -> Tensor:
    """The dense motion network's K+1 region masks (n, K+1, h, w), in the model's padded or
    cropped frame, -> the source's aspect at the network's own resolution (the detail they
    have; ComfyUI caches every output, and K+1 maps a frame at the model's resolution would be
    many times the occlusion's size). Where a crop cut the picture: the still background."""
    height, width = compact.input_size
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    out = torch.empty(len(masks), masks.shape[1], *size)
    for start in range(0, len(masks), batch_size):  # at the model's resolution on the way: a few frames at a time
        part = masks[start : start + batch_size]
        restored = torch.cat(
            [maps_to_input(part[:, :1], compact, outside=1.0), maps_to_input(part[:, 1:], compact, outside=0.0)], dim=1
        )
        restored = F.interpolate(restored, size=size, mode="area")
        out[start : start + batch_size] = restored / restored.sum(dim=1, keepdim=True).clamp_min(1e-6)  # shares again
    return out


def _occlusion_for_flow(occlusion: Tensor, flow: FlowData) -> Tensor:
    """A user's occlusion MASK (at FOMM Dense Motion's size or the source's) -> the flow's resolution and framing."""
    if occlusion.ndim == 2:
        occlusion = occlusion[None]
    if occlusion.ndim != 3 or occlusion.shape[0] not in (1, len(flow)):
        raise ValueError(
            f"occlusion must be one mask or one per frame ({len(flow)}), got a batch of shape {tuple(occlusion.shape)}"
        )
    maps = occlusion.detach().to("cpu", torch.float32)[:, None]
    if not torch.isfinite(maps).all():
        raise ValueError("occlusion has NaN or infinite values: give a mask with values from 0 (occluded) to 1 (visible)")
    compact = flow.framing.at_model_scale()
    framing = compact if tuple(maps.shape[-2:]) == compact.input_size else flow.framing
    (height, width), (ch, cw) = flow.framing.input_size, compact.input_size
    hint = f"give the mask at the size FOMM Dense Motion gives it ({cw}x{ch}) or at the source image's ({width}x{height})"
    fitted = fit_like(maps, framing, "the occlusion mask", hint=hint)
    return resize(fitted, tuple(flow.deformation.shape[1:3])).clamp(0, 1)
