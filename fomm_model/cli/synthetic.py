"""``fomm make-synthetic``: a reproducible dataset of articulated puppets for training and tests."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from . import UserError, check_positive


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "make-synthetic",
        help="write a synthetic training dataset (articulated textured puppets)",
        description="Write OUT_DIR/train/<video>/ and OUT_DIR/test/<video>/, each video a folder of PNG "
        "frames 0000.png, ...: textured puppets whose torso, head and limbs move independently and bend, "
        "on static textured backgrounds. The same seed always gives the same videos; another seed gives "
        "new ones (held-out data). Prints the test split's no-motion L1 baseline.",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to create (must not already hold a dataset)")
    parser.add_argument("--num-videos", type=int, required=True, help="videos in all; 20%% (at least one) go to test/")
    parser.add_argument("--seed", type=int, required=True, help="dataset seed (>= 0)")
    parser.add_argument("--frames", type=int, default=32, help="frames per video (default 32)")
    parser.add_argument("--size", type=int, default=128, help="frame width and height in pixels (default 128)")
    parser.add_argument("--test-videos", type=int, help="number of test videos (default: 20%% of --num-videos)")
    parser.add_argument("--workers", type=int, default=1, help="render videos in this many processes (same files whatever the number)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.config import DatasetParams
    from ..training.data import FramesDataset, no_motion_l1
    from ..training.synthetic import SyntheticSpec, write_dataset

    if args.test_videos is None:
        spec = SyntheticSpec.from_total(args.num_videos, args.seed, num_frames=args.frames, size=args.size)
    else:
        spec = SyntheticSpec(args.seed, args.num_videos - args.test_videos, args.test_videos, args.frames, args.size)

    def progress(jobs: Iterator[tuple[str, int]], total: int) -> Iterator[tuple[str, int]]:
        return iter(tqdm(jobs, total=total, unit="video", desc="make-synthetic", disable=args.quiet))

    check_positive(args, "workers")
    try:
        out = write_dataset(Path(args.out_dir), spec, progress, workers=args.workers)
    except FileExistsError as exc:
        raise UserError(str(exc)) from None
    test = FramesDataset(DatasetParams(root_dir=str(out), frame_shape=(spec.size, spec.size, 3)), is_train=False)
    print(f"wrote {spec.num_train} train and {spec.num_test} test videos ({spec.num_frames} frames, {spec.size}x{spec.size}) to {out}")
    print(f"no-motion L1 of the test split (first frame as the prediction): {no_motion_l1(test):.4f}")
    return 0
