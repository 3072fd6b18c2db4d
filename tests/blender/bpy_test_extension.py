"""Packaging: a valid Blender extension that also installs as a legacy add-on."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import bpy
import numpy as np

ADDON = Path(os.environ["FOMM_ADDON_PARENT"]) / "fomm_motion"


def blender_extension_tool() -> str:
    """Blender's own `blender --command extension` implementation, shipped inside bpy."""
    return str(Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py")


def test_manifest_validates_and_builds(tmp_path) -> None:
    tool = blender_extension_tool()
    validate = subprocess.run([sys.executable, tool, "validate", str(ADDON)], capture_output=True, text=True)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    build = subprocess.run([sys.executable, tool, "build", "--source-dir", str(ADDON), "--output-dir", str(tmp_path)], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    (package,) = tmp_path.glob("fomm_motion-*.zip")
    names = set(zipfile.ZipFile(package).namelist())
    assert {"blender_manifest.toml", "__init__.py", "motion.schema.json", "motion_format.py"} <= names
    assert not any("__pycache__" in name for name in names)


def test_enabled_as_an_extension(addon) -> None:
    assert addon.__name__ == "bl_ext.fomm_dev.fomm_motion"
    assert hasattr(bpy.types, "IMPORT_SCENE_OT_fomm_motion") and hasattr(bpy.types, "VIEW3D_PT_fomm_motion")
    assert "bl_ext.fomm_dev.fomm_motion" in bpy.context.preferences.addons


def test_file_import_menu_lists_the_importer(addon) -> None:
    drawn = [function.__name__ for function in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()]
    assert "menu_import" in drawn


class _Layout:
    """Stands in for Blender's UILayout (which exists only while Blender draws a region) and
    checks that every property drawn exists."""

    def __init__(self, drawn: list[str] | None = None, greyed: list[str] | None = None) -> None:
        self.drawn: list[str] = [] if drawn is None else drawn
        self.greyed: list[str] = [] if greyed is None else greyed  # drawn in a layout set inactive
        self.active = True

    def prop(self, data, name, **_) -> None:
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name}"
        self.drawn.append(name)
        if not self.active:
            self.greyed.append(name)

    def row(self) -> "_Layout":
        return _Layout(self.drawn, self.greyed)

    def operator(self, idname, **_) -> None:
        category, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, category), name), idname
        self.drawn.append(idname)

    def box(self) -> "_Layout":
        return self

    def label(self, **_) -> None:
        pass

    def progress(self, **_) -> None:
        pass


def test_panel_and_import_dialog_draw(scene, addon) -> None:
    operators = addon.operators
    panel = _Layout()
    operators.VIEW3D_PT_fomm_motion.draw(type("Panel", (), {"layout": panel})(), bpy.context)
    assert {"import_scene.fomm_motion", "fomm_motion.run", "source", "driving", "checkpoint", "deform", "texture"} <= set(panel.drawn)
    settings = scene.fomm_run  # carries the same import options as the import operator
    for deform, greyed in (("RIG", []), ("FLOW_CACHE", ["motion", "pivots"]), ("NONE", ["motion", "pivots"])):
        settings.deform = deform  # Motion and Bone Pivots shape the rig only
        dialog = _Layout()
        operators.ImportOptions.draw_options(settings, dialog)
        assert dialog.drawn == list(operators.ImportOptions.__annotations__) and dialog.greyed == greyed, deform


def test_loads_as_a_legacy_add_on(tmp_path) -> None:
    """In a fresh Blender: the package on the add-on path, enabled by its module name."""
    script = (
        "import sys, bpy, addon_utils\n"
        f"sys.path.insert(0, {str(ADDON.parent)!r})\n"
        "module = addon_utils.enable('fomm_motion', default_set=True, handle_error=lambda e: (_ for _ in ()).throw(e))\n"
        "assert module is not None and module.bl_info['blender'] == (4, 2, 0)\n"
        "assert hasattr(bpy.ops.import_scene, 'fomm_motion') and 'fomm_motion' in bpy.context.preferences.addons\n"
        "print('legacy ok')\n"
    )
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "legacy ok" in done.stdout, done.stdout + done.stderr


def test_decomposition_is_exact_and_continuous(addon) -> None:
    """Any 2x2 map (reflections too) splits into R(theta) diag(sx, sy) R(phi) exactly, and for
    a smoothly changing map the channels Blender interpolates between two keyed frames give a
    map between the two (no flips half-way)."""
    rig_math = addon.rig_math
    rng = np.random.default_rng(0)
    for affine in rng.normal(size=(200, 2, 2)):
        theta, sx, sy, phi = rig_math.decompose(affine, (rng.normal(), rng.normal()))
        assert np.allclose(rig_math.recompose(theta, sx, sy, phi), affine, atol=1e-9)
    previous, previous_channels, previous_affine = (0.0, 0.0), None, None
    for t in np.linspace(0, 1, 120):
        turn = 3 * np.pi * t
        rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
        affine = rotation @ np.array([[1 + 0.5 * t, 0.3 * np.sin(5 * t)], [0.0, 1.0 - 0.2 * t]])
        channels = np.array(rig_math.decompose(affine, previous))
        assert np.allclose(rig_math.recompose(*channels), affine, atol=1e-9)
        if previous_channels is not None:
            halfway = rig_math.recompose(*(channels + previous_channels) / 2)
            assert np.abs(halfway - (affine + previous_affine) / 2).max() < 0.02
        previous, previous_channels, previous_affine = (channels[0], channels[3]), channels, affine
