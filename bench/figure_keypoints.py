"""The README figure of a model's keypoints: what they follow, and which part each one moves.

    python bench/figure_keypoints.py                        # embedded default model -> docs/keypoints.png
    python bench/figure_keypoints.py --checkpoint runs/x/model.safetensors --out kp.png

Rows are held-out synthetic puppet videos (a seed never used in training); columns are
frames of each video with the detected keypoints drawn, then the dense motion network's
masks for the last frame (each pixel coloured by the keypoint whose motion it follows,
background grey).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import fomm_model as fm
from fomm_model.training.synthetic import render_video
from fomm_model.video import write_image
from fomm_model.visualize import draw_keypoints, masks_to_color, side_by_side

HELD_OUT_SEED = 424242


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--out", type=Path, default=Path("docs/keypoints.png"))
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=5, help="frames shown per video")
    args = parser.parse_args()

    model = fm.load_model(args.checkpoint)
    size = model.config.frame_shape[0]
    rows = []
    for index in range(args.videos):
        video = torch.from_numpy(render_video(HELD_OUT_SEED, "test", index, num_frames=32, size=size))
        video = video.permute(0, 3, 1, 2).float() / 255
        frames = video[torch.linspace(0, 31, args.frames).round().long()]
        kp = model.detect_keypoints(frames)
        motion = model.dense_motion(frames[:1], kp[0], kp[-1])
        columns = [draw_keypoints(frames[i : i + 1], kp[i]) for i in range(args.frames)]
        columns.append(masks_to_color(motion["mask"], (size, size)))
        rows.append(side_by_side(columns)[0])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_image(args.out, torch.cat(rows, dim=-2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
