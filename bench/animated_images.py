"""How long an animated GIF takes to open and to read as a driving video.

Run from the repository root (not part of the test suite)::

    python bench/animated_images.py                  # 150 frames of 480x270, 40 ms each
    python bench/animated_images.py --frames 600 --size 960x540

Animated GIF, WebP and PNG are read with Pillow at a rate chosen from every frame's duration
(:mod:`fomm_model.video`), so opening one walks its frames once before they are read. This
prints the best of three runs for opening (``read_video``, which also decodes the first
frame) and for opening plus reading every frame, and the frames and rate it gave.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fomm_model.video import read_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", default="480x270", help="WxH of the frames")
    parser.add_argument("--duration", type=int, default=40, help="ms each frame shows")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.split("x"))
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (height, width, 3), np.uint8)).quantize(64) for _ in range(args.frames)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.gif"
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=args.duration, loop=0)
        opening, whole, count = [], [], 0
        for _ in range(3):
            start = time.perf_counter()
            video = read_video(path)
            opened = time.perf_counter()
            count = sum(1 for _ in video)
            opening.append(opened - start)
            whole.append(time.perf_counter() - start)
    print(
        f"{args.frames}-frame {width}x{height} GIF: open {min(opening):.2f} s, open and read {min(whole):.2f} s "
        f"({count} frames at {video.info.fps:g} fps)"
    )


if __name__ == "__main__":
    main()
