"""Real input files for the motion tests: source pictures and driving videos, drawn here.

Two kinds, written as PNG and MP4 with OpenCV and read back by `fomm motion` exactly as a
user's files would be:
- a textured backdrop (gradient + checkerboard) with a bright blob that, in the video, slides
  to the right and grows: any model can run on it (the random fixture models of the CLI tests);
- a synthetic puppet video of a seed the embedded default model was not trained on, the kind
  of footage it knows, so its motion is meaningful (the Blender suite's real run).
Used by the torch-side tests only (numpy + OpenCV, and fomm_model for the puppets).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fomm_model.training.synthetic import render_video


def scene(height: int, width: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    """(height, width, 3) uint8 RGB picture; ``centre`` and ``radius`` in fractions of the width."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    picture = np.empty((height, width, 3), np.float32)
    picture[..., 0] = xs / width
    picture[..., 1] = ys / height
    picture[..., 2] = 0.35
    checker = ((xs * 8 / width).astype(int) + (ys * 8 / height).astype(int)) % 2 == 0
    picture[checker] *= 0.55
    cx, cy, r = centre[0] * width, centre[1] * width, radius * width
    blob = (xs - cx) ** 2 + (ys - cy) ** 2 < r * r
    picture[blob] = (1.0, 0.95, 0.3)
    return (picture * 255).round().astype(np.uint8)


def write_source(path: Path, height: int = 240, width: int = 320) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(scene(height, width, (0.4, 0.35), 0.12), cv2.COLOR_RGB2BGR))
    return path


def write_driving(path: Path, frames: int = 10, size: int = 128, fps: float = 12.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for t in range(frames):
        progress = t / max(frames - 1, 1)
        picture = scene(size, size, (0.35 + 0.25 * progress, 0.45), 0.15 + 0.05 * progress)
        writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_puppet_clip(folder: Path, seed: int, index: int, frames: int = 10, step: int = 3, fps: float = 12.0) -> tuple[Path, Path]:
    """``source.png`` (the clip's first frame) and ``driving.mp4`` (every ``step``-th frame of a
    synthetic puppet video, ``frames`` of them, so the puppet moves visibly) in ``folder``."""
    video = render_video(seed, "test", index, frames * step)[::step]
    folder.mkdir(parents=True, exist_ok=True)
    source, driving = folder / "source.png", folder / "driving.mp4"
    cv2.imwrite(str(source), cv2.cvtColor(video[0], cv2.COLOR_RGB2BGR))
    height, width = video.shape[1:3]
    writer = cv2.VideoWriter(str(driving), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {driving}")
    for picture in video:
        writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    writer.release()
    return source, driving
