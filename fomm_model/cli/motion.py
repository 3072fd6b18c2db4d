"""``fomm motion``: write the motion file that the Blender add-on imports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ..framing import FIT_MODES
from ..loading import load_model
from ..motion_file import check_motion_name, compute_motion, write_motion
from ..video import MediaError, VideoReader, read_image, read_video
from ..schemas.motion_format import side_files
from . import UserError, add_device_option, check_fps, check_outputs, check_positive, check_reference, chosen_device, counted, reference_frame

PROGRESS_STYLES = ("bar", "lines", "none")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "motion",
        help="compute a motion file (keypoints, blend weights, optional flow and frames) for Blender",
        description="Run a FOMM model on a source image and a driving video and write the motion "
        "as a versioned JSON file: the source image, per-frame keypoints and Jacobians (raw and "
        "normalised), the model's blend weights over the source, and optionally the dense flow and "
        "the generated frames. Import it in Blender with File > Import > FOMM Motion.",
    )
    parser.add_argument("source", type=Path, help="source image (PNG, JPEG, ...)")
    parser.add_argument("driving", type=Path, help="driving video (mp4, mov, webm, mkv, avi, gif, animated webp/png), folder of frames, or image")
    parser.add_argument("-o", "--output", type=Path, required=True, help="motion file to write (name it *.fomm.json: the ComfyUI pack lists those)")
    parser.add_argument("--checkpoint", default="default", help='checkpoint path, or "default" for the embedded model (default)')
    parser.add_argument("--config", help="preset name or YAML config (default: stored in or inferred from the checkpoint)")
    parser.add_argument("--absolute", dest="relative", action="store_false", help="use the driving keypoints as they are instead of relative motion")
    parser.add_argument("--no-relative-jacobian", dest="relative_jacobian", action="store_false", help="in relative mode, keep the driving Jacobians as they are")
    parser.add_argument("--no-adapt-scale", dest="adapt_scale", action="store_false", help="in relative mode, do not scale the motion to the source's keypoint spread")
    parser.add_argument("--reference", default="first", type=reference_frame, metavar="first|best|N", help='driving frame the relative motion starts from: "first" (default), "best" (the frame posed most like the source) or a 0-based index')
    parser.add_argument("--fit", "--framing", dest="fit", choices=FIT_MODES, default="pad",
                        help="how images are fitted to the model's frame size: pad (default), crop or stretch")  # fmt: skip
    parser.add_argument("--size", type=_size, help="frame size HxW the model runs at (default: the size it was trained at)")
    parser.add_argument("--fps", type=float, help="frame rate to record (default: the video's)")
    parser.add_argument("--max-frames", type=int, help="use at most this many driving frames")
    parser.add_argument("--flow", action="store_true", help="also store the exact dense flow of every frame (for the mesh-cache bake)")
    parser.add_argument("--frames", action="store_true", help="also generate the animated frames into <output>_frames/")
    parser.add_argument("--embed-image", action="store_true", help="store the source image inside the motion file instead of next to it")
    parser.add_argument("--texture-size", type=int, default=2048, help="longest side of the stored source texture (default 2048)")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per network call (default 8)")
    add_device_option(parser)
    parser.add_argument("--progress", choices=PROGRESS_STYLES, default="bar", help='"lines" prints "progress STAGE DONE TOTAL" lines for other programs')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_positive(args, "max_frames")
    check_fps(args.fps)
    check_positive(args, "batch_size", "texture_size")
    check_reference(args)
    check_motion_name(args.output)
    image_file, frames_directory = side_files(args.output)
    check_outputs(
        [args.source, args.driving],
        [args.output] + ([] if args.embed_image else [image_file]),
        [frames_directory] if args.frames else [],
    )
    source, video = _read_inputs(args)
    model = load_model(args.checkpoint, config=args.config, device=chosen_device(args))
    with _Progress(args.progress, video.info.frame_count) as progress:
        motion = compute_motion(
            model,
            source,
            video,
            relative=args.relative,
            relative_jacobian=args.relative_jacobian,
            adapt_scale=args.adapt_scale,
            reference=args.reference,
            fps=video.info.fps,
            framing=args.fit,
            frame_size=args.size,
            flow=args.flow,
            frames=args.frames,
            batch_size=args.batch_size,
            texture_size=args.texture_size,
            progress=progress,
        )
    path = write_motion(args.output, motion, embed_image=args.embed_image)
    print(f"wrote {path} ({counted(motion.num_frames, 'frame')}, {counted(motion.num_kp, 'keypoint')})")
    return 0


def _read_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, VideoReader]:
    """The source image and a re-iterable reader over the driving frames (at most
    ``--max-frames``), read by :mod:`fomm_model.video` like every other command."""
    for path, what in ((args.source, "source image"), (args.driving, "driving video")):
        if not path.exists():
            raise UserError(f"{what} {path} not found")
    try:
        source = read_image(args.source)
    except MediaError as exc:
        raise UserError(f"cannot read source image: {exc}") from None
    return source, read_video(args.driving, fps=args.fps, max_frames=args.max_frames)


class _Progress:
    """tqdm bars for people, or one parseable line per update for the Blender add-on."""

    def __init__(self, style: str, expected_frames: int | None):
        self.style = style
        self.expected = expected_frames
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        total = total if total is not None else self.expected
        if self.style == "lines":
            print(f"progress {stage} {done} {total if total is not None else '?'}", flush=True)
        elif self.style == "bar":
            if stage not in self.bars:  # (not `get() or`: a bar without a total has no truth value)
                self.bars[stage] = tqdm(total=total, desc=stage, unit="frame", file=sys.stderr)
            self.bars[stage].update(done - self.bars[stage].n)

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in self.bars.values():
            bar.close()


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 256x256, got {text!r}") from None
    return height, width
