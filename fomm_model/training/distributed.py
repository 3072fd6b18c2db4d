"""Multi-process training support: process groups, synchronised batch norm, sharded sampling.

Runs under ``torchrun`` (which sets RANK / WORLD_SIZE / LOCAL_RANK); without it everything
degrades to a single process. Batch-norm statistics are synchronised across processes with
a differentiable all-reduce, so the same code works with NCCL on GPUs and gloo on CPUs
(torch's own SyncBatchNorm only runs on accelerators).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Sampler


@dataclass(frozen=True)
class ProcessInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str | None = None) -> ProcessInfo:
    """Join the torchrun process group if there is one; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = device == "cuda" or (device is None and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device")
    chosen = torch.device("cuda", local_rank) if want_cuda else torch.device(device or "cpu")
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return ProcessInfo(rank, world_size, local_rank, chosen)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _reduce_device() -> torch.device:
    """NCCL reduces only tensors on this process's GPU; gloo takes CPU tensors."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def mean_across_processes(values: dict[str, float]) -> dict[str, float]:
    """Average scalar logs over processes (for logging only)."""
    if not dist.is_initialized() or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(tensor)
    return {k: v / dist.get_world_size() for k, v in zip(keys, tensor.tolist())}


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is set in any process; every process gets the same answer, so all
    stop at the same step."""
    if not dist.is_initialized():
        return flag
    tensor = torch.tensor([float(flag)], device=_reduce_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of each input is the sum of the output gradients
    of every process (each process's loss depends on the shared sum)."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # type: ignore[override]
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        out = grad.clone()
        dist.all_reduce(out)
        return out


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch.

    Same parameters, buffers and state-dict keys as ``nn.BatchNorm2d``; outside training or
    distributed runs it is exactly ``nn.BatchNorm2d``.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        channels = x.shape[1]
        count = torch.full((1,), x.numel() / channels, dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3)), count])
        stats = _AllReduceSum.apply(stats)
        total = stats[-1]
        mean = stats[:channels] / total
        var = (stats[channels : 2 * channels] / total - mean * mean).clamp_min(0)
        with torch.no_grad():
            self.num_batches_tracked += 1
            unbiased = var * total / (total - 1).clamp_min(1)
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(unbiased.detach(), self.momentum)
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            scale = scale * self.weight
        shift = -mean * scale + (self.bias if self.affine else 0)
        return x * scale[None, :, None, None] + shift[None, :, None, None]


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm2d for :class:`SyncBatchNorm2d`, keeping its state."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, SyncBatchNorm2d):
            replacement = SyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            replacement.to(child.weight.device if child.affine else child.running_mean.device)
            setattr(module, name, replacement)
        else:
            convert_sync_batchnorm(child)
    return module


class ResumableSampler(Sampler[int]):
    """Shuffled, sharded indices that can restart in the middle of an epoch.

    Epoch e uses the permutation of ``torch.Generator(seed + e)``; each process takes every
    ``world_size``-th index (the permutation is truncated to a multiple of the world size,
    so all processes see the same number of items). ``start`` skips items already consumed
    by this process in the current epoch, which is how a resumed run continues exactly where
    the last checkpoint was written.
    """

    def __init__(self, length: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if length < world_size:
            raise ValueError(f"the dataset has {length} items, fewer than the {world_size} processes")
        self.length = length
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.epoch = epoch
        self.start = start

    def per_process(self) -> int:
        return self.length // self.world_size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.length, generator=generator)[: self.per_process() * self.world_size]
        mine = order[self.rank :: self.world_size].tolist()
        return iter(mine[self.start :])

    def __len__(self) -> int:
        return self.per_process() - self.start
