"""``fomm demo``: animate something at once on a fresh install, with the embedded model."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..loading import resolve_checkpoint_path
from . import UserError
from . import main as fomm_main

# Videos of this seed were never seen in training (the default model trains on seed 0).
DEMO_SEED = 2024


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="make a source image and a driving video and animate one with the other",
        description="Render a still of one synthetic puppet and a video of another (a seed the "
        "embedded model never saw), animate the still with the video's motion using the embedded "
        "default model, and write source.png, driving.mp4, result.mp4 (at the source's resolution: "
        "fomm animate --full-resolution) and visualization.mp4 (source | driving with keypoints | "
        "deformed source | occlusion | the generator's weight for the warped source | the model's own output).",
    )
    parser.add_argument("--out", type=Path, default=Path("fomm-demo"), help="output folder (default: fomm-demo)")
    parser.add_argument("--checkpoint", default="default", help='model to animate with (default: "default")')
    parser.add_argument("--frames", type=int, default=64, help="length of the driving video (default 64)")
    parser.add_argument("--size", type=int, default=256, help="width and height of the inputs in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help="which synthetic puppets to use")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.synthetic import render_video
    from ..video import VideoWriter, write_image

    if args.frames < 2 or args.size < 64 or args.size % 2:
        raise UserError("--frames must be at least 2, and --size even and at least 64 (video frames have even sides)")
    if args.seed < 0:
        raise UserError(f"--seed must be 0 or more, got {args.seed}")
    if not resolve_checkpoint_path(args.checkpoint).is_file():  # before the inputs are rendered
        raise UserError(f"--checkpoint {args.checkpoint}: no such file")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file: give --out a folder name (the demo writes four files into it)")
    out.mkdir(parents=True, exist_ok=True)
    source_path, driving_path = out / "source.png", out / "driving.mp4"
    source = render_video(args.seed, "test", 0, num_frames=1, size=args.size)[0]
    write_image(source_path, _to_tensor(source))
    with VideoWriter(driving_path, fps=12) as writer:
        for frame in render_video(args.seed, "test", 1, num_frames=args.frames, size=args.size):
            writer.write(_to_tensor(frame))
    print(f"wrote {source_path} and {driving_path} (synthetic puppets, seed {args.seed})")
    return fomm_main(
        [
            "animate", str(source_path), str(driving_path), "-o", str(out / "result.mp4"),
            "--checkpoint", args.checkpoint, "--full-resolution", "--visualize", str(out / "visualization.mp4"),
        ]
    )  # fmt: skip


def _to_tensor(frame) -> torch.Tensor:
    return torch.from_numpy(frame).permute(2, 0, 1).float() / 255
