"""Reduced-precision inference: which dtype a precision name means, and where it is fast.

Only the generator's encoder and decoder convolutions (about 90% of the work per frame)
run in reduced precision. Keypoints, jacobian inverses, the dense motion network and
every grid warp stay in float32: coordinates in bf16 would be off by up to half a pixel,
and the keypoint detector is cheap anyway.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import ContextManager, Literal

import torch

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> Precision:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision  # type: ignore[return-value]


def precision_dtype(precision: str) -> torch.dtype:
    return _DTYPES[check_precision(precision)]


def has_native_support(device: torch.device, precision: str) -> bool:
    """Whether ``device`` computes convolutions in ``precision`` in hardware.

    CPUs need AVX512-BF16/AMX for bf16 and AVX512-FP16/AMX-FP16 for fp16; without them
    oneDNN emulates the format and is many times slower than float32.
    """
    precision = check_precision(precision)
    if precision == "fp32":
        return True
    if device.type == "cuda":
        return precision == "fp16" or torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probe = torch.ops.mkldnn._is_mkldnn_bf16_supported if precision == "bf16" else torch.ops.mkldnn._is_mkldnn_fp16_supported
        return bool(probe())
    return precision == "fp16"


def warn_if_slow(device: torch.device, precision: str) -> None:
    if not has_native_support(device, precision):
        warnings.warn(
            f"{precision} is emulated on this {device.type} (no native support), so it is much slower "
            "than fp32; use fp32 here",
            stacklevel=4,  # warn_if_slow <- pipeline._stream <- animate_frames/animate_batches <- caller
        )


def autocast(device: torch.device, precision: str) -> ContextManager[object]:
    """A context that runs convolutions in ``precision`` (nothing for fp32).

    Enter it around each batch, never across a ``yield``: autocast state is per thread
    and would leak into the consumer's code.
    """
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])
