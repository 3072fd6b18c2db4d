"""Inputs shared by several nodes, declared once so their names, defaults and tooltips agree."""

from __future__ import annotations

from dataclasses import dataclass

from comfy_api.latest import io

from fomm_model import Keypoints
from fomm_model.framing import FIT_MODES
from fomm_model.pipeline import MotionOptions, Reference, reference_frame

REFERENCE_FIRST = "first"
REFERENCE_INDEX = "index"
REFERENCE_CLOSEST = "closest to source"
REFERENCES = (REFERENCE_FIRST, REFERENCE_INDEX, REFERENCE_CLOSEST)
MODEL_TOOLTIP = "From FOMM Load Model; use the same model for every step."


def fit_input(name: str = "fit") -> io.Combo.Input:
    """How an image of any size is brought to the model's frame size (``fomm_model.framing.fit``)."""
    return io.Combo.Input(
        name,
        options=list(FIT_MODES),
        default="pad",
        tooltip="How images reach the model's size: pad = resize keeping the aspect ratio and pad the borders; "
        "crop = resize to cover and cut the borders off; stretch = resize, ignoring the aspect ratio. "
        "Results come back at the input's size and aspect.",
    )


def batch_size_input() -> io.Int.Input:
    """Frames per model call: the memory/speed trade-off, and how often Cancel is noticed."""
    return io.Int.Input(
        "batch_size",
        default=8,
        min=1,
        max=256,
        tooltip="Frames processed at once. Smaller uses less memory and reacts faster to Cancel; larger is faster.",
    )


def full_resolution_input() -> io.Boolean.Input:
    """Sharp output from a large source (``fomm_model.footage.render_full_resolution``)."""
    return io.Boolean.Input(
        "full_resolution",
        default=False,
        tooltip="Off: the model's frame (e.g. 256x256) scaled up to the source's size. On: the full-size "
        "source itself is warped by the model's motion and the generated pixels are used only where the "
        "source is occluded, so a large photo stays sharp wherever it merely moves.",
    )


def motion_inputs() -> list[io.Input]:
    """How driving keypoints become motion of the source (FOMM's relative motion transfer)."""
    return [
        io.Boolean.Input(
            "relative",
            default=True,
            tooltip="On: move the source keypoints by how far the driving keypoints moved since the reference frame "
            "(keeps the source's shape). Off: put them where the driving keypoints are (absolute; the source "
            "takes the driving object's pose and proportions).",
        ),
        io.Boolean.Input(
            "relative_jacobian",
            default=True,
            tooltip="Relative mode: also transfer the change of each keypoint's local orientation and stretch.",
        ),
        io.Boolean.Input(
            "adapt_scale",
            default=True,
            tooltip="Relative mode: scale the movement by the size ratio of the source and driving objects "
            "(convex hulls of their keypoints).",
        ),
        io.Combo.Input(
            "reference",
            options=list(REFERENCES),
            default=REFERENCE_FIRST,
            tooltip="Relative mode: the driving frame whose pose corresponds to the source image: the first frame, the frame "
            "given by reference_index, or the frame whose keypoints are closest to the source's.",
        ),
        io.Int.Input(
            "reference_index",
            default=0,
            min=0,
            max=1_000_000,
            tooltip="Driving frame (0 = first) used as the reference when reference is 'index'.",
        ),
    ]


@dataclass(frozen=True)
class MotionInputs:
    """The values of the :func:`motion_inputs` widgets, as a node receives them.

    The reference frame is resolved by ``fomm_model.pipeline`` (the same rules for the
    streaming nodes and for keypoints already in memory); this class only maps the widgets
    onto its ``reference`` and checks the index early, in the widgets' own words.
    """

    relative: bool
    relative_jacobian: bool
    adapt_scale: bool
    reference: str
    reference_index: int

    def options(self, frames: int) -> MotionOptions:
        """The library's motion options for a driving video of ``frames`` frames."""
        return MotionOptions(self.relative, self.relative_jacobian, self.adapt_scale, self._reference(frames))

    def reference_frame(self, kp_source: Keypoints, kp_driving: Keypoints) -> int:
        """The reference frame's index among driving keypoints already detected (0 in
        absolute mode, which has no reference frame, as in ``fomm_model.pipeline``)."""
        if not self.relative:
            return 0
        return reference_frame(self._reference(len(kp_driving)), kp_source, kp_driving)

    def _reference(self, frames: int) -> Reference:
        if self.reference == REFERENCE_FIRST:
            return "first"
        if self.reference == REFERENCE_CLOSEST:
            return "best"
        if self.reference != REFERENCE_INDEX:
            raise ValueError(f"unknown reference {self.reference!r}; choose one of {', '.join(REFERENCES)}")
        if self.relative and not 0 <= self.reference_index < frames:
            raise ValueError(
                f"reference_index {self.reference_index} is outside the driving video's {frames} frames "
                f"(0 to {frames - 1})"
            )
        return self.reference_index
