"""Inputs shared by several nodes, declared once so their names, defaults and tooltips agree."""

from __future__ import annotations

from comfy_api.latest import io

from fomm_model import Keypoints
from fomm_model.keypoints import find_best_frame
from fomm_model.framing import FIT_MODES

REFERENCE_FIRST = "first"
REFERENCE_INDEX = "index"
REFERENCE_CLOSEST = "closest to source"
REFERENCES = (REFERENCE_FIRST, REFERENCE_INDEX, REFERENCE_CLOSEST)
MODEL_TOOLTIP = "From FOMM Load Model; use the same model for every step."


def fit_input(name: str = "fit") -> io.Combo.Input:
    return io.Combo.Input(
        name,
        options=list(FIT_MODES),
        default="pad",
        tooltip="How images reach the model's size: pad = resize keeping the aspect ratio and pad the borders; "
        "crop = resize to cover and cut the borders off; stretch = resize, ignoring the aspect ratio. "
        "Results come back at the input's size and aspect.",
    )


def batch_size_input() -> io.Int.Input:
    return io.Int.Input(
        "batch_size",
        default=8,
        min=1,
        max=256,
        tooltip="Frames processed at once. Smaller uses less memory and reacts faster to Cancel; larger is faster.",
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
            tooltip="The driving frame whose pose corresponds to the source image: the first frame, the frame "
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


def pipeline_reference(reference: str, reference_index: int, total: int, relative: bool) -> str | int:
    """The ``reference`` argument of ``fomm_model.pipeline`` for these inputs, checked early."""
    if reference == REFERENCE_FIRST:
        return "first"
    if reference == REFERENCE_CLOSEST:
        return "best"
    if reference != REFERENCE_INDEX:
        raise ValueError(f"unknown reference {reference!r}; choose one of {', '.join(REFERENCES)}")
    if relative and not 0 <= reference_index < total:
        raise ValueError(
            f"reference_index {reference_index} is outside the driving video's {total} frames (0 to {total - 1})"
        )
    return reference_index


def reference_frame(reference: str, reference_index: int, kp_source: Keypoints, kp_driving: Keypoints) -> int:
    """The reference driving frame chosen by the ``reference``/``reference_index`` inputs."""
    count = len(kp_driving)
    if reference == REFERENCE_FIRST:
        return 0
    if reference == REFERENCE_INDEX:
        if not 0 <= reference_index < count:
            raise ValueError(
                f"reference_index {reference_index} is outside the driving video's {count} frames (0 to {count - 1})"
            )
        return reference_index
    if reference == REFERENCE_CLOSEST:
        return int(find_best_frame(kp_source, kp_driving))
    raise ValueError(f"unknown reference {reference!r}; choose one of {', '.join(REFERENCES)}")
