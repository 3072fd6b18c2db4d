"""Pictures of the intermediates: keypoints on frames, the flow, occlusion and keypoint regions.

The drawing is ``fomm_model.visualize``'s; these nodes only bring the pictures (or, for the
keypoints, the points, drawn on the images themselves) back to the input image's size and
aspect through the same framing the data was computed with, so they line up with the frames
they describe.
"""

from __future__ import annotations

from typing import Iterator

import torch
from comfy_api.latest import io
from torch import Tensor

from fomm_model.keypoints import Keypoints
from fomm_model.visualize import draw_keypoints, flow_to_color, gray_to_rgb, masks_to_color

from .runtime import FrameProgress, check_framed, chunks, collect_image_sets, collect_images, image_batch, maps_to_input
from .types import FlowData, FommFlow, FommKeypoints, KeypointSet

PICTURE_SIZES = ("model", "source")
# Frames drawn at a time: each chunk's pictures exist a few times over while they are made and
# converted, at up to the source's size (4 frames of 1080p: about 100 MB a copy).
PREVIEW_CHUNK = 4


class DrawKeypoints(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FOMM_DrawKeypoints",
            display_name="FOMM Draw Keypoints",
            category="FOMM/preview",
            description="Draw keypoints as coloured dots (one colour per keypoint) on the images they belong to.",
            inputs=[
                io.Image.Input(
                    "images",
                    tooltip="The images the keypoints were detected on. For moved keypoints: the frames FOMM "
                    "Generate made from them (as many as keypoint frames), or the source image (a batch of any "
                    "other count: its first image). One image is repeated for every keypoint frame.",
                ),
                FommKeypoints.Input("keypoints", tooltip="From FOMM Detect Keypoints, or moved_keypoints from FOMM Estimate Motion."),
            ],
            outputs=[io.Image.Output(display_name="images", tooltip="The images with the keypoints drawn on.")],
        )

    @classmethod
    def execute(cls, images: Tensor, keypoints: KeypointSet) -> io.NodeOutput:
        if keypoints.moved and images.shape[0] != len(keypoints.keypoints):
            images = images[:1]  # not the generated frames: the source batch, whose first image the other nodes use
        count = max(images.shape[0], len(keypoints.keypoints))
        if images.shape[0] not in (1, count) or len(keypoints.keypoints) not in (1, count):
            raise ValueError(
                f"{images.shape[0]} images and {len(keypoints.keypoints)} keypoint frames do not pair up: "
                "give as many images as keypoint frames, or one of either"
            )
        hint = (
            "connect the source image, or the frames FOMM Generate made from these keypoints"
            if keypoints.moved
            else "connect the images these keypoints were detected on"
        )
        progress = FrameProgress(count)

        def drawn() -> Iterator[Tensor]:
            for part in chunks(count, PREVIEW_CHUNK, progress):
                frames = image_batch(images[part] if images.shape[0] > 1 else images, "images")
                kp = keypoints.keypoints[part] if len(keypoints.keypoints) > 1 else keypoints.keypoints
                n = part.stop - part.start
                check_framed(frames, keypoints.framing, "the image", hint)
                on_input = Keypoints(keypoints.framing.points_to_input(kp.value))  # drawn on the image itself, full size
                yield draw_keypoints(frames.expand(n, -1, -1, -1), on_input.expand(n))

        return io.NodeOutput(collect_images(drawn(), count))


class VisualizeFlow(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FOMM_VisualizeFlow",
            display_name="FOMM Visualize Flow",
            category="FOMM/preview",
            description="Pictures of a dense motion at the source's aspect: the flow in colour (hue = direction, "
            "saturation = distance), the occlusion map in grey (white = source visible) and the keypoint regions "
            "(grey = still background, otherwise the colour of the keypoint that moves the pixel).",
            inputs=[
                FommFlow.Input("flow", tooltip="From FOMM Dense Motion."),
                io.Combo.Input(
                    "size",
                    options=list(PICTURE_SIZES),
                    default="model",
                    tooltip="model: at the model's resolution, all the detail these maps have (120 frames of a 1080p "
                    "source take 13 MiB a picture with the embedded model). source: scaled up to the source's size, "
                    "to lay over its frames (the same 120 frames take 2.8 GiB a picture).",
                ),
            ],
            outputs=[
                io.Image.Output(display_name="flow", tooltip="Flow colours: hue = direction, saturation = distance."),
                io.Image.Output(display_name="occlusion", tooltip="White = source visible, black = to be invented."),
                io.Image.Output(display_name="regions", tooltip="Grey = still background, colours = the keypoint moving each pixel."),
            ],
        )

    @classmethod
    def execute(cls, flow: FlowData, size: str = "model") -> io.NodeOutput:
        if size not in PICTURE_SIZES:
            raise ValueError(f"size must be one of {', '.join(PICTURE_SIZES)}, got {size!r}")
        framing = flow.framing if size == "source" else flow.framing.at_model_scale()
        model_size = flow.framing.target_size
        progress = FrameProgress(len(flow))

        def pictures() -> Iterator[tuple[Tensor, Tensor, Tensor]]:
            # Where a crop cut the picture the frames keep the source, unmoved: the pictures say so there
            # (white = no motion, white = visible, grey = still background) instead of leaving it black.
            for part in chunks(len(flow), PREVIEW_CHUNK, progress):
                occlusion = flow.occlusion[part] if flow.occlusion is not None else torch.ones_like(flow.masks[part, :1])
                yield (
                    maps_to_input(flow_to_color(flow.deformation[part], model_size).cpu(), framing, outside=1.0),
                    maps_to_input(gray_to_rgb(occlusion, model_size).cpu(), framing, outside=1.0),
                    maps_to_input(masks_to_color(flow.masks[part], model_size).cpu(), framing, outside=0.5),
                )

        return io.NodeOutput(*collect_image_sets(pictures(), len(flow)))
