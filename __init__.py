"""ComfyUI entry point of the FOMM node pack.

ComfyUI imports this folder (cloned into ``ComfyUI/custom_nodes/``) as a package and calls
:func:`comfy_entrypoint` (the V3 node API, ComfyUI >= 0.3.48). The nodes live in ``nodes/``;
the computation they call lives in the ``fomm_model`` library next to them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _import_bundled_library() -> None:
    """Make the ``fomm_model`` folder next to this file importable by its own name.

    A git clone is not pip-installed, and putting this folder on ``sys.path`` would shadow
    ComfyUI's own ``nodes`` module with ours; so only ``fomm_model`` is registered.
    """
    if "fomm_model" in sys.modules:
        return
    package = Path(__file__).resolve().parent / "fomm_model"
    spec = importlib.util.spec_from_file_location(
        "fomm_model", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fomm_model"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["fomm_model"]
        raise


_import_bundled_library()

from comfy_api.latest import ComfyExtension, io  # noqa: E402

from .nodes import NODES, install_samples, register_model_folder  # noqa: E402


class FommExtension(ComfyExtension):
    """The pack as ComfyUI's V3 API sees it: a list of node classes."""

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        """Every FOMM node (``nodes.NODES``)."""
        return NODES


async def comfy_entrypoint() -> FommExtension:
    """Called by ComfyUI when it loads the pack: register the ``models/fomm`` folder (before
    any node lists its files) and copy the sample inputs the shipped workflows open with."""
    register_model_folder()
    install_samples()
    return FommExtension()
