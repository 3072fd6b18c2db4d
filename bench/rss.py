"""Peak resident memory of this process, resettable (Linux ``/proc/self/clear_refs``)."""

from __future__ import annotations

from pathlib import Path


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def current_mib() -> float:
    return _status_kib("VmRSS") / 1024


def peak_mib() -> float:
    """Highest resident memory since start or since the last :func:`reset_peak`."""
    return _status_kib("VmHWM") / 1024


def reset_peak() -> None:
    """Set the peak to the current resident memory (needs Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
