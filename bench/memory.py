"""Peak memory of ``fomm animate`` for a short and a long driving video.

Run from the repository root (not part of the test suite)::

    python bench/memory.py                       # 100 and 2000 frames, plain and --full-resolution
    python bench/memory.py --frames 100 5000 --checkpoint default

Each run is a fresh interpreter that calls the real command line (``fomm animate``) on a
generated driving video (a 512x512 source, 128x128 driving mp4) and reports its peak
resident memory (VmHWM from /proc). Frames are read, animated in batches and written as
they come, so the peak should not grow with the video's length: the long run should stay
within 1.2x of the short one. Without ``--checkpoint`` a seeded model with the embedded
default model's config (read from its file) is built, so the figures do not depend on the
weights.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rss
import torch
import torch.nn.functional as F

import fomm_model as fm
from fomm_model.checkpoint import write_safetensors
from fomm_model.video import VideoWriter, write_image

def make_inputs(folder: Path, frame_counts: list[int]) -> tuple[Path, dict[int, Path]]:
    generator = torch.Generator().manual_seed(0)
    source = F.interpolate(torch.rand(1, 3, 16, 16, generator=generator), size=(512, 512), mode="bicubic").clamp(0, 1)
    source_path = write_image(folder / "source.png", source[0])
    keyframes = F.interpolate(torch.rand(9, 3, 8, 8, generator=generator), size=(128, 128), mode="bicubic").clamp(0, 1)
    videos = {}
    for count in frame_counts:
        videos[count] = folder / f"driving_{count}.mp4"
        with VideoWriter(videos[count], 25) as writer:
            for index in range(count):
                phase = (index / 25) % 8
                low = int(phase)
                weight = phase - low
                writer.write((1 - weight) * keyframes[low] + weight * keyframes[low + 1])
    return source_path, videos


def run_child(source: Path, driving: Path, checkpoint: str, out: Path, extra: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of one ``fomm animate`` run in a fresh interpreter."""
    code = (
        "import sys, rss; from fomm_model.cli import main; "
        "code = main(sys.argv[1:]); print(rss.peak_mib()); sys.exit(code)"
    )
    command = [sys.executable, "-c", code, "animate", str(source), str(driving), "-o", str(out), "--checkpoint", checkpoint, "--quiet", *extra]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).parent, env=None)
    if result.returncode != 0:
        raise RuntimeError(f"fomm animate failed:\n{result.stderr}")
    return float(result.stdout.strip().splitlines()[-1]), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs=2, default=[100, 2000], metavar=("SHORT", "LONG"))
    parser.add_argument("--checkpoint", help="checkpoint to animate with (default: a seeded model of the default's shape)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    print(f"loadavg before: {rss.loadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = args.checkpoint
        if checkpoint is None:
            torch.manual_seed(0)
            model = fm.build_model(fm.load_model("default").config)  # the default's shape, other weights
            checkpoint = str(folder / "seeded.safetensors")
            write_safetensors(checkpoint, {"kp_detector": model.kp_detector.state_dict(), "generator": model.generator.state_dict()}, model.config)
        source, videos = make_inputs(folder, args.frames)
        print("| mode | driving frames | peak RSS | time | frames/s |")
        print("|---|---|---|---|---|")
        for mode, extra in (("plain", []), ("full resolution", ["--full-resolution"])):
            peaks = []
            for count in args.frames:
                peak, seconds = run_child(source, videos[count], checkpoint, folder / "out.mp4", ["--batch-size", str(args.batch_size), *extra])
                peaks.append(peak)
                print(f"| {mode} | {count} | {peak:.0f} MiB | {seconds:.0f} s | {count / seconds:.1f} |", flush=True)
            print(f"| {mode} | ratio | {peaks[1] / peaks[0]:.3f}x | | |", flush=True)
    print(f"loadavg after: {rss.loadavg()}")


if __name__ == "__main__":
    main()
