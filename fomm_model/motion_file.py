"""The motion file: FOMM's keypoint motion for one source image, for programs without torch.

``compute_motion`` runs a model over a source image and a driving video and returns a
:class:`Motion`; ``write_motion`` is the one writer of the versioned JSON format (schema in
``schemas/motion.schema.json``), ``read_motion`` its reader. Both validate. The Blender add-on
reads the same files with copies of ``schemas/motion_format.py`` and the schema.

Blend weights. A mesh that follows FOMM has to move each source point p *forwards* with a
blend of the keypoints' local affine motions, p -> sum_k w_k(p) (kp_d + A_k (p - kp_s)),
A_k = J_d J_s^-1, plus a static background. FOMM learned such weights: the dense motion
network's softmax masks. But the masks are predicted per driving frame, on driving-frame
positions, and they are only informative while something moves: evaluated "at rest" (the
source driven by its own keypoints) the heat-map differences the network reads are all zero
and every one of its K+1 inputs is the same picture, so the masks say nothing about which
region follows which keypoint. The file therefore stores the masks of every driving frame,
each pulled back to the source frame along the model's own dense motion: source point p reads
frame t's masks where p is in that frame, F_t(p), the generator's backward sampling grid
inverted (:func:`invert_backward_flow`). Frames where p is not visible (no point of the frame
samples it, so the inversion leaves a residual) are left out of p's average; the result is
renormalised to sum to one. Rigged with linear blend skinning these weights reproduce the
model's dense motion far better than naive Gaussians or no motion at all
(``tests/test_motion_rig.py`` measures it; the README gives the figures).
"""

from __future__ import annotations

import base64
import io
import json
import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from PIL import Image
from torch import Tensor

from . import __version__
from .checkpoint import atomic_dir, atomic_path
from .framing import FIT_MODES, check_size, fit, resize
from .geometry import make_coordinate_grid
from .images import check_pixels
from .keypoints import Keypoints, movement_scale
from .model import FirstOrderModel
from .pipeline import MotionOptions as PipelineOptions
from .pipeline import Reference, animate_batches, map_frames
from .schemas.motion_format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MOTION_SUFFIX,
    LinkedFiles,
    MotionFormatError,
    linked_files,
    motion_stem,
    parse,
    side_files,
    validate,
)

__all__ = [
    "DenseFlow",
    "FrameFiles",
    "KeypointTrack",
    "Motion",
    "MotionFormatError",
    "MotionOptions",
    "compute_motion",
    "read_motion",
    "write_motion",
]

WEIGHTS_METHOD = "dense-motion masks of every frame, pulled back to the source along the dense flow, averaged where visible"
ProgressCallback = Callable[[str, int, int | None], None]
# Decimals written: float32 keeps ~7 significant digits and coordinates are in [-1, 1]; the
# bulky grids (weights, flow) keep 5, a 1/1000 of a pixel even for 256-pixel frames.
_DECIMALS = 6
_GRID_DECIMALS = 5
# A source grid point counts as visible in a frame when the inverted flow maps back onto it
# within this fraction of a grid step.
_VISIBLE_RESIDUAL = 0.5


@dataclass(frozen=True)
class MotionOptions:
    """How driving keypoints became the motion (see :func:`fomm_model.normalize_keypoints`)."""

    relative: bool = True
    relative_jacobian: bool = True
    adapt_scale: bool = True
    reference_frame: int = 0
    movement_scale: float = 1.0
    framing: str = "pad"


@dataclass
class KeypointTrack:
    """Keypoints of T frames as numpy: ``value`` (T, K, 2), ``jacobian`` (T, K, 2, 2) or None."""

    value: np.ndarray
    jacobian: np.ndarray | None = None

    @classmethod
    def from_keypoints(cls, kp: Keypoints) -> "KeypointTrack":
        value = kp.value.detach().float().cpu().numpy()
        jacobian = None if kp.jacobian is None else kp.jacobian.detach().float().cpu().numpy()
        return cls(value, jacobian)

    def to_keypoints(self) -> Keypoints:
        jacobian = None if self.jacobian is None else torch.from_numpy(self.jacobian)
        return Keypoints(torch.from_numpy(self.value), jacobian)


@dataclass
class DenseFlow:
    """Forward map per frame: ``positions`` (T, h, w, 2) = where each source grid point is."""

    positions: np.ndarray
    max_residual: float


@dataclass
class FrameFiles:
    """Generated frames on disk: ``directory`` holds ``files`` in frame order."""

    directory: Path
    files: tuple[str, ...]


@dataclass
class Motion:
    """Everything a motion file holds, as numpy arrays (see the schema for the conventions).

    ``image_size`` is the (height, width) the model saw; ``source_image`` (h, w, 3 or 4) uint8
    is the texture, same aspect, possibly larger. ``masks`` (K+1, gh, gw) are the blend
    weights, background first. ``frames`` (T, H, W, 3) uint8 holds generated frames not yet
    written, (T, H, W, 4) with the texture's transparent padding for the ``pad`` framing;
    ``frame_files`` points at written ones.
    """

    image_size: tuple[int, int]
    fps: float
    source_image: np.ndarray
    source: KeypointTrack
    driving: KeypointTrack
    motion: KeypointTrack
    masks: np.ndarray
    options: MotionOptions = field(default_factory=MotionOptions)
    align_corners: bool = True
    weights_method: str = WEIGHTS_METHOD
    flow: DenseFlow | None = None
    frames: np.ndarray | None = None
    frame_files: FrameFiles | None = None

    @property
    def num_frames(self) -> int:
        return self.motion.value.shape[0]

    @property
    def num_kp(self) -> int:
        return self.motion.value.shape[1]


# ------------------------------------------------------------------------------ compute
@torch.no_grad()
def compute_motion(
    model: FirstOrderModel,
    source: Tensor,
    driving: Tensor | Iterable[Tensor],
    *,
    relative: bool = True,
    relative_jacobian: bool = True,
    adapt_scale: bool = True,
    reference: Reference = "first",
    fps: float = 25.0,
    framing: str = "pad",
    frame_size: tuple[int, int] | None = None,
    flow: bool = False,
    frames: bool = False,
    batch_size: int = 8,
    texture_size: int = 2048,
    progress: ProgressCallback | None = None,
) -> Motion:
    """Run ``model`` on a source image and driving frames and collect the motion.

    ``source``: (1, 3, H, W) or (3, H, W) float in [0, 1], any size. ``driving``: (T, 3, H, W)
    float in [0, 1], or an iterable of frames or chunks (a video streamed from disk). Both are
    fitted to ``frame_size`` (default: the size the model was trained at) with ``framing``.
    ``reference``: the driving frame relative motion is measured from: ``"first"``, an index
    or ``"best"`` (see :func:`fomm_model.pipeline.animate_frames`; the last two read
    ``driving`` twice, so it must then be re-iterable). ``flow`` adds the dense forward flow
    per frame, ``frames`` the generated frames. The texture keeps up to ``texture_size``
    pixels on its long side. ``progress("motion", done, total)`` follows the frames
    (``total`` None while the frame count is unknown).
    """
    if framing not in FIT_MODES:
        raise ValueError(f"unknown framing {framing!r}; choose one of {', '.join(FIT_MODES)}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    size = tuple(frame_size or model.config.frame_shape)
    model.config.check_image_size(*size)
    report = progress or (lambda stage, done, total: None)

    texture, model_source = _fit_source(_as_batch(source, "source"), size, framing, texture_size)
    frame_alpha = _alpha_at(texture, size)
    kp_source = model.detect_keypoints(model_source)
    options = PipelineOptions(relative, relative_jacobian, adapt_scale, reference)
    weights = _WeightAverage()
    kp_driving, kp_motion, positions, residuals, generated = [], [], [], [], []
    reference_frame = 0
    for batch in animate_batches(
        model, model_source, _fitted(driving, size, framing, batch_size), options, batch_size=batch_size,
        on_progress=lambda done, total: report("motion", done, total),
    ):
        reference_frame = batch.reference
        kp_driving.append(batch.kp_driving)
        kp_motion.append(batch.kp_motion)
        forward, residual = invert_backward_flow(batch.outputs["deformation"])
        weights.add(pull_back_masks(batch.outputs["mask"], forward), residual)
        if flow:
            positions.append(forward.float().cpu().numpy())
            residuals.append(float(residual.max()))
        if frames:
            pixels = _to_uint8(batch.prediction)
            if frame_alpha is not None:  # the padding the model saw stays see-through, as on the texture
                pixels = np.concatenate([pixels, np.broadcast_to(frame_alpha, pixels.shape[:3] + (1,))], axis=-1)
            generated.append(pixels)
    all_driving = Keypoints.cat(kp_driving)
    scale = movement_scale(kp_source, all_driving[reference_frame]) if relative and adapt_scale else 1.0

    return Motion(
        image_size=(int(size[0]), int(size[1])),
        fps=float(fps),
        source_image=texture,
        source=KeypointTrack.from_keypoints(kp_source),
        driving=KeypointTrack.from_keypoints(all_driving),
        motion=KeypointTrack.from_keypoints(Keypoints.cat(kp_motion)),
        masks=weights.result().float().cpu().numpy(),
        options=MotionOptions(relative, relative_jacobian, adapt_scale, reference_frame, float(scale), framing),
        align_corners=model.align_corners,
        flow=DenseFlow(np.concatenate(positions), max(residuals)) if flow else None,
        frames=np.concatenate(generated) if frames else None,
    )


def _fitted(driving: Tensor | Iterable[Tensor], size: tuple[int, int], framing: str, batch_size: int) -> Iterable[Tensor]:
    """Driving frames fitted to the model's frame size as they are read (re-iterable when
    the frames are: the pipeline reads them twice for a reference other than the first)."""
    if isinstance(driving, Tensor) and driving.ndim == 3:
        driving = driving[None]

    def prepare(chunk: Tensor) -> Tensor:
        frames = _as_batch(chunk, "driving")
        check_size(*frames.shape[-2:], "the driving video")
        return fit(frames.float().clamp(0, 1), size, framing)[0]  # type: ignore[arg-type]

    return map_frames(driving, prepare, batch_size)


def pull_back_masks(masks: Tensor, forward: Tensor) -> Tensor:
    """Dense-motion masks (B, K+1, h, w) on driving positions -> the same on source points.

    Source grid point p reads the masks at ``forward`` (B, h, w, 2), where p is in the driving
    frame: the pixel there was generated with these weights, so they say which keypoint's
    motion p followed. Points that leave the frame read the border.
    """
    return F.grid_sample(masks, forward.to(masks.dtype), mode="bilinear", padding_mode="border", align_corners=True)


class _WeightAverage:
    """Pulled-back masks summed over the frames where each source point is visible.

    A point hidden in a frame has no driving pixel, so the masks read there belong to
    something else; that frame is left out of the point's average. A point hidden in every
    frame gets the plain average.
    """

    def __init__(self) -> None:
        self.visible: Tensor | float = 0.0  # (K+1, h, w) sum over the frames that show the point
        self.seen: Tensor | float = 0.0  # (1, h, w) number of such frames
        self.every: Tensor | float = 0.0  # (K+1, h, w) sum over all frames

    def add(self, pulled: Tensor, residual: Tensor) -> None:
        """``pulled`` (B, K+1, h, w) masks on source points; ``residual`` (B, h, w) of the flow inversion."""
        height, width = residual.shape[-2:]
        tolerance = _VISIBLE_RESIDUAL * 2 / (max(height, width) - 1)
        shown = rearrange(residual < tolerance, "b h w -> b 1 h w").to(pulled.dtype)
        self.visible = self.visible + (pulled * shown).sum(0)
        self.seen = self.seen + shown.sum(0)
        self.every = self.every + pulled.sum(0)

    def result(self) -> Tensor:
        """(K+1, h, w) weights summing to one at every point."""
        assert isinstance(self.every, Tensor) and isinstance(self.visible, Tensor)  # the pipeline raises on a video without frames
        summed = torch.where(self.seen > 0, self.visible, self.every)
        return summed / summed.sum(0, keepdim=True).clamp_min(1e-12)


def invert_backward_flow(deformation: Tensor, iterations: int = 25) -> tuple[Tensor, Tensor]:
    """Invert FOMM's backward sampling grid D (B, h, w, 2) on its own grid points.

    For each grid point p, solve D(z) = p by Newton's method on the bilinear interpolant of D
    (its Jacobian from central differences), starting at p - (D(p) - p). Returns the forward
    positions z (B, h, w, 2) and the residual |D(z) - p| (B, h, w); the residual stays large
    where p is not in D's image (source regions the driving frame does not show).
    """
    batch, height, width, _ = deformation.shape
    grid = make_coordinate_grid(height, width, deformation.dtype, deformation.device).expand(batch, -1, -1, -1)
    field_ = rearrange(deformation, "b h w c -> b c h w")
    d_dx = torch.gradient(field_, spacing=2 / (width - 1), dim=3)[0]
    d_dy = torch.gradient(field_, spacing=2 / (height - 1), dim=2)[0]
    jacobian_maps = torch.cat([d_dx, d_dy], dim=1)  # channels: dDx/dx, dDy/dx, dDx/dy, dDy/dy

    def sample(maps: Tensor, points: Tensor) -> Tensor:
        values = F.grid_sample(maps, points, mode="bilinear", padding_mode="border", align_corners=True)
        return rearrange(values, "b c h w -> b h w c")

    z = 2 * grid - deformation
    for _ in range(iterations):
        residual = sample(field_, z) - grid
        j = sample(jacobian_maps, z)
        a, c, b, d = j.unbind(-1)  # J = [[dDx/dx, dDx/dy], [dDy/dx, dDy/dy]] = [[a, b], [c, d]]
        det = a * d - b * c
        rx, ry = residual.unbind(-1)
        safe = det.abs() > 1e-4
        det = torch.where(safe, det, torch.ones_like(det))
        newton = torch.stack([(d * rx - b * ry) / det, (a * ry - c * rx) / det], dim=-1)
        step = torch.where(safe.unsqueeze(-1), newton, residual)
        z = z - step.clamp(-0.25, 0.25)
    residual = (sample(field_, z) - grid).norm(dim=-1)
    return z, residual


def _fit_source(source: Tensor, size: tuple[int, int], framing: str, texture_size: int) -> tuple[np.ndarray, Tensor]:
    """Fit the source for the model, and a texture of the same framing at k times that size.

    The model input is the (8-bit) texture shrunk by the integer factor k, so the texture's
    pixels line up exactly with the model's and re-running the model on the stored texture
    gives the same keypoints. Padding (``pad`` framing) is transparent in the texture.
    """
    if source.shape[0] != 1:
        raise ValueError(f"give one source image, got {source.shape[0]}")
    height, width = source.shape[-2:]
    check_size(height, width, "the source image")  # as fomm animate: smaller is no picture to animate
    ratio = [height / size[0], width / size[1]]
    factor = {"pad": np.ceil(max(ratio)), "crop": np.floor(min(ratio)), "stretch": np.round(max(ratio))}[framing]
    factor = int(max(1, min(factor, texture_size // max(size))))
    texture, framing_info = fit(source.float().clamp(0, 1), (size[0] * factor, size[1] * factor), framing)  # type: ignore[arg-type]
    pixels = _to_uint8(texture)[0]
    model_source = resize(torch.from_numpy(pixels).permute(2, 0, 1)[None].float().div(255).to(source.device), size)
    if framing == "pad":
        top, left = framing_info.offset
        content_h, content_w = framing_info.scaled_size
        alpha = np.zeros(pixels.shape[:2] + (1,), np.uint8)
        alpha[top : top + content_h, left : left + content_w] = 255
        pixels = np.concatenate([pixels, alpha], axis=-1)
    return pixels, model_source


def _alpha_at(texture: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """The texture's alpha (None when it has none) at the model's size: each pixel the mean of
    the k x k texture pixels it stands for, so a padding edge that cuts a pixel is partly clear."""
    if texture.shape[-1] != 4:
        return None
    return reduce(texture[..., 3:].astype(np.float32), "(h k) (w j) c -> h w c", "mean", h=size[0], w=size[1]).round().astype(np.uint8)


def _as_batch(images: Tensor, name: str) -> Tensor:
    """(3, H, W) or (N, 3, H, W) pixels as a batch, checked before anything converts them."""
    batch = images.unsqueeze(0) if isinstance(images, Tensor) and images.ndim == 3 else images
    check_pixels(batch, name, 3)
    return batch


def _to_uint8(images: Tensor) -> np.ndarray:
    """(N, C, H, W) float in [0, 1] -> (N, H, W, C) uint8."""
    return (rearrange(images.float().clamp(0, 1), "n c h w -> n h w c") * 255).round().byte().cpu().numpy()


# ------------------------------------------------------------------------------ write
def check_motion_name(path: Path) -> None:
    """Refuse to write a motion file under a name that is not ``.json``: it is JSON, the readers
    list ``*.json``, and a slip (a checkpoint's or a video's name) would replace that file."""
    if path.suffix.lower() != ".json":
        raise ValueError(f"{path}: a motion file is JSON; name it {motion_stem(path)}{MOTION_SUFFIX}")


def write_motion(path: str | os.PathLike, motion: Motion, *, embed_image: bool = False) -> Path:
    """Write ``motion`` as a motion file, all or nothing; returns the path.

    The source texture goes next to the file as ``<name>.source.png`` (or into the file with
    ``embed_image``); generated frames in ``motion.frames`` go to ``<name>_frames/``, where
    ``<name>`` is the file name without ``.fomm.json`` (or its last suffix). Every
    part is first written in full under a temporary name; only then are they renamed into
    place, the JSON last. So a write that fails (a bad frame, a full disk, an interrupted run)
    leaves the previous motion file and its files as they were: never a new image or frames
    folder beside an old JSON.
    """
    path = Path(path)
    check_motion_name(path)
    image_file, frames_directory = side_files(path)
    image_name = image_file.name
    png = _encode_png(motion.source_image)
    image_entry = {"png_base64": base64.b64encode(png).decode("ascii")} if embed_image else {"path": image_name}

    frame_files = motion.frame_files
    if motion.frames is not None:
        frame_files = FrameFiles(frames_directory, tuple(f"frame_{t + 1:05d}.png" for t in range(len(motion.frames))))
    document = _to_document(motion, image_entry, frame_files, path.parent)
    try:
        validate(document)
    except MotionFormatError as exc:
        raise MotionFormatError(f"refusing to write an invalid motion file {path}: {exc}") from None

    # Contexts leave in reverse order: the image and frames are renamed before the JSON.
    with ExitStack() as staged:
        json_file = staged.enter_context(atomic_path(path))
        if motion.frames is not None:
            assert frame_files is not None
            folder = staged.enter_context(atomic_dir(frame_files.directory))
            for name, frame in zip(frame_files.files, motion.frames, strict=True):
                Image.fromarray(frame).save(folder / name, format="PNG")
        if not embed_image:
            staged.enter_context(atomic_path(path.parent / image_name)).write_bytes(png)
        json_file.write_text(json.dumps(document, separators=(",", ":"), allow_nan=False), encoding="utf-8")
    return path


def _to_document(motion: Motion, image_entry: dict[str, str], frame_files: FrameFiles | None, folder: Path) -> dict[str, Any]:
    has_jacobians = motion.source.jacobian is not None
    opts = motion.options
    document: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "producer": f"fomm_model {__version__}",
        "image": {"width": motion.image_size[1], "height": motion.image_size[0], "align_corners": bool(motion.align_corners)},
        "fps": float(motion.fps),
        "num_frames": motion.num_frames,
        "num_kp": motion.num_kp,
        "has_jacobians": has_jacobians,
        "options": {
            "relative": bool(opts.relative),
            "relative_jacobian": bool(opts.relative_jacobian),
            "adapt_scale": bool(opts.adapt_scale),
            "reference_frame": int(opts.reference_frame),
            "movement_scale": float(opts.movement_scale),
            "framing": opts.framing,
        },
        "source": {
            "image": image_entry,
            "keypoints": _numbers(motion.source.value[0]),
            "jacobians": None if motion.source.jacobian is None else _numbers(motion.source.jacobian[0]),
        },
        "driving": _track(motion.driving),
        "motion": _track(motion.motion),
        "weights": {
            "method": motion.weights_method,
            "grid": {"width": int(motion.masks.shape[2]), "height": int(motion.masks.shape[1])},
            "masks": _numbers(np.clip(motion.masks, 0, 1), _GRID_DECIMALS),
        },
    }
    if motion.flow is not None:
        document["flow"] = {
            "grid": {"width": int(motion.flow.positions.shape[2]), "height": int(motion.flow.positions.shape[1])},
            "positions": _numbers(motion.flow.positions, _GRID_DECIMALS),
            "max_residual": round(float(motion.flow.max_residual), _DECIMALS),
        }
    if frame_files is not None:
        document["frames"] = {"directory": _relative_to(frame_files.directory, folder), "files": list(frame_files.files)}
    return document


def _track(track: KeypointTrack) -> dict[str, Any]:
    return {
        "keypoints": _numbers(track.value),
        "jacobians": None if track.jacobian is None else _numbers(track.jacobian),
    }


def _numbers(array: np.ndarray, decimals: int = _DECIMALS) -> list[Any]:
    return np.round(np.asarray(array, dtype=np.float64), decimals).tolist()


def _relative_to(target: Path, folder: Path) -> str:
    try:
        return Path(os.path.relpath(target.resolve(), folder.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return str(target.resolve())


def _encode_png(pixels: np.ndarray) -> bytes:
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(f"source_image must be (h, w, 3 or 4) uint8, got {pixels.dtype} {pixels.shape}")
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA" if pixels.shape[2] == 4 else "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------ read
def read_motion(path: str | os.PathLike, frames: bool = True) -> Motion:
    """Read and validate a motion file and the files it points to; raises
    :class:`MotionFormatError` naming the problem. ``frames=False`` leaves the generated
    frames out (not looked for, none in the result), for a reader that does not use them."""
    path = Path(path)
    try:
        document = parse(path.read_bytes())
        files = linked_files(document, path, frames)
    except MotionFormatError as exc:
        raise MotionFormatError(f"{path}: {exc}") from None
    image = document["image"]
    source = document["source"]
    flow = None
    if "flow" in document:
        flow = DenseFlow(_array(document["flow"]["positions"]), float(document["flow"]["max_residual"]))
    frame_files = None
    if files.frames_directory is not None:
        frame_files = FrameFiles(files.frames_directory, files.frame_names)
    jacobians = source["jacobians"]
    return Motion(
        image_size=(image["height"], image["width"]),
        fps=float(document["fps"]),
        source_image=_decode_source_image(files, path),
        source=KeypointTrack(_array([source["keypoints"]]), None if jacobians is None else _array([jacobians])),
        driving=_read_track(document["driving"]),
        motion=_read_track(document["motion"]),
        masks=_array(document["weights"]["masks"]),
        options=MotionOptions(**document["options"]),
        align_corners=image["align_corners"],
        weights_method=document["weights"]["method"],
        flow=flow,
        frame_files=frame_files,
    )


def _read_track(entry: dict[str, Any]) -> KeypointTrack:
    return KeypointTrack(_array(entry["keypoints"]), None if entry["jacobians"] is None else _array(entry["jacobians"]))


def _array(values: Sequence[Any]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _decode_source_image(files: LinkedFiles, path: Path) -> np.ndarray:
    """The checked source PNG as (h, w, 3 or 4) uint8 (the PNG's header was fine; its data may not be)."""
    data = files.image_png if files.image_png is not None else files.image_path.read_bytes()  # type: ignore[union-attr]
    try:
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()
            return np.asarray(picture.convert("RGBA" if "A" in picture.getbands() else "RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        where = "the embedded source image" if files.image_png is not None else f"source image {files.image_path}"
        raise MotionFormatError(f"{path}: {where} cannot be read as an image ({exc})") from None
