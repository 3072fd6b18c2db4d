"""FOMM Animate: the whole method in one node, for the common case."""

from __future__ import annotations

import torch
from comfy_api.latest import io
from torch import Tensor

from fomm_model.framing import fit as fit_frames
from fomm_model.pipeline import MotionOptions, animate_batches

from .options import MODEL_TOOLTIP, batch_size_input, fit_input, motion_inputs, pipeline_reference
from .runtime import FrameProgress, driving_chunks, first_image, image_batch, to_comfy_image, use_model
from .types import FommModel, LoadedModel


class Animate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FOMM_Animate",
            display_name="FOMM Animate",
            category="FOMM",
            description="Animate the object in a still image with the motion of a driving video (First Order "
            "Motion Model). Any image size: frames come back at the source's size and aspect. Long videos are "
            "processed in chunks; Cancel stops within a chunk.",
            inputs=[
                FommModel.Input("model", tooltip=MODEL_TOOLTIP),
                io.Image.Input("source", tooltip="The still image to animate (first image of the batch)."),
                io.Image.Input("driving", tooltip="The driving video's frames (e.g. from Load Video + Get Video Components)."),
                fit_input(),
                *motion_inputs(),
                batch_size_input(),
            ],
            outputs=[io.Image.Output(display_name="frames", tooltip="One animated frame per driving frame.")],
        )

    @classmethod
    def execute(
        cls,
        model: LoadedModel,
        source: Tensor,
        driving: Tensor,
        fit: str,
        relative: bool,
        relative_jacobian: bool,
        adapt_scale: bool,
        reference: str,
        reference_index: int,
        batch_size: int,
    ) -> io.NodeOutput:
        source_fitted, framing = fit_frames(first_image(source, "source"), model.frame_size, fit)  # type: ignore[arg-type]
        image_batch(driving[:1], "driving")
        total = driving.shape[0]
        options = MotionOptions(
            relative=relative,
            relative_jacobian=relative_jacobian,
            adapt_scale=adapt_scale,
            reference=pipeline_reference(reference, reference_index, total, relative),
        )
        fomm = use_model(model)
        progress = FrameProgress(total)
        frames = [
            to_comfy_image(framing.restore(batch.prediction.float().cpu()))
            for batch in animate_batches(
                fomm, source_fitted, driving_chunks(driving, batch_size, model.frame_size, fit), options,
                batch_size=batch_size, precision=model.precision, on_progress=progress.update,
            )
        ]
        return io.NodeOutput(torch.cat(frames))
