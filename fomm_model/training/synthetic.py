"""Synthetic training videos: articulated, textured puppets moving on static textured backgrounds.

Every video is a function of ``(seed, split, index)`` only, so a dataset is reproducible from
its seed, growing a dataset keeps the videos it already had, and another seed gives videos
never seen in training. A puppet is a torso with an optional head and two to four limbs of one
or two segments; each part carries its own random texture and turns about its joint, the whole
body translates, turns and scales, and every part bends and swells a little (non-rigid
motion). The camera is static, so the background never moves. Rendering is plain numpy and
OpenCV, a few milliseconds per 128x128 frame.
"""

from __future__ import annotations

import contextlib
import json
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from ..checkpoint import atomic_dir, atomic_path

SPLITS = ("train", "test")
_SPLIT_KEYS = {"train": 0, "test": 1}
_FORMAT_VERSION = 1  # bump when the rendering changes, so stored datasets say which they are


@dataclass(frozen=True)
class SyntheticSpec:
    """What ``fomm make-synthetic`` writes: video counts per split, frames, size and seed."""

    seed: int
    num_train: int
    num_test: int
    num_frames: int = 32
    size: int = 128

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.num_train < 1 or self.num_test < 1:
            raise ValueError(f"need at least one train and one test video, got {self.num_train} and {self.num_test}")
        if self.num_frames < 2:
            raise ValueError(f"a video needs at least 2 frames, got {self.num_frames}")
        if not 32 <= self.size <= 1024:
            raise ValueError(f"size must be between 32 and 1024 pixels, got {self.size}")

    @classmethod
    def from_total(cls, num_videos: int, seed: int, test_fraction: float = 0.2, **kwargs: int) -> "SyntheticSpec":
        """Split ``num_videos`` into train and test like the original 80/20 split."""
        if num_videos < 2:
            raise ValueError(f"--num-videos must be at least 2 (one train and one test video), got {num_videos}")
        num_test = min(num_videos - 1, max(1, round(num_videos * test_fraction)))
        return cls(seed=seed, num_train=num_videos - num_test, num_test=num_test, **kwargs)

    def count(self, split: str) -> int:
        return self.num_train if split == "train" else self.num_test


def video_name(split: str, index: int) -> str:
    return f"{split}{index:05d}"


def video_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of one video: independent of every other video and of the split sizes."""
    return np.random.default_rng([seed, _SPLIT_KEYS[split], index])


# ----------------------------------------------------------------------------- textures
def _random_colour(rng: np.random.Generator, hue: float | None = None) -> np.ndarray:
    """An RGB colour in [0, 1] from a random (or given) hue with lively saturation."""
    h = rng.uniform(0, 1) if hue is None else hue % 1.0
    s = rng.uniform(0.35, 1.0)
    v = rng.uniform(0.35, 1.0)
    hsv = np.uint8([[[round(h * 179), round(s * 255), round(v * 255)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Value noise in [0, 1] with features about ``cell`` pixels wide."""
    gh, gw = max(2, math.ceil(h / cell) + 1), max(2, math.ceil(w / cell) + 1)
    grid = rng.uniform(0, 1, (gh, gw)).astype(np.float32)
    noise = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    lo, hi = float(noise.min()), float(noise.max())
    return (noise - lo) / max(hi - lo, 1e-6)


def _pattern(rng: np.random.Generator, h: int, w: int, periods: tuple[float, float]) -> np.ndarray:
    """A detailed greyscale pattern in [0, 1]: stripes, checks, dots, waves or fine noise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(*periods)
    along = x * math.cos(angle) + y * math.sin(angle)
    across = -x * math.sin(angle) + y * math.cos(angle)
    kind = rng.integers(5)
    if kind == 0:  # stripes
        return 0.5 + 0.5 * np.tanh(3 * np.sin(2 * math.pi * along / period))
    if kind == 1:  # checks
        return 0.5 + 0.5 * np.tanh(3 * np.sin(2 * math.pi * along / period) * np.sin(2 * math.pi * across / period))
    if kind == 2:  # dots
        canvas = np.zeros((h, w), np.float32)
        for _ in range(max(3, int(h * w / rng.uniform(40, 110)))):
            centre = (int(rng.integers(w)), int(rng.integers(h)))
            cv2.circle(canvas, centre, int(rng.integers(1, 4)), float(rng.uniform(0.6, 1.0)), -1, cv2.LINE_AA)
        return canvas
    if kind == 3:  # waves
        wobble = rng.uniform(2, 6) * np.sin(2 * math.pi * across / rng.uniform(10, 30))
        return 0.5 + 0.5 * np.sin(2 * math.pi * (along + wobble) / period)
    return _smooth_noise(rng, h, w, period / 2.5)


def random_texture(
    rng: np.random.Generator, h: int, w: int, hue: float | None = None,
    periods: tuple[float, float] = (5.0, 12.0), strength: tuple[float, float] = (0.45, 0.9),
    blotches: tuple[float, float] = (8.0, 24.0),
) -> np.ndarray:
    """A (h, w, 3) float32 texture: two colours mixed by smooth noise with ``blotches``-sized
    features, overlaid with a pattern whose period (pixels) and strength are drawn from the
    given ranges."""
    base_hue = rng.uniform(0, 1) if hue is None else hue
    first = _random_colour(rng, base_hue)
    second = _random_colour(rng, base_hue + rng.uniform(-0.12, 0.12))
    accent = _random_colour(rng, base_hue + rng.uniform(0.25, 0.75))
    mix = _smooth_noise(rng, h, w, rng.uniform(*blotches))[..., None]
    texture = first * (1 - mix) + second * mix
    pattern = _pattern(rng, h, w, periods)[..., None] * rng.uniform(*strength)
    texture = texture * (1 - pattern) + accent * pattern
    return np.clip(texture, 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------- motion
@dataclass(frozen=True)
class Oscillation:
    """A smooth signal: the sum of two sinusoids with random frequencies and phases."""

    amplitude: float
    frequencies: tuple[float, float]  # cycles per frame
    phases: tuple[float, float]
    weights: tuple[float, float]

    @classmethod
    def random(cls, rng: np.random.Generator, amplitude: float) -> "Oscillation":
        fast = rng.uniform(1 / 34, 1 / 14)
        slow = rng.uniform(1 / 80, 1 / 34)
        mix = rng.uniform(0.2, 0.6)
        return cls(amplitude, (fast, slow), tuple(rng.uniform(0, 2 * math.pi, 2)), (1 - mix, mix))  # type: ignore[arg-type]

    def __call__(self, t: float) -> float:
        return self.amplitude * sum(
            w * math.sin(2 * math.pi * f * t + p) for w, f, p in zip(self.weights, self.frequencies, self.phases)
        )


# ----------------------------------------------------------------------------- body parts
@dataclass
class Part:
    """One rigid-ish body part around a bone from ``u0`` to ``u1`` along its local u axis.

    The local origin is the joint the part turns about. The silhouette is a tapered capsule,
    an ellipse or a rounded box around the bone (radius ``r0`` at ``u0`` to ``r1`` at ``u1``).
    Non-rigid motion bends the part (v += bend(t) * u^2 / length) and swells its width.
    """

    u0: float
    u1: float
    r0: float
    r1: float
    shape: str  # "capsule" | "ellipse" | "box"
    texture: np.ndarray
    parent: int | None  # index of the part it hangs from (None: the torso)
    anchor: tuple[float, float]  # joint position in the parent's local frame
    rest_angle: float  # radians, relative to the parent
    swing: Oscillation
    bend: Oscillation
    swell: Oscillation
    layer: int
    origin: tuple[float, float] = (0.0, 0.0)  # texture pixel of local (u, v) = (0, 0)

    @property
    def length(self) -> float:
        return max(self.u1 - self.u0, 1.0)

    def signed_distance(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Approximate signed distance (pixels) to the silhouette; negative inside."""
        if self.shape == "ellipse":
            centre = (self.u0 + self.u1) / 2
            a = self.length / 2 + max(self.r0, self.r1) * 0.5
            b = max(self.r0, self.r1)
            q = np.sqrt(((u - centre) / a) ** 2 + (v / b) ** 2)
            return (q - 1) * min(a, b)
        t = np.clip(u, self.u0, self.u1)
        radius = self.r0 + (self.r1 - self.r0) * (t - self.u0) / self.length
        if self.shape == "box":
            corner = 0.35 * radius
            du = np.abs(u - (self.u0 + self.u1) / 2) - (self.length / 2 + radius - corner)
            dv = np.abs(v) - (radius - corner)
            outside = np.hypot(np.maximum(du, 0), np.maximum(dv, 0))
            return outside + np.minimum(np.maximum(du, dv), 0) - corner
        return np.hypot(u - t, v) - radius


@dataclass
class Puppet:
    """A sampled body: parts (torso first), global motion and the static background.

    ``view`` (3x3) maps the body's motion space to the frame; :func:`fit_to_frame` sets it so
    that the body stays in frame over a given stretch of time.
    """

    parts: list[Part]
    background: np.ndarray
    base_angle: float
    shift: tuple[Oscillation, Oscillation]
    turn: Oscillation
    zoom: Oscillation
    breathe: tuple[Oscillation, Oscillation]
    draw_order: list[int]
    view: np.ndarray = field(default_factory=lambda: np.eye(3))


def _make_part(
    rng: np.random.Generator, *, u0: float, u1: float, r0: float, r1: float, shape: str,
    parent: int | None, anchor: tuple[float, float], rest_angle: float, swing: float,
    bend: float, swell: float, layer: int, hue: float,
) -> Part:
    radius = max(r0, r1)
    margin = 3 + bend * max(abs(u0), abs(u1)) + radius * swell
    width = int(math.ceil(u1 - u0 + 2 * radius + 2 * margin))
    height = int(math.ceil(2 * radius * (1 + swell) + 2 * margin))
    return Part(
        u0=u0, u1=u1, r0=r0, r1=r1, shape=shape,
        texture=random_texture(rng, height, width, hue),
        parent=parent, anchor=anchor, rest_angle=rest_angle,
        swing=Oscillation.random(rng, swing), bend=Oscillation.random(rng, bend),
        swell=Oscillation.random(rng, swell), layer=layer,
        origin=(radius + margin - u0, height / 2),
    )


def sample_puppet(rng: np.random.Generator, size: int) -> Puppet:
    """Draw a body plan, textures, motion parameters and a background for one video.

    Lengths are drawn for a 128-pixel frame and scaled with ``size``; :func:`fit_to_frame`
    later shrinks and centres the whole motion if it would leave the frame.
    """
    s = size / 128
    background_hue = rng.uniform(0, 1)
    body_hue = background_hue + rng.uniform(0.2, 0.8)  # keep the body's colours apart from the background's

    def hue() -> float:
        return body_hue + rng.uniform(-0.2, 0.2)

    torso_half = rng.uniform(16, 24) * s
    torso_radius = rng.uniform(12, 18) * s
    parts = [
        _make_part(
            rng, u0=-torso_half, u1=torso_half, r0=torso_radius * rng.uniform(0.8, 1.1),
            r1=torso_radius * rng.uniform(0.8, 1.1), shape=str(rng.choice(["capsule", "ellipse", "box"])),
            parent=None, anchor=(0.0, 0.0), rest_angle=0.0, swing=0.0,
            bend=rng.uniform(0.0, 0.25), swell=rng.uniform(0.0, 0.1), layer=0, hue=hue(),
        )
    ]
    # Limb sockets: angles around the torso (0 = along +u, the torso's "down"): hips, shoulders, sides.
    sockets = [rng.uniform(0.5, 1.1), -rng.uniform(0.5, 1.1), math.pi - rng.uniform(0.4, 1.0),
               -(math.pi - rng.uniform(0.4, 1.0)), rng.uniform(1.3, 1.8), -rng.uniform(1.3, 1.8)]
    for socket_index in rng.choice(len(sockets), size=int(rng.integers(2, 5)), replace=False):
        socket = sockets[int(socket_index)]
        anchor = (math.cos(socket) * torso_half * 0.9, math.sin(socket) * torso_radius * 0.8)
        layer = int(rng.choice([-1, 1]))
        parent, rest = 0, socket + rng.uniform(-0.4, 0.4)
        for depth in range(int(rng.integers(1, 3))):
            length = rng.uniform(16, 26) * s
            radius = rng.uniform(5.5, 9) * s
            parts.append(
                _make_part(
                    rng, u0=0.0, u1=length, r0=radius, r1=radius * rng.uniform(0.6, 1.0),
                    shape=str(rng.choice(["capsule", "capsule", "ellipse", "box"])), parent=parent,
                    anchor=anchor, rest_angle=rest, swing=math.radians(rng.uniform(30, 65) if depth == 0 else rng.uniform(25, 60)),
                    bend=rng.uniform(0.0, 0.35), swell=rng.uniform(0.0, 0.15), layer=layer, hue=hue(),
                )
            )
            parent, anchor, rest = len(parts) - 1, (length, 0.0), rng.uniform(-0.9, 0.9)
    if rng.uniform() < 0.8:
        head_radius, neck = rng.uniform(10, 15) * s, rng.uniform(2, 5) * s
        parts.append(
            _make_part(
                rng, u0=neck + head_radius * 0.6, u1=neck + head_radius * 1.4, r0=head_radius,
                r1=head_radius * rng.uniform(0.8, 1.0), shape=str(rng.choice(["capsule", "ellipse", "box"])),
                parent=0, anchor=(-torso_half, 0.0), rest_angle=math.pi + rng.uniform(-0.3, 0.3),
                swing=math.radians(rng.uniform(15, 40)), bend=0.0, swell=rng.uniform(0.0, 0.08), layer=2, hue=hue(),
            )
        )

    # Smoother and flatter than the body, and darker or lighter than it, so the body stands out.
    background = random_texture(
        rng, size, size, background_hue, periods=(14.0, 40.0), strength=(0.15, 0.45), blotches=(16.0, 48.0)
    )
    background = background * rng.uniform(0.35, 0.6) + (rng.uniform(0.4, 0.55) if rng.uniform() < 0.5 else 0.0)
    return Puppet(
        parts=parts,
        background=np.clip(background, 0, 1).astype(np.float32),
        base_angle=math.pi / 2 + rng.uniform(-1.0, 1.0),
        shift=(Oscillation.random(rng, rng.uniform(8, 18) * s), Oscillation.random(rng, rng.uniform(6, 14) * s)),
        turn=Oscillation.random(rng, math.radians(rng.uniform(10, 35))),
        zoom=Oscillation.random(rng, rng.uniform(0.0, 0.15)),
        breathe=(Oscillation.random(rng, rng.uniform(0.0, 0.1)), Oscillation.random(rng, rng.uniform(0.0, 0.1))),
        draw_order=sorted(range(len(parts)), key=lambda i: (parts[i].layer, i)),
    )


# ----------------------------------------------------------------------------- rendering
def _affine(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty], [0, 0, 1]], np.float64)


def part_transforms(puppet: Puppet, t: float) -> list[tuple[np.ndarray, tuple[float, float]]]:
    """Per part: the local-to-frame 3x3 transform and its (u, v) stretch at time t."""
    torso = puppet.view @ _affine(puppet.base_angle + puppet.turn(t), 1 + puppet.zoom(t), puppet.shift[0](t), puppet.shift[1](t))
    out: list[tuple[np.ndarray, tuple[float, float]]] = []
    for part in puppet.parts:
        if part.parent is None:
            out.append((torso, (1 + puppet.breathe[0](t), 1 + puppet.breathe[1](t))))
            continue
        parent_matrix, parent_stretch = out[part.parent]
        u, v = part.anchor
        joint = parent_matrix @ _affine(0.0, 1.0, u * parent_stretch[0], v * parent_stretch[1])
        out.append((joint @ _affine(part.rest_angle + part.swing(t), 1.0, 0.0, 0.0), (1.0, 1 + part.swell(t))))
    return out


def _local_box(part: Part, stretch: tuple[float, float], bend: float) -> np.ndarray:
    """Corners (3, 4) of a local rectangle holding the deformed part, as homogeneous points."""
    radius = max(part.r0, part.r1) * stretch[1] + abs(bend) * max(part.u0**2, part.u1**2) / part.length + 1
    u0, u1 = (part.u0 - max(part.r0, part.r1)) * stretch[0] - 1, (part.u1 + max(part.r0, part.r1)) * stretch[0] + 1
    return np.array([[u0, u1, u1, u0], [-radius, -radius, radius, radius], [1, 1, 1, 1]])


def fit_to_frame(puppet: Puppet, times: np.ndarray, size: int, margin: float = 0.0) -> None:
    """Set ``puppet.view`` so the body's bounding box over ``times`` is centred in the frame and,
    if it is larger than the frame less ``margin`` on each side, shrunk to fit."""
    puppet.view = np.eye(3)
    corners = []
    for t in times:
        for part, (matrix, stretch) in zip(puppet.parts, part_transforms(puppet, float(t))):
            corners.append((matrix @ _local_box(part, stretch, part.bend(float(t))))[:2])
    points = np.concatenate(corners, axis=1)
    low, high = points.min(axis=1), points.max(axis=1)
    scale = min(1.0, size * (1 - 2 * margin) / float(max(high - low)))
    centre = (low + high) / 2
    puppet.view = _affine(0.0, scale, size / 2 - scale * centre[0], size / 2 - scale * centre[1])


def render_frame(puppet: Puppet, t: float, size: int) -> np.ndarray:
    """One (size, size, 3) float32 frame: background, then the parts back to front."""
    frame = puppet.background.copy()
    transforms = part_transforms(puppet, t)
    for index in puppet.draw_order:
        part = puppet.parts[index]
        matrix, (stretch_u, stretch_v) = transforms[index]
        bend = part.bend(t)
        box = (matrix @ _local_box(part, (stretch_u, stretch_v), bend))[:2]
        x0, y0 = (max(0, int(math.floor(c))) for c in box.min(axis=1))
        x1, y1 = (min(size, int(math.ceil(c)) + 1) for c in box.max(axis=1))
        if x0 >= x1 or y0 >= y1:
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        inverse = np.linalg.inv(matrix)
        u = (inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]) / stretch_u
        v = (inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]) / stretch_v
        v = v - bend * u * u / part.length  # undo the bend: texture coordinates of each pixel
        distance = part.signed_distance(u, v)
        alpha = np.clip(0.5 - distance, 0.0, 1.0)[..., None]
        texture = cv2.remap(
            part.texture, (u + part.origin[0]).astype(np.float32), (v + part.origin[1]).astype(np.float32),
            cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT,
        )
        shade = 0.6 + 0.4 * np.sqrt(np.clip(-distance / max(part.r0, part.r1), 0.0, 1.0))  # darker rims separate parts
        window = frame[y0:y1, x0:x1]
        frame[y0:y1, x0:x1] = window * (1 - alpha) + texture * shade[..., None] * alpha
    return frame


def render_video(seed: int, split: str, index: int, num_frames: int = 32, size: int = 128) -> np.ndarray:
    """The video ``(seed, split, index)`` as (T, size, size, 3) uint8 RGB."""
    rng = video_rng(seed, split, index)
    puppet = sample_puppet(rng, size)
    times = rng.uniform(0, 200) + np.arange(num_frames)  # a random stretch of the motion
    fit_to_frame(puppet, times, size)
    frames = [render_frame(puppet, float(t), size) for t in times]
    return np.round(np.stack(frames) * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- dataset on disk
def write_video_folder(frames: np.ndarray, folder: Path) -> None:
    """Write frames as ``0000.png``... into ``folder``, atomically (:func:`fomm_model.checkpoint.atomic_dir`)."""
    with atomic_dir(folder) as temporary:
        for t, frame in enumerate(frames):
            name = temporary / f"{t:04d}.png"
            if not cv2.imwrite(str(name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
                raise OSError(f"could not write {name}")


def _write_one(job: tuple[SyntheticSpec, Path, str, int]) -> tuple[str, int]:
    spec, out, split, index = job
    write_video_folder(render_video(spec.seed, split, index, spec.num_frames, spec.size), out / split / video_name(split, index))
    return split, index


def write_dataset(
    out_dir: str | Path,
    spec: SyntheticSpec,
    progress: Callable[[Iterator[tuple[str, int]], int], Iterator[tuple[str, int]]] | None = None,
    workers: int = 1,
) -> Path:
    """Write ``out_dir/train/<video>/`` and ``out_dir/test/<video>/`` plus ``synthetic.json``.

    Refuses a folder that already holds a dataset (so one cannot mix two seeds by accident).
    ``progress`` may wrap the iteration over finished (split, index), e.g. with tqdm.
    ``workers`` > 1 renders videos in that many processes; each video depends only on
    (seed, split, index), so the files are the same whatever the number of workers.
    """
    out = Path(out_dir)
    for split in SPLITS:
        if (out / split).exists() and any((out / split).iterdir()):
            raise FileExistsError(f"{out / split} is not empty; write the dataset to a new folder or delete it first")
    ours = {*SPLITS, "synthetic.json"}  # a dataset of its own whose videos were deleted may be written again
    held = sorted(p.name for p in out.iterdir() if p.name not in ours and not p.name.startswith(".")) if out.is_dir() else []
    if held:  # videos of a flat dataset: train/ and test/ beside them would hide them from every command
        raise FileExistsError(
            f"{out} already holds {', '.join(held[:3])}{' and more' if len(held) > 3 else ''}; write the dataset to a "
            "new or empty folder"
        )
    jobs = [(spec, out, split, i) for split in SPLITS for i in range(spec.count(split))]
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(workers))
            done: Iterator[tuple[str, int]] = pool.map(_write_one, jobs, chunksize=4)
        else:
            done = map(_write_one, jobs)
        if progress is not None:
            done = progress(done, len(jobs))
        for _ in done:
            pass
    with atomic_path(out / "synthetic.json") as manifest:
        manifest.write_text(json.dumps({"generator": "fomm make-synthetic", "format_version": _FORMAT_VERSION, **asdict(spec)}, indent=2) + "\n")
    return out
