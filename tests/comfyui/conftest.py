"""Fixtures for the node pack tests: a real ComfyUI (installed on first use into .cache/comfyui,
see install.py), the pack imported the way ComfyUI imports it, and a small checkpoint.

Nothing here is stubbed: the unit tests call the node classes with ComfyUI's own
``comfy_api``, ``folder_paths``, ``comfy.model_management`` and ``ModelPatcher`` imported from
the installed ComfyUI (its venv's site-packages are appended to ``sys.path``, after the test
environment's own torch and numpy).
"""

from __future__ import annotations

import importlib.util
import site
import sys
from pathlib import Path
from types import ModuleType

import pytest

from fomm_model import convert_checkpoint, resolve_config

from .install import REPO, ComfyInstall, ensure_installed, site_packages

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
    sys.path.append(str(comfy_install.code))
    site.addsitedir(str(site_packages(comfy_install)))
    from comfy.cli_args import args

    args.cpu = True  # outside main.py the CLI is not parsed; a CPU-only torch needs this
    import folder_paths

    for name in ("input", "output", "temp"):
        (comfy_dirs / name).mkdir(exist_ok=True)
    folder_paths.set_input_directory(str(comfy_dirs / "input"))
    folder_paths.set_output_directory(str(comfy_dirs / "output"))
    folder_paths.set_temp_directory(str(comfy_dirs / "temp"))
    # as an extra_model_paths.yaml entry "fomm: <dir>" would, before the pack loads
    folder_paths.add_model_folder_path("fomm", str(comfy_dirs / "models" / "fomm"))
    write_test_model(comfy_dirs / "models" / "fomm" / TEST_MODEL_NAME)

    spec = importlib.util.spec_from_file_location("comfyui_fomm_pack", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.nodes.register_model_folder()
    return module
