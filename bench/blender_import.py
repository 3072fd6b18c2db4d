"""Time and peak memory of the Blender add-on's import of a long motion file.

Run from the repository root with the Blender-as-a-module environment the tests make
(``.venv-bpy``, bpy 5.0.1; not part of the test suite)::

    .venv-bpy/bin/python bench/blender_import.py MOTION.fomm.json
    .venv-bpy/bin/python bench/blender_import.py MOTION.fomm.json --subdivisions 512 --deform FLOW_CACHE RIG

A long file with a dense flow (300 frames of a 256x256 synthetic puppet), from the core
environment::

    .venv/bin/fomm make-synthetic /tmp/long --num-videos 2 --test-videos 1 --seed 5 --frames 300 --size 256
    .venv/bin/fomm motion /tmp/long/test/*/0000.png /tmp/long/test/* -o /tmp/long.fomm.json --flow

Each import runs in a fresh interpreter on an empty scene and reports its wall time, the
growth of the process's peak resident memory (VmHWM from /proc) over the import, and the
size of the mesh cache it wrote. The Flow cache bake writes one frame of vertices at a
time, so its peak should not grow with the number of frames.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rss  # bench/rss.py: plain Python, so Blender's interpreter reads it too

REPO = Path(__file__).resolve().parent.parent


def measure(motion: Path, deform: str, subdivisions: int) -> dict:
    """One import in this process (called in a child interpreter by main)."""
    import bpy  # first: it puts Blender's own modules (addon_utils) on the path

    import addon_utils

    bpy.context.preferences.extensions.repos.new(
        name="FOMM bench", module="fomm_bench", custom_directory=str(REPO / "blender_addon"), source="USER"
    )
    addon_utils.enable("bl_ext.fomm_bench.fomm_motion", default_set=True)
    bpy.ops.wm.read_homefile(use_empty=True)
    rss.reset_peak()
    before = rss.peak_mib()
    start = time.perf_counter()
    result = bpy.ops.import_scene.fomm_motion(filepath=str(motion), deform=deform, subdivisions=subdivisions)
    seconds = time.perf_counter() - start
    if result != {"FINISHED"}:
        raise RuntimeError(f"import returned {result}")
    cache = list(motion.parent.glob("*.pc2"))
    return {
        "seconds": seconds,
        "peak_growth_mib": rss.peak_mib() - before,
        "vertices": sum(len(o.data.vertices) for o in bpy.data.objects if o.type == "MESH"),
        "cache_mib": sum(path.stat().st_size for path in cache) / 2**20,
    }


def _companions(motion: Path) -> list[Path]:
    """The motion file and the files `fomm motion` wrote beside it (NAME.source.png, ...)."""
    base = motion.name.removesuffix(".json").removesuffix(".fomm")
    return [motion, *(path for path in motion.parent.glob(f"{base}.*") if path != motion and path.is_file())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("motion", type=Path, help="motion file (written with `fomm motion --flow` for FLOW_CACHE)")
    parser.add_argument("--deform", nargs="+", default=["FLOW_CACHE", "RIG"], choices=["FLOW_CACHE", "RIG", "NONE"])
    parser.add_argument("--subdivisions", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.motion.resolve(), args.deform[0], args.subdivisions[0])))
        return
    frames = json.loads(args.motion.read_text())["num_frames"]
    print(f"{args.motion.name}: {frames} frames; load average {os.getloadavg()[0]:.2f}")
    print("| deform | subdivisions | vertices | seconds | peak growth | cache |")
    print("|---|---|---|---|---|---|")
    for deform in args.deform:
        for subdivisions in args.subdivisions:
            with tempfile.TemporaryDirectory() as folder:  # the cache goes next to the motion file
                for companion in _companions(args.motion):  # the source image beside it, if not embedded
                    shutil.copyfile(companion, Path(folder) / companion.name)
                motion = Path(folder) / args.motion.name
                env = dict(os.environ, BLENDER_USER_RESOURCES=folder)
                done = subprocess.run(
                    [sys.executable, __file__, str(motion), "--child", "--deform", deform, "--subdivisions", str(subdivisions)],
                    capture_output=True, text=True, env=env,
                )
                if done.returncode != 0:
                    raise SystemExit(f"{deform} x {subdivisions} failed:\n{done.stdout}{done.stderr}")
                row = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"| {deform} | {subdivisions} | {row['vertices']} | {row['seconds']:.2f} s | "
                f"{row['peak_growth_mib']:.0f} MiB | {row['cache_mib']:.0f} MiB |"
            )


if __name__ == "__main__":
    main()
