"""Frame-parallel inference on CPUs: a batch split across threads, each with its own cores.

On a CPU, PyTorch parallelises each operation across its intra-op threads; for the
generator's decoder at batch 8 on two cores that keeps the cores busy only part of the
time (every convolution ends in a join, and the element-wise layers in between scale
poorly). Giving each thread its own slice of the batch and one core instead measured
1.24-1.27 against 0.94-0.99 frames/s for the vox-256 decoder (2-core Zen 3, batch 8),
with the same frames to float rounding. GPUs are left alone: one batch already fills them.

PyTorch's intra-op thread count is process-wide, so while a split batch runs it is set to
the workers' share (worker threads take the current value when they first run a parallel
operation) and restored afterwards; other threads that start torch work in that window
see the lower count. Split batches from several threads run one at a time.
"""

from __future__ import annotations

import contextlib
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import torch
from torch import Tensor

_LOCK = threading.Lock()


def frame_shards(device: torch.device, count: int) -> list[slice]:
    """How to split ``count`` frames on ``device``: the whole batch off the CPU. On a CPU
    with T intra-op threads, into S slices where S divides T, so every worker gets T / S
    threads and no core idles; S minimises the longest slice's frames per thread (ties go to
    more slices, since one thread per operation uses a core best)."""
    threads = torch.get_num_threads() if device.type == "cpu" else 1
    candidates = [s for s in range(1, min(threads, count) + 1) if threads % s == 0] or [1]
    shards = min(candidates, key=lambda s: (math.ceil(count / s) * s / threads, -s))
    bounds = [round(i * count / shards) for i in range(shards + 1)]
    return [slice(start, stop) for start, stop in zip(bounds, bounds[1:])]


@contextlib.contextmanager
def _intra_op_threads(count: int) -> Iterator[None]:
    """Intra-op threads set to ``count`` for the threads started inside, restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _cpu_autocast() -> tuple[bool, torch.dtype]:
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        return torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")
    return torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()


def map_frame_shards(
    device: torch.device, count: int, function: Callable[[slice], dict[str, Tensor]]
) -> dict[str, Tensor]:
    """``function`` over the frame slices of :func:`frame_shards`, in parallel threads when
    there is more than one, with the outputs (batch-first tensors) concatenated in order.

    Grad mode, inference mode and autocast are thread-local in PyTorch, so each worker
    runs under the caller's.
    """
    shards = frame_shards(device, count)
    if len(shards) == 1:
        return function(shards[0])
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    autocast_enabled, autocast_dtype = _cpu_autocast()

    def work(shard: slice) -> dict[str, Tensor]:
        with (
            torch.inference_mode(inference),
            torch.set_grad_enabled(grad),
            torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast_enabled),
        ):
            return function(shard)

    with _LOCK:
        per_worker = torch.get_num_threads() // len(shards)
        with _intra_op_threads(per_worker), ThreadPoolExecutor(len(shards), thread_name_prefix="fomm-frames") as pool:
            parts = list(pool.map(work, shards))
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
