"""Regenerate the sample inputs the shipped workflows open with (``workflows/inputs/``).

    python -m tests.comfyui.make_samples

They are puppets from the synthetic dataset the embedded default model is trained on, drawn
with a seed the training never uses: a 160x128 source still (not the model's square size, to
show the framing) and a 16-frame driving video of another puppet, as an MPEG-4 file that core
ComfyUI's Load Video reads.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fomm_model.checkpoint import atomic_path
from fomm_model.training.synthetic import render_video

SAMPLES = Path(__file__).resolve().parents[2] / "workflows" / "inputs"
SOURCE = SAMPLES / "fomm_source.png"
DRIVING = SAMPLES / "fomm_driving.mp4"
SEED = 20_251_125
DRIVING_FRAMES = 16
DRIVING_FPS = 12.0


def source_image() -> np.ndarray:
    """(128, 160, 3) uint8: a 160x160 puppet frame with the top and bottom 16 rows cut off."""
    return render_video(SEED, "test", 0, num_frames=1, size=160)[0, 16:144]


def driving_video() -> np.ndarray:
    return render_video(SEED, "test", 1, num_frames=DRIVING_FRAMES, size=128)


def write_samples() -> None:
    SAMPLES.mkdir(parents=True, exist_ok=True)
    with atomic_path(SOURCE) as tmp:
        if not cv2.imwrite(str(tmp.with_suffix(".png")), cv2.cvtColor(source_image(), cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {SOURCE}")
        tmp.with_suffix(".png").replace(tmp)
    frames = driving_video()
    with atomic_path(DRIVING) as tmp:
        target = tmp.with_suffix(".mp4")  # OpenCV picks the container from the suffix
        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), DRIVING_FPS, frames.shape[2:0:-1])
        if not writer.isOpened():
            raise OSError("OpenCV cannot write MPEG-4 video here")
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        target.replace(tmp)


if __name__ == "__main__":
    write_samples()
    print(f"wrote {SOURCE} and {DRIVING}")
