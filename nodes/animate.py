"""FOMM Animate: the whole method in one node, for the common case."""

from __future__ import annotations

import torch
from comfy_api.latest import io
from torch import Tensor

from fomm_model.footage import RegionRenderer
from fomm_model.framing import fit as fit_frames
from fomm_model.pipeline import animate_batches

from .options import MODEL_TOOLTIP, MotionInputs, batch_size_input, fit_input, full_resolution_input, motion_inputs
from .runtime import prepare_run, to_comfy_image
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
                full_resolution_input(),
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
        full_resolution: bool,
        batch_size: int,
    ) -> io.NodeOutput:
        motion = MotionInputs(relative, relative_jacobian, adapt_scale, reference, reference_index)
        run = prepare_run(model, source, driving, motion, batch_size, fit_mode=fit)
        source_fitted, framing = fit_frames(run.source, model.frame_size, fit)  # type: ignore[arg-type]
        renderer = RegionRenderer(run.fomm, run.source[0], framing, full_resolution)
        frames = [
            to_comfy_image(renderer.render_batch(batch))
            for batch in animate_batches(
                run.fomm, source_fitted, run.driving, run.motion,
                batch_size=batch_size, precision=model.precision, on_progress=run.progress.update,
            )
        ]
        return io.NodeOutput(torch.cat(frames))
