"""Progress, Cancel and memory of the ComfyUI nodes on large sources, in the real ComfyUI.

Run from the repository root with the project's venv (not part of the test suite; the
ComfyUI that ``tests/comfyui`` installs is used, and installed if missing)::

    python bench/comfyui_nodes.py progress    # FOMM Animate and FOMM Generate, full_resolution
    python bench/comfyui_nodes.py memory      # what FOMM Dense Motion's outputs hold
    python bench/comfyui_nodes.py progress --pack /tmp/old-checkout   # another version's pack

``progress``: a 4000x3000 source, 16 driving frames at 64x64, ``batch_size`` 8, the embedded
model; prints when the bar moved (seconds, value/total) and when the node returned, then
runs again pressing Cancel (ComfyUI's interrupt flag, set from another thread as the server
does) a second after the bar first moved and prints how long the node took to stop after it. ``memory``: FOMM Dense Motion on a 1920x1080 source and
120 frames; prints the bytes its outputs hold (what ComfyUI keeps in its cache) and the
growth of the process's peak resident memory; then the same for FOMM Visualize Flow's
pictures of that flow at each ``size`` (an older pack without the input: source size).

``--pack`` loads the nodes and ``fomm_model`` of another checkout (e.g. ``git archive REV |
tar -x -C /tmp/old-checkout``) to compare versions on the same machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CANCEL_DELAY = 1.0  # seconds after the bar first shows a frame done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["progress", "memory"])
    parser.add_argument("--pack", type=Path, default=REPO, help="checkout whose nodes and fomm_model to run")
    parser.add_argument("--size", default=None, help="source WxH (default 4000x3000 for progress, 1920x1080 for memory)")
    parser.add_argument("--frames", type=int, default=None, help="driving frames (default 16 for progress, 120 for memory)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import rss
    from tests.comfyui.install import ensure_installed  # this checkout's, to load ComfyUI
    from tests.comfyui.pack import load_pack

    sys.path.insert(0, str(args.pack.resolve()))  # its fomm_model before any other

    base = Path(tempfile.mkdtemp(prefix="fomm-bench-comfy-"))
    pack = load_pack(ensure_installed(), base, base / "models" / "fomm", args.pack.resolve())
    import fomm_model

    print(f"fomm_model from {Path(fomm_model.__file__).parent}, load average {rss.loadavg()}")
    nodes = pack.nodes
    model = nodes.LoadModel.execute("default", "auto", "fp32").args[0]
    if args.what == "progress":
        width, height = map(int, (args.size or "4000x3000").split("x"))
        bench_progress(nodes, model, width, height, args.frames or 16)
    else:
        width, height = map(int, (args.size or "1920x1080").split("x"))
        bench_memory(nodes, model, width, height, args.frames or 120, rss)


def images(frames: int, height: int, width: int, seed: int):
    """Smooth random pictures as a ComfyUI IMAGE [B, H, W, 3]."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    small = torch.rand(frames, 3, 6, 6, generator=generator)
    return torch.nn.functional.interpolate(small, size=(height, width), mode="bicubic").clamp(0, 1).permute(0, 2, 3, 1)


def bench_progress(nodes, model, width: int, height: int, frames: int) -> None:
    import comfy.model_management
    import comfy.utils

    source = images(1, height, width, seed=1)
    driving = images(frames, 64, 64, seed=2)

    def animate() -> None:
        nodes.Animate.execute(model, source, driving, "pad", True, True, True, "first", 0, True, 8)

    kp_source = nodes.DetectKeypoints.execute(model, source, "pad", 8).args[0]
    kp_driving = nodes.DetectKeypoints.execute(model, driving, "pad", 8).args[0]
    motion = nodes.EstimateMotion.execute(kp_source, kp_driving, True, True, True, "first", 0).args[0]
    flow = nodes.DenseMotion.execute(model, source, motion, 8).args[0]

    def generate() -> None:
        nodes.Generate.execute(model, source, flow, True, 8)

    for name, run in (("FOMM Animate", animate), ("FOMM Generate", generate)):
        print(f"\n{name}, full_resolution, {width}x{height} source, {frames} frames of 64x64, batch_size 8")
        marks: list[str] = []

        def record(value, total, preview, node_id=None) -> None:
            marks.append(f"{time.perf_counter() - start:.1f}s {value}/{total}")

        comfy.utils.PROGRESS_BAR_HOOK = record
        start = time.perf_counter()
        run()
        print(f"  bar: {', '.join(marks)}")
        print(f"  node returned at {time.perf_counter() - start:.1f}s")

        pressed: list[float] = []

        def press_cancel() -> None:  # from another thread, as the server's /interrupt does
            pressed.append(time.perf_counter())
            comfy.model_management.interrupt_current_processing()

        def cancel_soon_after_first(value, total, preview, node_id=None) -> None:
            if value >= 1 and not timers:
                timers.append(threading.Timer(CANCEL_DELAY, press_cancel))
                timers[0].start()

        timers: list[threading.Timer] = []
        comfy.utils.PROGRESS_BAR_HOOK = cancel_soon_after_first
        start = time.perf_counter()
        try:
            run()
            timers[0].cancel()
            comfy.model_management.interrupt_current_processing(False)
            print("  Cancel: the node finished first")
        except comfy.model_management.InterruptProcessingException:
            print(f"  Cancel pressed at {pressed[0] - start:.1f}s ({CANCEL_DELAY:g}s after the bar first moved): "
                  f"the node stopped {time.perf_counter() - pressed[0]:.1f}s later")
        comfy.utils.PROGRESS_BAR_HOOK = None


def bench_memory(nodes, model, width: int, height: int, frames: int, rss) -> None:
    import torch

    source = images(1, height, width, seed=1)
    driving = images(frames, 64, 64, seed=2)
    kp_source = nodes.DetectKeypoints.execute(model, source, "pad", 8).args[0]
    kp_driving = nodes.DetectKeypoints.execute(model, driving, "pad", 8).args[0]
    motion = nodes.EstimateMotion.execute(kp_source, kp_driving, True, True, True, "first", 0).args[0]
    rss.reset_peak()
    before = rss.current_mib()
    start = time.perf_counter()
    flow, occlusion, masks = nodes.DenseMotion.execute(model, source, motion, 8).args
    seconds = time.perf_counter() - start
    held = {
        "flow": sum(t.numel() * t.element_size() for t in vars(flow).values() if isinstance(t, torch.Tensor)),
        f"occlusion {list(occlusion.shape)}": occlusion.numel() * occlusion.element_size(),
        f"keypoint_masks {list(masks.shape)}": masks.numel() * masks.element_size(),
    }
    print(f"FOMM Dense Motion, {width}x{height} source, {frames} frames: {seconds:.1f}s")
    for name, size in held.items():
        print(f"  {name}: {size / 2**20:.1f} MiB")
    print(f"  outputs in all: {sum(held.values()) / 2**20:.1f} MiB; peak resident memory grew {rss.peak_mib() - before:.0f} MiB")
    for size in ("model", "source"):
        rss.reset_peak()
        before = rss.current_mib()
        start = time.perf_counter()
        try:
            pictures = nodes.VisualizeFlow.execute(flow, size).args
        except TypeError:  # a version without the size input: source size
            pictures = nodes.VisualizeFlow.execute(flow).args
        seconds = time.perf_counter() - start
        total = sum(p.numel() * p.element_size() for p in pictures)
        print(
            f"FOMM Visualize Flow, size {size}: {seconds:.1f}s; 3 x {list(pictures[0].shape)}, {total / 2**20:.1f} MiB in all; "
            f"peak resident memory grew {rss.peak_mib() - before:.0f} MiB"
        )
        del pictures


if __name__ == "__main__":
    main()
