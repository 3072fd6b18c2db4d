"""FOMM Animate: the whole method in one node, for the common case."""

from __future__ import annotations

from comfy_api.latest import io
from torch import Tensor

from fomm_model.footage import FootageOptions, animate_footage

from .options import MODEL_TOOLTIP, MotionInputs, batch_size_input, fit_input, full_resolution_input, motion_inputs
from .runtime import collect_images, prepare_run
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
            "processed in chunks; the bar counts finished frames and Cancel is honoured at each one.",
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
        run = prepare_run(model, source, driving, motion, batch_size)  # the library fits the frames
        frames = animate_footage(
            run.fomm, run.source[0], run.driving, run.motion, FootageOptions(fit=fit, full_resolution=full_resolution),  # type: ignore[arg-type]
            batch_size=batch_size, precision=model.precision, on_progress=run.progress.update,
        )  # fmt: skip
        return io.NodeOutput(collect_images((frame[None] for frame in frames), driving.shape[0]))
