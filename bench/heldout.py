"""The command line and data the reconstruction benchmarks share: a model and its test videos."""

from __future__ import annotations

import argparse
from dataclasses import replace

import fomm_model as fm
from fomm_model.training.config import DatasetParams
from fomm_model.training.data import FramesDataset, VideoReadError

HELD_OUT = "fomm make-synthetic data/synthetic-heldout --num-videos 41 --test-videos 40 --seed 1"


def model_and_videos(description: str) -> tuple[argparse.Namespace, fm.FirstOrderModel, FramesDataset, int]:
    """Parse --checkpoint, --data and --num-videos; load the model and the test videos of
    --data at its frame size. Returns the arguments, the model, the videos and how many to use."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--data", default="data/synthetic-heldout")
    parser.add_argument("--num-videos", type=int, default=40)
    args = parser.parse_args()
    model = fm.load_model(args.checkpoint)
    params = replace(DatasetParams(frame_shape=(*model.config.frame_shape, 3)), root_dir=args.data)
    try:
        videos = FramesDataset(params, is_train=False)
    except VideoReadError as error:
        raise SystemExit(f"{error}\n(the held-out puppets are made with `{HELD_OUT}`)") from None
    count = min(args.num_videos, len(videos))
    if count == 0:
        raise SystemExit(f"no test videos in {args.data}; the held-out puppets are made with `{HELD_OUT}`")
    return args, model, videos, count
