"""FOMM Motion: import First Order Motion Model motion files as animated, editable image planes.

A Blender 4.2+ extension (``blender_manifest.toml``) that also installs as a legacy add-on
(``bl_info``). It needs only Blender's own Python and numpy; the model itself runs in an
external Python through the ``fomm`` command line (Run FOMM).
"""

bl_info = {  # read only when installed as a legacy add-on
    "name": "FOMM Motion",
    "author": "FOMM toolkit contributors",
    "version": (0, 1, 0),
    "blender": (4, 2, 0),
    "location": "File > Import > FOMM Motion; 3D View > Sidebar > FOMM",
    "description": "Animate an image plane with First Order Motion Model keypoints",
    "category": "Import-Export",
}

from . import operators  # noqa: E402


def register() -> None:
    operators.register()


def unregister() -> None:
    operators.unregister()
