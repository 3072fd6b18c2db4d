"""The pack imported the way ComfyUI's loader imports it, against a real ComfyUI's modules.

Shared by the tests' ``pack`` fixture and ``bench/comfyui_nodes.py``, which must see the
nodes exactly as ComfyUI runs them (nothing stubbed).
"""

from __future__ import annotations

import importlib.util
import site
import sys
from pathlib import Path
from types import ModuleType

from .install import REPO, ComfyInstall, site_packages


def load_pack(comfy: ComfyInstall, base: Path, fomm_folder: Path, repo: Path = REPO) -> ModuleType:
    """Import ComfyUI's modules from ``comfy`` (CPU, its input/output/temp folders under
    ``base``, checkpoints also read from ``fomm_folder``) and the pack at ``repo``."""
    sys.path.append(str(comfy.code))
    site.addsitedir(str(site_packages(comfy)))
    from comfy.cli_args import args

    args.cpu = True  # outside main.py the CLI is not parsed; a CPU-only torch needs this
    import folder_paths

    for name in ("input", "output", "temp"):
        (base / name).mkdir(parents=True, exist_ok=True)
    folder_paths.set_input_directory(str(base / "input"))
    folder_paths.set_output_directory(str(base / "output"))
    folder_paths.set_temp_directory(str(base / "temp"))
    # as an extra_model_paths.yaml entry "fomm: <dir>" would, before the pack loads
    folder_paths.add_model_folder_path("fomm", str(fomm_folder))

    spec = importlib.util.spec_from_file_location("comfyui_fomm_pack", repo / "__init__.py", submodule_search_locations=[str(repo)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.nodes.register_model_folder()
    return module
