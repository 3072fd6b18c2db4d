"""The README figure: plain vs full-resolution output for a 1024x1024 source.

    python bench/figure_full_resolution.py                    # embedded default model -> docs/full_resolution.png
    python bench/figure_full_resolution.py --checkpoint vox.safetensors --source face.png --driving talk.mp4

Without ``--source``/``--driving`` the inputs are held-out synthetic puppet videos (the
kind the default model was trained on), the source rendered at 1024x1024. The figure shows,
for one driving frame: the source, the plain output (the model-size frame scaled up), the
full-resolution output, and a 4x zoom of the same corner of the last two.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

import fomm_model as fm
from fomm_model.footage import FootageOptions, animate_footage
from fomm_model.training.synthetic import render_video
from fomm_model.video import read_image, read_video, write_image
from fomm_model.visualize import side_by_side

HELD_OUT_SEED = 987654  # not a training seed: these puppets were never seen


def synthetic_inputs(size: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    source = render_video(HELD_OUT_SEED, "test", 0, num_frames=1, size=size)[0]
    driving = render_video(HELD_OUT_SEED, "test", 1, num_frames=frames, size=128)
    return _channels_first(source), _channels_first(driving)


def _channels_first(pixels) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [0, 1]."""
    return torch.from_numpy(pixels).movedim(-1, -3).float() / 255


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--source", type=Path, help="still image (default: a 1024x1024 synthetic puppet)")
    parser.add_argument("--driving", type=Path, help="driving video (default: a synthetic puppet video)")
    parser.add_argument("--frame", type=int, default=12, help="driving frame to show")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/full_resolution.png"))
    args = parser.parse_args()

    model = fm.load_model(args.checkpoint)
    source, driving = synthetic_inputs(1024, args.frame + 1)
    if args.source:
        source = read_image(args.source)
    if args.driving:
        driving = torch.stack([f for f, _ in zip(read_video(args.driving), range(args.frame + 1))])
    driving = driving[: args.frame + 1]
    results = {}
    for full_resolution in (False, True):
        frames = animate_footage(model, source, driving, options=FootageOptions(full_resolution=full_resolution))
        *_, results[full_resolution] = frames
    height, width = source.shape[-2:]
    zoom = (slice(None), slice(height // 2, height // 2 + height // 4), slice(width // 2, width // 2 + width // 4))

    def zoomed(image: torch.Tensor) -> torch.Tensor:
        return F.interpolate(image[zoom][None], size=(height, width), mode="nearest")[0]

    row = side_by_side([source[None], results[False][None], results[True][None], zoomed(results[False])[None], zoomed(results[True])[None]])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_image(args.output, F.interpolate(row, scale_factor=0.5, mode="area")[0])
    print(f"wrote {args.output}: source | plain | full resolution | plain, zoomed | full resolution, zoomed")


if __name__ == "__main__":
    main()
