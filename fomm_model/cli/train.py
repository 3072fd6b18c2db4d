"""``fomm train`` and the original's two evaluation modes, ``fomm reconstruct`` and ``fomm animate-pairs``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import UserError, add_device_option, check_fps, check_positive, chosen_device, counted

if TYPE_CHECKING:  # the commands import torch only when they run
    from ..model import FirstOrderModel
    from ..training.config import RunConfig
    from ..training.data import FramesDataset


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a model on a folder of videos (also under torchrun for many processes)",
        description="Self-supervised FOMM training with the original objective and schedule. "
        "Run it under `torchrun --nproc_per_node N` to train on N processes (GPUs, or CPUs with gloo).",
    )
    train.add_argument("--config", help="preset name or YAML in the original schema (default with --resume: the run's config.yaml; with --checkpoint: the one that checkpoint was trained with, which a run folder and models exported by fomm train carry)")
    train.add_argument("--data", type=Path, help="dataset folder (overrides dataset_params.root_dir)")
    train.add_argument("--out", type=Path, required=True, help="run folder for checkpoints, logs and pictures")
    train.add_argument("--checkpoint", type=Path, help='weights to fine-tune from: a published .pth.tar, a run folder, or "default"')
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--max-steps", type=int, help="stop after this many optimisation steps in total")
    train.add_argument("--vgg", type=Path, help="VGG19 ImageNet weights for the perceptual loss (.pth or .safetensors)")
    train.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    train.add_argument("--workers", type=int, default=2, help="data loading processes per training process (default 2)")
    train.add_argument("--seed", type=int, help="seed of the weights, the data order and the 80/20 split (default 0; "
                       "with --resume, the run's own)")
    train.add_argument("--save-every", type=int, default=250, help="steps between resumable checkpoints (default 250)")
    train.add_argument("--vis-every", type=int, default=500, help="steps between visualisation images (default 500; 0: never)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=run_train)

    rec = subparsers.add_parser(
        "reconstruct",
        help="mean L1 of reconstructing test videos from their first frame",
        description="The original reconstruction mode: every test video is regenerated from its first "
        "frame with the keypoints of each frame (absolute motion); prints the L1 per video and overall, "
        "and the no-motion baseline for scale.",
    )
    rec.add_argument("--checkpoint", required=True, help='checkpoint file, a training run folder, or "default"')
    rec.add_argument("--data", type=Path, required=True, help="dataset folder (its test/ split is used when present)")
    rec.add_argument("--config", help="config for the dataset layout (default: frame size of the model)")
    rec.add_argument("--num-videos", type=int, help="evaluate only the first N test videos")
    rec.add_argument("--out", type=Path, help="write report.json and PNG strips here")
    add_device_option(rec)
    rec.add_argument("--batch-size", type=int, default=16, help="frames per model call (default 16)")
    rec.add_argument("--seed", type=int, help=SEED_HELP)
    rec.set_defaults(func=run_reconstruct)

    pairs = subparsers.add_parser(
        "animate-pairs",
        help="animate test videos' first frames with other test videos' motion",
        description="The original animation mode: pairs of test videos are drawn (seeded), or read from the "
        "config's pairs_list, and the first frame of each source video is animated with the driving video, with "
        "the config's animate_params (relative motion in the presets). Writes <driving>-<source>.mp4 (source and "
        "driving with keypoints, deformed source, occlusion, prediction) and png/<driving>-<source>.png (the "
        "predicted frames) for each pair.",
    )
    pairs.add_argument("--checkpoint", required=True, help='checkpoint file, a training run folder, or "default"')
    pairs.add_argument("--data", type=Path, required=True, help="dataset folder (its test/ split is used when present)")
    pairs.add_argument("--out", type=Path, required=True, help="folder for the videos and png/ strips")
    pairs.add_argument("--config", help="config for the dataset layout, pairs_list and animate_params "
                       "(default: frame size of the model, relative motion and Jacobians, 50 pairs)")
    pairs.add_argument("--num-pairs", type=int, help="how many pairs (default: the config's animate_params.num_pairs)")
    chosen = pairs.add_mutually_exclusive_group()
    chosen.add_argument("--pairs-list", type=Path, help="CSV with source and driving columns of video names "
                        "(default: the config's dataset_params.pairs_list, else a seeded random draw)")
    chosen.add_argument("--random-pairs", action="store_true",
                        help="a seeded random draw even where the config names a pairs_list")
    pairs.add_argument("--fps", type=float, default=25.0, help="frame rate of the written videos (default 25)")
    add_device_option(pairs)
    pairs.add_argument("--batch-size", type=int, default=16, help="frames per model call (default 16)")
    pairs.add_argument("--seed", type=int, help=SEED_HELP)
    pairs.set_defaults(func=run_animate_pairs)


SEED_HELP = (
    "for a folder without train/ and test/: the --seed of the training run, which drew the 80/20 split "
    "(default: the seed of the run --checkpoint names, else 0)"
)


def run_train(args: argparse.Namespace) -> int:
    from ..checkpoint import CHECKPOINT_NAME
    from ..training.config import RunConfig, carried_training_config
    from ..training.trainer import Trainer, TrainingOptions, no_run_to_resume

    check_positive(args, "max_steps", "save_every")
    if args.vis_every < 0 or args.workers < 0:
        raise UserError("--vis-every and --workers cannot be negative")
    if args.resume and args.checkpoint is not None:
        raise UserError("--checkpoint starts a new run from its weights and --resume continues this run from its own: give one of them")
    if args.resume and not (args.out / CHECKPOINT_NAME).is_file():  # before its config.yaml is looked for
        raise UserError(no_run_to_resume(args.out))
    if args.config is not None:
        run = RunConfig.from_yaml(args.config)
    elif args.resume:
        run = RunConfig.from_yaml(args.out / "config.yaml")
    elif args.checkpoint is None:
        raise UserError("--config is required (a preset such as vox-256 or a YAML file)")
    else:
        carried = carried_training_config(args.checkpoint)
        if carried is None:
            raise UserError(
                f"--config is required: {args.checkpoint} does not carry the settings it was trained with "
                "(give a preset such as vox-256 or a YAML file)"
            )
        if os.environ.get("RANK", "0") == "0":  # once under torchrun
            print(
                f"fomm train: no --config: fine-tuning with the settings {args.checkpoint} was trained with "
                f"({args.out / 'config.yaml'} will show them; give --config to change them)",
                file=sys.stderr,
            )
        run = carried
    if args.data is None and not Path(run.dataset.root_dir).exists():
        raise UserError(f"dataset folder {run.dataset.root_dir} (from the config) does not exist; pass --data DIR")
    check_out_folder(args.out, args.data or Path(run.dataset.root_dir))
    options = TrainingOptions(
        out_dir=args.out,
        data_dir=args.data,
        checkpoint=args.checkpoint,
        resume=args.resume,
        max_steps=args.max_steps,
        vgg_weights=args.vgg,
        device=args.device,
        num_workers=args.workers,
        seed=args.seed,
        save_every=args.save_every,
        vis_every=args.vis_every,
        progress=not args.no_progress,
    )
    trainer = Trainer(run, options)
    try:
        result = trainer.train()
    finally:
        from ..training import distributed

        distributed.teardown()
    if trainer.info.is_main and result.steps_run:
        print(f"trained {result.steps} steps; checkpoint {result.checkpoint}; model {result.model}")
    return 0


def run_reconstruct(args: argparse.Namespace) -> int:
    from ..training.reconstruct import evaluate_reconstruction

    check_positive(args, "batch_size", "num_videos")
    check_out_folder(args.out, args.data)
    model, run, dataset = load_for_evaluation(args, "reconstruct")

    def show(score) -> None:
        print(f"{score.name}\tL1 {score.l1:.5f}\tno-motion {score.no_motion_l1:.5f}", flush=True)

    def skip(video) -> None:
        print(f"fomm reconstruct: skipped {video.name}: {video.reason}", file=sys.stderr, flush=True)

    report = evaluate_reconstruction(
        model, dataset, args.num_videos, args.out, args.batch_size, on_video=show, on_skip=skip
    )
    if report.skipped:
        print(f"fomm reconstruct: {len(report.skipped)} unreadable video(s) left out of the score", file=sys.stderr)
    print(
        f"overall: L1 {report.l1:.5f} over {counted(report.frames, 'frame')} of {counted(len(report.videos), 'video')}; "
        f"no-motion baseline {report.no_motion_l1:.5f}; ratio {report.ratio:.3f}; "
        f"keypoint spread {report.kp_spread:.3f} of the frame",
        file=sys.stdout,
    )
    return 0


def run_animate_pairs(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..training.animate_pairs import animate_pairs
    from ..training.data import PairedDataset
    from ..video import WRITABLE_VIDEO_SUFFIXES

    check_positive(args, "batch_size", "num_pairs")
    check_fps(args.fps)
    check_out_folder(args.out, args.data)
    if args.pairs_list is not None and not args.pairs_list.is_file():
        raise UserError(f"pairs list {args.pairs_list} not found")
    model, run, dataset = load_for_evaluation(args, "animate", **({"pairs_list": None} if args.random_pairs else {}))
    video_format = run.animate.format if run.animate.format.startswith(".") else f".{run.animate.format}"
    if video_format.lower() not in WRITABLE_VIDEO_SUFFIXES:
        raise UserError(
            f"animate_params.format {run.animate.format!r} in {args.config} cannot be written: "
            f"use one of {', '.join(WRITABLE_VIDEO_SUFFIXES)}"
        )
    num_pairs = args.num_pairs if args.num_pairs is not None else run.animate.num_pairs
    if args.pairs_list is None and dataset.params.pairs_list is not None and not Path(dataset.params.pairs_list).is_file():
        raise UserError(
            f"pairs list {dataset.params.pairs_list} (dataset_params.pairs_list of {args.config}) not found: give "
            "--pairs-list CSV, or --random-pairs for a seeded random draw"
        )
    if len(dataset) < 2 and args.pairs_list is None and dataset.params.pairs_list is None:
        print(f"fomm animate-pairs: note: {args.data} has one test video, so its only pair animates it with itself", file=sys.stderr)
    pairs = PairedDataset(dataset, num_pairs, pairs_list=args.pairs_list)
    with tqdm(total=len(pairs), unit="pair", desc="animate", disable=None) as bar:
        done = animate_pairs(
            model, pairs, args.out, run.animate.normalization_params,
            video_format=video_format, fps=args.fps, batch_size=args.batch_size, on_pair=lambda _: bar.update(),
            on_skip=lambda reason: (bar.update(), bar.write(f"fomm animate-pairs: skipped a pair: {reason}", file=sys.stderr)),
        )
    if len(done) < len(pairs):
        print(f"fomm animate-pairs: {len(pairs) - len(done)} pair(s) with an unreadable video left out", file=sys.stderr)
    print(f"animated {len(done)} pairs into {args.out}: <driving>-<source>{video_format} and png/<driving>-<source>.png")
    return 0


def check_out_folder(out: Path | None, data: Path) -> None:
    """An evaluation's output folder receives files; it is never a file, nor inside the dataset,
    where its pictures would be read as test videos next time."""
    if out is None:
        return
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file: give a folder name for the output")
    if out.resolve() == data.resolve() or data.resolve() in out.resolve().parents:
        raise UserError(f"--out {out} is inside the dataset {data}, where its pictures would become test videos: choose a folder outside it")


def _run_seed(checkpoint: str) -> int:
    """The seed a `fomm train` checkpoint, run folder or exported model was trained with,
    which drew its 80/20 split; 0 for other checkpoints."""
    from ..checkpoint import read_checkpoint
    from ..loading import resolve_checkpoint_path
    from ..training.trainer import STATE_KEY

    extra = read_checkpoint(resolve_checkpoint_path(checkpoint)).extra
    state = extra.get(STATE_KEY)
    stored = state.get("seed") if isinstance(state, dict) else extra.get("seed")  # a .pth.tar's state, a model's header
    try:
        return int(stored or 0)
    except (TypeError, ValueError):
        return 0


def load_for_evaluation(
    args: argparse.Namespace, mode: str, **dataset_params: Any
) -> tuple[FirstOrderModel, RunConfig, FramesDataset]:
    """The model, the run config (``--config``, else the defaults at the model's frame size)
    and the test videos of ``--data`` that the evaluation ``mode`` reads, with the config's
    dataset params and ``dataset_params`` replacing some of them."""
    from dataclasses import replace

    from ..loading import load_model
    from ..training.config import DatasetParams, RunConfig
    from ..training.data import FramesDataset

    model = load_model(args.checkpoint, device=chosen_device(args))
    seed = args.seed if args.seed is not None else 0
    if args.seed is None and not (Path(args.data) / "test").is_dir():  # a flat folder: the seed draws the tests
        seed = _run_seed(args.checkpoint)  # read only then: a published .pth.tar is hundreds of MB
        if seed:
            command = "reconstruct" if mode == "reconstruct" else "animate-pairs"
            print(f"fomm {command}: the test videos of the 80/20 split of the run's --seed {seed}", file=sys.stderr)
    if args.config:
        run = RunConfig.from_yaml(args.config)
    else:
        run = RunConfig(model=model.config, dataset=DatasetParams(frame_shape=(*model.config.frame_shape, 3)))
    params = replace(run.dataset, root_dir=str(args.data), **dataset_params)
    dataset = FramesDataset(params, is_train=False, random_seed=seed)
    if len(dataset) == 0:
        raise UserError(f"no test videos found in {args.data}")
    if all(video.frame_count < 2 for video in dataset.videos):
        raise UserError(
            f"every test video in {args.data} has a single frame, so there is no motion to {mode}; if these are "
            "the frames of one video, put them in a subfolder: a dataset holds one folder of frames per video"
        )
    return model, run, dataset
