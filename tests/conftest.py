"""Shared test helpers: where the reference fixtures live, and small deterministic models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_fixtures() -> Path:
    """The read-only reference fixtures (``../shared/fixtures`` next to the checkout).

    Set ``FOMM_SHARED_FIXTURES`` to use another location. Missing fixtures are an error,
    not a skip: the parity tests are the proof that the library is exact.
    """
    path = Path(os.environ.get("FOMM_SHARED_FIXTURES", REPO.parent / "shared" / "fixtures"))
    if not path.is_dir():
        raise FileNotFoundError(
            f"reference fixtures not found at {path}; set FOMM_SHARED_FIXTURES to the folder "
            "holding fomm_keys/ and fomm_parity/"
        )
    return path


def parity_cases() -> list[Path]:
    return sorted(p for p in (shared_fixtures() / "fomm_parity").iterdir() if (p / "meta.json").is_file())


def key_manifests() -> list[Path]:
    return sorted((shared_fixtures() / "fomm_keys").glob("*.json"))


# One intra-op thread: the suite runs beside servers and subprocesses (ComfyUI, Blender,
# torchrun), and OpenMP threads spin-waiting against them cost far more than they gain.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
