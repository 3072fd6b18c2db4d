"""The original per-frame loop against the fast path, on full-size vox-256 at 256x256.

Run from the repository root (not part of the test suite; takes minutes on a CPU)::

    python bench/inference.py                        # fp32 + reduced precisions this device runs natively
    python bench/inference.py --precisions fp32,bf16 --frames 16 --rounds 3 --threads 2
    python bench/inference.py --device cuda --precisions fp32,fp16,bf16 --frames 64
    python bench/inference.py --compile             # adds the fast path with a torch.compile'd decoder

Everything is measured in one process on the same seeded weights and inputs, with the
paths interleaved round by round so that load from other processes hits all of them
alike; ratios are computed within each round. Reported per path: frames/s (median over
rounds, and the range), speed-up over the per-frame loop (median of per-round ratios),
max and mean absolute difference from the per-frame loop's frames, peak memory (a fresh
subprocess per path on CPU: growth of peak RSS over the loaded model; on CUDA: peak
allocated), GFLOP/s (FLOPs counted with torch.utils.flop_counter) and its fraction of this
machine's measured convolution peak (a 3x3 256->256 convolution at 64x64, the layer that
makes up most of the generator's work, best of batch 1 and the batch size, NCHW and
channels-last). /proc/loadavg is printed before and after.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import rss
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import fomm_model as fm
from fomm_model.pipeline import animate_frames
from fomm_model.precision import autocast, has_native_support
from fomm_model.threads import map_frame_shards

PER_FRAME = "per-frame loop (original)"
COMPILED = "fast path fp32, torch.compile'd decoder"


@dataclass(frozen=True)
class Setup:
    device: str
    frames: int
    batch_size: int
    seed: int = 0
    size: int = 256


@dataclass
class Measured:
    name: str
    precision: str
    seconds: list[float]
    flops: float = 0.0
    max_diff: float = 0.0
    mean_diff: float = 0.0
    peak_mib: float | None = None


def build(setup: Setup) -> tuple[fm.FirstOrderModel, torch.Tensor, torch.Tensor]:
    """Seeded vox-256 weights and image-like inputs (smooth random colour fields)."""
    torch.manual_seed(setup.seed)
    model = fm.build_model("vox-256").to(setup.device)
    generator = torch.Generator().manual_seed(setup.seed + 1)

    def images(count: int) -> torch.Tensor:
        coarse = torch.rand(count, 3, 8, 8, generator=generator)
        return F.interpolate(coarse, size=(setup.size, setup.size), mode="bicubic", align_corners=False).clamp(0, 1)

    source = images(1)
    start, end = images(1), images(1)
    weights = torch.linspace(0, 1, setup.frames).view(-1, 1, 1, 1)
    driving = (1 - weights) * start + weights * end  # a smooth "video" between two images
    return model, source.to(setup.device), driving.to(setup.device)


@torch.no_grad()
def per_frame_loop(model: fm.FirstOrderModel, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
    """demo.make_animation: whole generator per frame, batch 1, source re-encoded every time."""
    kp_source = model.kp_detector(source)
    kp_initial = model.kp_detector(driving[:1])
    frames = []
    for frame in driving:
        kp_driving = model.kp_detector(frame[None])
        kp_norm = fm.normalize_keypoints(kp_source, kp_driving, kp_initial)
        frames.append(model.generator(source, kp_source, kp_norm)["prediction"])
    return torch.cat(frames)


def fast_path(
    model: fm.FirstOrderModel, source: torch.Tensor, driving: torch.Tensor, batch_size: int, precision: str
) -> torch.Tensor:
    return torch.stack(list(animate_frames(model, source, driving, batch_size=batch_size, precision=precision)))


def compiled_copy(model: fm.FirstOrderModel) -> fm.FirstOrderModel:
    """A copy whose decoder modules are compiled in place (``nn.Module.compile``); the fast
    path picks them up without any option, as any user's compiled modules would be."""
    copy_ = copy.deepcopy(model)
    generator = copy_.generator
    for module in (generator.bottleneck, *generator.up_blocks, generator.final):
        module.compile()
    return copy_


def runner(name: str, precision: str, setup: Setup, models: dict[str, fm.FirstOrderModel], source, driving) -> Callable[[], torch.Tensor]:
    if name == PER_FRAME:
        return lambda: per_frame_loop(models[name], source, driving)
    model = models.get(name, models[PER_FRAME])
    return lambda: fast_path(model, source, driving, setup.batch_size, precision)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def conv_peak(device: str, precision: str, batch_size: int, repeats: int = 5) -> float:
    """Best GFLOP/s of a 3x3 256->256 convolution at 64x64 in this precision: batch 1 and the
    batch size, NCHW and channels-last, and on a CPU also the batch split across threads
    with one core each, as the fast path runs it (fomm_model.threads)."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).to(device).eval()
    best = 0.0
    with torch.inference_mode():
        for batch in sorted({1, batch_size}):
            x = torch.randn(batch, 256, 64, 64, device=device)
            for layout in (torch.contiguous_format, torch.channels_last):
                x_layout, conv_layout = x.contiguous(memory_format=layout), conv.to(memory_format=layout)

                def frames_of(frames: slice, x=x_layout, conv=conv_layout) -> dict[str, torch.Tensor]:
                    with autocast(torch.device(device), precision):  # thread-local, so set per worker
                        return {"y": conv(x[frames])}

                whole = lambda: frames_of(slice(None))  # noqa: E731
                split = lambda: map_frame_shards(torch.device(device), batch, frames_of)  # noqa: E731
                for run in (whole, split) if batch > 1 else (whole,):
                    run()
                    for _ in range(repeats):
                        synchronize(device)
                        start = time.perf_counter()
                        run()
                        synchronize(device)
                        best = max(best, 2 * 9 * 256 * 256 * 64 * 64 * batch / (time.perf_counter() - start) / 1e9)
    return best


def measure_memory_in_child(args: argparse.Namespace, name: str, precision: str) -> float:
    """Run one path in a fresh interpreter and return its peak RSS growth in MiB."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child-memory",
        name,
        "--precisions",
        precision,
        "--frames",
        str(args.frames),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
    ]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return float(json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"])


def child_memory(args: argparse.Namespace, setup: Setup) -> None:
    model, source, driving = build(setup)
    models = {PER_FRAME: model, COMPILED: compiled_copy(model)} if args.child_memory == COMPILED else {PER_FRAME: model}
    run = runner(args.child_memory, args.precisions.split(",")[0], setup, models, source, driving)
    rss.reset_peak()
    before = rss.current_mib()
    run()
    print(json.dumps({"peak_mib": rss.peak_mib() - before}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=16, help="driving frames per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precisions", help="comma-separated; default fp32 and the natively supported ones")
    parser.add_argument(
        "--emulated-frames", type=int, default=2, help="frames for precisions this device only emulates (slow)"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--compile", action="store_true", help="also time the fast path with a compiled decoder")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-path memory subprocesses")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child-memory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    setup = Setup(args.device, args.frames, args.batch_size)
    if args.child_memory:
        child_memory(args, setup)
        return

    precisions = (
        args.precisions.split(",")
        if args.precisions
        else ["fp32"] + [p for p in ("bf16", "fp16") if has_native_support(device, p)]
    )
    load_before = rss.loadavg()
    model, source, driving = build(setup)
    models = {PER_FRAME: model}
    paths = [Measured(PER_FRAME, "fp32", [])] + [Measured(f"fast path {p}", p, []) for p in precisions]
    if args.compile:
        models[COMPILED] = compiled_copy(model)
        paths.append(Measured(COMPILED, "fp32", []))
    emulated = {p for p in precisions if not has_native_support(device, p)}

    def inputs_for(path: Measured) -> torch.Tensor:
        return driving[: args.emulated_frames] if path.precision in emulated else driving

    # Warm-up round with the timed thread count (torch.compile fixes its kernels' thread
    # count and input shapes when it compiles, here).
    for path in paths:
        runner(path.name, path.precision, setup, models, source, inputs_for(path))()
    # FLOPs. The counter sees only its own thread, so this runs with one intra-op thread,
    # which keeps the fast path's frame-parallel CPU threads (fomm_model.threads) out of it;
    # the compiled decoder does the eager fast path's arithmetic.
    torch.set_num_threads(1)
    for path in paths:
        if path.name != COMPILED:
            with FlopCounterMode(display=False) as counter:
                runner(path.name, path.precision, setup, models, source, inputs_for(path))()
            path.flops = counter.get_total_flops() / len(inputs_for(path))
    for path in paths:
        if path.name == COMPILED:
            path.flops = next(p.flops for p in paths if p.name == "fast path fp32")
    torch.set_num_threads(args.threads)

    peaks = {p: conv_peak(args.device, p, args.batch_size) for p in {"fp32", *precisions} - emulated}
    outputs: dict[str, torch.Tensor] = {}  # the last round's, compared below
    for _ in range(args.rounds):
        for path in paths:
            frames = inputs_for(path)
            run = runner(path.name, path.precision, setup, models, source, frames)
            synchronize(args.device)
            start = time.perf_counter()
            outputs[path.name] = run()
            synchronize(args.device)
            path.seconds.append((time.perf_counter() - start) / len(frames))
    for path in paths[1:]:
        expected = outputs[PER_FRAME][: len(outputs[path.name])]
        difference = (outputs[path.name].float() - expected.float()).abs()
        path.max_diff, path.mean_diff = difference.max().item(), difference.mean().item()
    for precision, peak in list(peaks.items()):
        peaks[precision] = max(peak, conv_peak(args.device, precision, args.batch_size))

    if not args.no_memory:
        for path in paths:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                runner(path.name, path.precision, setup, models, source, inputs_for(path))()
                path.peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
            else:
                path.peak_mib = measure_memory_in_child(args, path.name, path.precision)

    report(args, device, paths, peaks, emulated, load_before, rss.loadavg())


def report(args, device, paths: list[Measured], peaks: dict[str, float], emulated: set[str], load_before: str, load_after: str) -> None:
    base = paths[0]
    rows = []
    for path in paths:
        fps = [1 / s for s in path.seconds]
        ratios = [b / s for b, s in zip(base.seconds, path.seconds)]
        peak = peaks.get(path.precision)
        gflops = path.flops / 1e9 * statistics.median(fps)
        rows.append(
            {
                "path": path.name + (" (emulated)" if path.precision in emulated else ""),
                "frames_per_s": statistics.median(fps),
                "frames_per_s_range": [min(fps), max(fps)],
                "speedup": statistics.median(ratios),
                "max_abs_diff": path.max_diff,
                "mean_abs_diff": path.mean_diff,
                "peak_memory_mib": path.peak_mib,
                "gflop_per_frame": path.flops / 1e9,
                "gflop_per_s": gflops,
                "fraction_of_conv_peak": None if peak is None else gflops / peak,
            }
        )
    machine = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or _cpu_name(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": args.threads,
        "frames": args.frames,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "conv_peak_gflop_per_s": peaks,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }
    print(f"device: {machine['device']} ({machine['cpu_capability']}); torch {machine['torch']}; {args.threads} threads; "
          f"{args.frames} frames at 256x256, batch {args.batch_size}, {args.rounds} rounds")
    print(f"loadavg before: {load_before}; after: {load_after}")
    print("conv peak (GFLOP/s): " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(peaks.items())))
    print()
    print("| path | frames/s (range) | speed-up | max abs diff | mean abs diff | peak memory | GFLOP/frame | GFLOP/s | of conv peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        low, high = row["frames_per_s_range"]
        memory = "-" if row["peak_memory_mib"] is None else f"{row['peak_memory_mib']:.0f} MiB"
        fraction = "-" if row["fraction_of_conv_peak"] is None else f"{100 * row['fraction_of_conv_peak']:.0f}%"
        print(
            f"| {row['path']} | {row['frames_per_s']:.3f} ({low:.3f}-{high:.3f}) | {row['speedup']:.2f}x | "
            f"{row['max_abs_diff']:.1e} | {row['mean_abs_diff']:.1e} | {memory} | {row['gflop_per_frame']:.1f} | "
            f"{row['gflop_per_s']:.0f} | {fraction} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": rows}, indent=2))


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


if __name__ == "__main__":
    main()
