"""``fomm animate``: animate a still image with the motion of a driving video."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ..footage import FootageOptions, animate_footage
from ..framing import FIT_MODES, Box, face_box, stable_face_box
from ..loading import load_model
from ..pipeline import AnimatedBatch, MotionOptions
from ..precision import PRECISIONS
from ..video import (
    IMAGE_SUFFIXES,
    VideoReader,
    VideoWriter,
    check_new_frame_folder,
    has_audio_track,
    names_frame_folder,
    read_image,
    read_video,
    write_image,
)
from ..visualize import visualize_generation
from . import UserError, add_device_option, check_fps, check_outputs, check_positive, check_reference, chosen_device, counted, reference_frame


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "animate",
        help="animate a still image with the motion of a driving video",
        description="Animate SOURCE (a still image) with the motion of DRIVING (a video, a folder of "
        "frames or a still image) and write the result to OUT at the source's resolution, at the "
        "driving video's frame rate, with its audio when ffmpeg is installed.",
    )
    parser.add_argument("source", help="still image to animate (png, jpg, webp; of a gif or an animated webp or png, the first frame)")
    parser.add_argument("driving", help="driving video (mp4, mov, webm, mkv, avi, gif, animated webp/png), folder of frames, or image")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="result video (.mp4 .mov .mkv .avi .webm), a name without a media suffix (out, take.1) for a folder of PNG "
        "frames, or an image file when DRIVING is a single frame",
    )
    parser.add_argument("--checkpoint", default="default", help='model checkpoint (default: "default", the embedded model)')
    add_device_option(parser)

    motion = parser.add_argument_group("motion transfer (as in the original demo)")
    mode = motion.add_mutually_exclusive_group()
    mode.add_argument("--relative", dest="relative", action="store_true", default=True,
                      help="move the source by the driving motion since the reference frame (default)")  # fmt: skip
    mode.add_argument("--absolute", dest="relative", action="store_false",
                      help="put the source keypoints where the driving keypoints are")  # fmt: skip
    motion.add_argument("--no-relative-jacobian", dest="relative_jacobian", action="store_false",
                        help="do not compose the local rotations/scalings relative to the reference frame")  # fmt: skip
    motion.add_argument("--adapt-scale", action=argparse.BooleanOptionalAction, default=True,
                        help="scale the motion by the ratio of source and driving object sizes (default: on)")  # fmt: skip
    reference = motion.add_mutually_exclusive_group()
    reference.add_argument("--reference", type=reference_frame, metavar="first|best|N",
                           help='driving frame the relative motion starts from: "first" (default), "best" (the frame '
                           'posed most like the source) or a 0-based index')  # fmt: skip
    reference.add_argument("--best-frame", dest="reference", action="store_const", const="best",
                           help="the same as --reference best")  # fmt: skip
    parser.set_defaults(reference="first")

    region = parser.add_argument_group("regions (default: the whole picture)")
    source_region = region.add_mutually_exclusive_group()
    source_region.add_argument("--source-box", type=_box, metavar="X,Y,W,H", help="animate this region of the source")
    source_region.add_argument("--source-face", action="store_true", help="animate the region around the source's face")
    driving_region = region.add_mutually_exclusive_group()
    driving_region.add_argument("--driving-box", type=_box, metavar="X,Y,W,H", help="take the motion from this region")
    driving_region.add_argument("--driving-face", action="store_true",
                                help="take the motion from one steady region around the driving video's face")  # fmt: skip
    region.add_argument("--fit", choices=FIT_MODES, default="pad",
                        help="how a region is brought to the model's size: pad (default), crop or stretch")  # fmt: skip

    output = parser.add_argument_group("output")
    output.add_argument("--full-resolution", action="store_true",
                        help="warp the full-resolution source and use generated pixels only where it is occluded")  # fmt: skip
    output.add_argument("--visualize", metavar="VIS", help="also write the side-by-side view (source, driving, "
                        "deformed, occlusion, the generator's source weight where it has one, result) at the "
                        "model's size to this video")  # fmt: skip
    output.add_argument("--fps", type=float, help="output frame rate (default: the driving video's, 25 for frames)")
    output.add_argument("--batch-size", type=int, default=8, help="frames per model call (default: 8)")
    output.add_argument("--precision", choices=PRECISIONS, default="fp32", help="decoder precision (default: fp32)")
    output.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_animate)


def _box(text: str) -> Box:
    try:
        return Box.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run_animate(args: argparse.Namespace) -> int:
    output = Path(args.output)
    outputs = [output] + ([Path(args.visualize)] if args.visualize else [])
    folders = [path for path in outputs if names_frame_folder(path)]
    check_outputs([Path(args.source), Path(args.driving)], [path for path in outputs if path not in folders], folders)
    for folder in folders:  # before any work, not when the first frame is written
        check_new_frame_folder(folder)
    check_fps(args.fps)
    check_positive(args, "batch_size")
    check_reference(args)
    single_image = output.suffix.lower() in IMAGE_SUFFIXES

    source = read_image(args.source)
    driving = read_video(args.driving, fps=args.fps)
    if single_image and not _single_frame(driving):
        raise UserError(f"{output} is an image but {args.driving} has several frames: write a video (.mp4) or a folder")
    model = load_model(args.checkpoint, device=chosen_device(args))
    options = FootageOptions(
        source_box=face_box(source) if args.source_face else args.source_box,
        driving_box=_driving_face_box(driving, args.quiet) if args.driving_face else args.driving_box,
        fit=args.fit,
        full_resolution=args.full_resolution,
    )
    if args.source_face:
        _say(args, f"source face region: {_describe(options.source_box)}")
    if args.driving_face:
        _say(args, f"driving face region: {_describe(options.driving_box)}")
    motion = MotionOptions(
        relative=args.relative,
        relative_jacobian=args.relative_jacobian,
        adapt_scale=args.adapt_scale,
        reference=args.reference,
    )
    if args.reference == "best":
        _say(args, "searching the driving video for the frame posed most like the source")

    # --fps relabels the frames, it does not resample them: the driving sound would drift
    retimed = args.fps is not None and driving.file_fps is not None and not math.isclose(args.fps, driving.file_fps, rel_tol=1e-4)
    total = driving.info.frame_count
    references: set[int] = set()
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=total, unit="frame", desc="animating", disable=args.quiet, file=sys.stderr))
        writer = None if single_image else stack.enter_context(
            VideoWriter(output, driving.info.fps, audio_from=None if driving.is_still or retimed else driving.path)
        )  # fmt: skip
        visualization = None
        if args.visualize:
            visualization = stack.enter_context(VideoWriter(args.visualize, driving.info.fps))

        def on_batch(batch: AnimatedBatch) -> None:
            references.add(batch.reference)
            if visualization is not None:
                visualization.write(visualize_generation(batch.source, batch.driving, batch.kp_source, batch.kp_driving, batch.outputs))

        frames = animate_footage(
            model,
            source,
            driving,
            motion,
            options,
            batch_size=args.batch_size,
            precision=args.precision,
            on_progress=lambda done, total: _advance(bar, done, total),
            on_batch=on_batch,
            with_deformed=visualization is not None,
        )
        for frame in frames:
            if writer is None:
                write_image(output, frame)
            else:
                writer.write(frame)
    if args.reference == "best" and references:
        _say(args, f"best reference frame: {references.pop()}")
    height, width = source.shape[-2:]
    if writer is None:
        print(f"wrote {output} ({width}x{height})")
    else:
        count, (written_width, written_height) = writer.frames_written, writer.size or (width, height)
        note = ""
        if (written_width, written_height) != (width, height):
            note = (
                f"; video sides must be even, so the last odd row/column of the {width}x{height} result was dropped "
                "(an output name without a media suffix writes PNG frames at full size)"
            )
        name, frames = (f"{output}{os.sep}", "PNG frame") if writer.is_folder else (str(output), "frame")
        print(f"wrote {name} ({counted(count, frames)}, {written_width}x{written_height}, {writer.fps:g} fps{note})")
    if writer is not None and writer.is_folder and not driving.is_still and has_audio_track(driving.path):
        print("audio not copied: a folder of frames holds no sound")
    if writer is not None and not writer.is_folder and not driving.is_still:
        if not retimed:
            print(writer.audio)
        elif has_audio_track(driving.path) is not False:
            print(f"audio not copied: --fps {args.fps:g} plays the {driving.file_fps:g} fps driving frames at another speed, which its sound would not follow")
    if visualization is not None:
        print(f"wrote {args.visualize}")
    return 0


def _single_frame(driving: VideoReader) -> bool:
    """Whether the driving input is one frame: counted, as a file's own count may be missing
    or an estimate (two frames decoded at most)."""
    return sum(1 for _ in itertools.islice(driving, 2)) == 1


def _advance(bar: tqdm, done: int, total: int | None) -> None:
    """Follow the pipeline's count; its total doubles when a best-frame search pass runs first."""
    if total is not None and bar.total != total:
        bar.total = total
        bar.refresh()
    bar.update(done - bar.n)


def _driving_face_box(driving: VideoReader, quiet: bool) -> Box:
    frames = tqdm(driving, total=driving.info.frame_count, unit="frame", desc="finding the face", disable=quiet, file=sys.stderr)
    with torch.inference_mode():
        return stable_face_box(frames, driving.info.frame_count)


def _describe(box: Box | None) -> str:
    return "whole picture" if box is None else f"{box.x},{box.y},{box.width},{box.height}"


def _say(args: argparse.Namespace, message: str) -> None:
    """A note on what is happening (stderr, silenced by --quiet); results go to stdout."""
    if not args.quiet:
        print(message, file=sys.stderr)
