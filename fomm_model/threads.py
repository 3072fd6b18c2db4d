"""Frame-parallel inference on CPUs: a batch split across threads, each with its own cores.

On a CPU, PyTorch parallelises each operation across its intra-op threads; for the
generator's decoder at batch 8 on two cores that keeps the cores busy only part of the
time (every convolution ends in a join, and the element-wise layers in between scale
poorly). Giving each thread its own slice of the batch and one core instead measured
1.24-1.27 against 0.94-0.99 frames/s for the vox-256 decoder (2-core Zen 3, batch 8),
with the same frames to float rounding. GPUs are left alone: one batch already fills them.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import torch
from torch import Tensor


def frame_shards(device: torch.device, count: int) -> list[slice]:
    """How to split ``count`` frames: one slice per intra-op thread on a CPU (at most one per
    frame, so a batch smaller than the thread count gets several threads per slice), else
    the whole batch."""
    shards = min(torch.get_num_threads(), count) if device.type == "cpu" else 1
    bounds = [round(i * count / max(shards, 1)) for i in range(max(shards, 1) + 1)]
    return [slice(start, stop) for start, stop in zip(bounds, bounds[1:])]


@contextlib.contextmanager
def _intra_op_threads(count: int) -> Iterator[None]:
    """Intra-op threads set to ``count`` for the threads started inside, restored after.

    PyTorch's thread count is process-wide: a thread takes the current value when it
    first runs a parallel operation, so worker threads started here keep ``count`` each.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def map_frame_shards(
    device: torch.device, count: int, function: Callable[[slice], dict[str, Tensor]]
) -> dict[str, Tensor]:
    """``function`` over the frame slices of :func:`frame_shards`, in parallel threads when
    there is more than one, with the outputs (batch-first tensors) concatenated in order.

    Grad and inference modes are thread-local in PyTorch, so each worker runs in the
    caller's.
    """
    shards = frame_shards(device, count)
    if len(shards) == 1:
        return function(shards[0])
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def work(shard: slice) -> dict[str, Tensor]:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return function(shard)

    # More threads than frames: the threads are shared out, so no core is left idle.
    per_worker = max(1, torch.get_num_threads() // len(shards))
    with _intra_op_threads(per_worker), ThreadPoolExecutor(len(shards), thread_name_prefix="fomm-frames") as pool:
        parts = list(pool.map(work, shards))
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
