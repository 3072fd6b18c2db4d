"""Fixtures for the node pack tests: a real ComfyUI (installed on first use into .cache/comfyui,
see install.py), the pack imported the way ComfyUI imports it, and a small checkpoint.

Nothing here is stubbed: the unit tests call the node classes with ComfyUI's own
``comfy_api``, ``folder_paths``, ``comfy.model_management`` and ``ModelPatcher`` imported from
the installed ComfyUI (its venv's site-packages are appended to ``sys.path``, after the test
environment's own torch and numpy).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from fomm_model import convert_checkpoint, resolve_config

from .install import REPO, ComfyInstall, ensure_installed
from .pack import load_pack

FIXTURE_CASE = "vox256_small"
# A checkpoint in models/fomm (the parity fixture), for the tests of the folder and dropdown
# and of runs where only speed matters (Cancel). Tests of what the nodes produce use the
# embedded model, "default", as the shipped workflows do.
TEST_MODEL_NAME = "fomm-test-vox-small.safetensors"


def shared_fixture_case() -> Path:
    """The parity case, found by tests/conftest.py's ``shared_fixtures`` (loaded by path: the
    name ``conftest`` belongs to whichever conftest pytest imported first)."""
    spec = importlib.util.spec_from_file_location("fomm_tests_conftest", REPO / "tests" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.shared_fixtures() / "fomm_parity" / FIXTURE_CASE


def write_test_model(target: Path) -> Path:
    """The parity fixture (vox architecture, 10 keypoints, 128x128) as safetensors, config included."""
    case = shared_fixture_case()
    target.parent.mkdir(parents=True, exist_ok=True)
    return convert_checkpoint(case / "checkpoint.pth.tar", target, config=resolve_config(case / "config.yaml"))


@pytest.fixture(scope="session")
def comfy_install() -> ComfyInstall:
    return ensure_installed()


@pytest.fixture(scope="session")
def comfy_dirs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("comfy-base")


@pytest.fixture(scope="session")
def pack(comfy_install: ComfyInstall, comfy_dirs: Path) -> ModuleType:
    """The pack, imported like ComfyUI's loader does, against the real ComfyUI modules."""
    models = comfy_dirs / "models" / "fomm"
    write_test_model(models / TEST_MODEL_NAME)
    return load_pack(comfy_install, comfy_dirs, models)
