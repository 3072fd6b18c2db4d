"""Fixtures of the Blender suite, loaded as a plugin by pytest.ini (``-p bpy_fixtures``).

Not a conftest.py: the torch suite walks this folder too, and a second module named
``conftest`` would shadow ``tests/conftest.py`` there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run the Blender suite through tests/test_motion_blender.py")
    return value


@pytest.fixture(scope="session")
def manifest() -> dict:
    """Paths of the inputs tests/test_motion_blender.py made (motion files, image, video)."""
    return json.loads((Path(_required("FOMM_TEST_DATA")) / "manifest.json").read_text())


@pytest.fixture(scope="session")
def addon():
    """The add-on enabled the way Blender enables an extension: a local repository pointing
    at the source tree, then `addon_utils.enable("bl_ext.<repo>.<id>")`."""
    _required("BLENDER_USER_RESOURCES")  # keeps bpy away from ~/.config/blender
    import addon_utils
    import bpy

    bpy.context.preferences.extensions.repos.new(
        name="FOMM dev", module="fomm_dev", custom_directory=_required("FOMM_ADDON_PARENT"), source="USER"
    )
    module = addon_utils.enable("bl_ext.fomm_dev.fomm_motion", default_set=True, handle_error=_raise)
    assert module is not None
    yield module
    addon_utils.disable("bl_ext.fomm_dev.fomm_motion", default_set=True)


def _raise(exc: BaseException) -> None:
    raise exc


@pytest.fixture
def scene(addon):
    """An empty file (read_homefile keeps the preferences, so the add-on stays enabled)."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    return bpy.context.scene
