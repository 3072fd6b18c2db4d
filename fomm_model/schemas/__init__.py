"""File formats shared with programs that cannot import ``fomm_model`` (the Blender add-on).

Modules here use the standard library only, so the add-on can ship identical copies.
"""
