"""What travels on this pack's wires: the custom socket types and the objects they carry.

ComfyUI passes any Python object along a link; the socket type name only decides which sockets
may be connected. Each payload carries what the next step needs to check that it is being fed
consistent data (which model produced it, at what image size and framing), so a wrong wire is
reported in words instead of failing deep inside torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from comfy_api.latest import io
from torch import Tensor, nn

from fomm_model import FirstOrderModel, Keypoints
from fomm_model.framing import Framing

FommModel = io.Custom("FOMM_MODEL")
FommKeypoints = io.Custom("FOMM_KEYPOINTS")
FommMotion = io.Custom("FOMM_MOTION")
FommFlow = io.Custom("FOMM_FLOW")


class PatchableModel(nn.Module):
    """The FOMM networks as ComfyUI's ModelPatcher wants a model: a module with a plain,
    writable ``device`` attribute (``FirstOrderModel.device`` is derived from its weights)."""

    def __init__(self, fomm: FirstOrderModel):
        super().__init__()
        self.fomm = fomm
        self.device = fomm.device


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model under ComfyUI's memory management (``patcher`` is a ModelPatcher).

    ``key`` names the weights (file, size and modification time), so keypoints and flows can
    be checked against the model they are used with. ``precision`` is what the generator's
    decoder runs in (see ``fomm_model.precision``); the weights stay float32.
    """

    patcher: object
    name: str
    key: str
    precision: str = "fp32"

    @property
    def fomm(self) -> FirstOrderModel:
        """The model itself, wherever ComfyUI has put it (call ``runtime.use_model`` first)."""
        return self.patcher.model.fomm  # type: ignore[attr-defined]

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) the model was trained at: every image is fitted to it."""
        height, width = self.fomm.config.frame_shape[:2]
        return int(height), int(width)


@dataclass(frozen=True)
class KeypointSet:
    """Keypoints of a batch of frames (CPU, float32) and where they came from.

    ``framing`` is how the frames were fitted to the model (it maps back to the input size);
    ``model_key`` is the :attr:`LoadedModel.key` of the detector, or None when unknown
    (keypoints read from a motion file); ``moved`` marks driving keypoints moved onto the
    source: every frame of them belongs to the one source image.
    """

    keypoints: Keypoints
    framing: Framing
    model_key: str | None
    moved: bool = False


@dataclass(frozen=True)
class MotionData:
    """The source keypoints and the driving keypoints moved onto the source (one per frame)."""

    source: KeypointSet
    driving: KeypointSet
    reference_frame: int


@dataclass(frozen=True)
class FlowData:
    """The dense motion of every frame, at the dense motion network's resolution.

    ``deformation`` (N, h, w, 2) backward sampling grid; ``occlusion`` (N, 1, h, w) or None for
    models without one; ``masks`` (N, K+1, h, w) soft assignment of each pixel to the
    background (0) or a keypoint's motion. ``framing`` is the source image's;
    ``rest_weight`` (1, 1, h, w) the source's full-resolution blend weight when nothing
    moves, which full-resolution rendering measures the frames' weight against
    (``fomm_model.footage.rest_weight``, ``relative_visibility``).
    """

    deformation: Tensor
    occlusion: Tensor | None
    masks: Tensor
    framing: Framing
    model_key: str | None
    rest_weight: Tensor | None = None

    def __len__(self) -> int:
        return self.deformation.shape[0]
