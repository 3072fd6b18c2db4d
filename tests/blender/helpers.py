"""Helpers of the Blender suite: reading the plane back, the expected motion, renders, snapshots.

The expected motion is derived here from the motion file's JSON and the FOMM formula, not
with the add-on's code, so the tests check the add-on against the format's definition:
a source point p (normalised) moves to  w_bg p + sum_k w_k (kp_d + J_d J_s^-1 (p - kp_s)).
"""

from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np

RENDER_SIZE = 128


def load(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def import_motion(path: str | Path, **options) -> set[str]:
    return bpy.ops.import_scene.fomm_motion(filepath=str(path), **options)


def plane_object(doc_path: str | Path) -> bpy.types.Object:
    return bpy.data.objects[f"FOMM {Path(doc_path).stem}"]


def rest_vertices(obj: bpy.types.Object) -> np.ndarray:
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    return co.reshape(-1, 3).astype(np.float64)


def evaluated_vertices(obj: bpy.types.Object) -> np.ndarray:
    """Vertex positions after the modifiers, in the object's local space."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    evaluated.to_mesh_clear()
    return co.reshape(-1, 3).astype(np.float64)


def group_weights(obj: bpy.types.Object, names: list[str]) -> np.ndarray:
    """(N, len(names)) vertex-group weights as Blender stores them."""
    index = {obj.vertex_groups[name].index: column for column, name in enumerate(names)}
    weights = np.zeros((len(obj.data.vertices), len(names)))
    for vertex in obj.data.vertices:
        for membership in vertex.groups:
            if membership.group in index:
                weights[vertex.index, index[membership.group]] = membership.weight
    return weights


def weight_names(num_kp: int) -> list[str]:
    return ["BG"] + [f"KP_{k:02d}.shear" for k in range(num_kp)]


def plane_scale(doc: dict, height: float = 2.0) -> np.ndarray:
    """Normalised -> plane-local linear map for a plane ``height`` units high (y flips)."""
    width_px, height_px = doc["image"]["width"], doc["image"]["height"]
    width = height * width_px / height_px
    inset = ((width_px - 1) / width_px, (height_px - 1) / height_px) if doc["image"]["align_corners"] else (1.0, 1.0)
    return np.diag([width / 2 * inset[0], -height / 2 * inset[1]])


def expected_vertices(doc: dict, rest: np.ndarray, weights: np.ndarray, frame: int, track: str = "motion") -> np.ndarray:
    """Where the FOMM formula puts each rest vertex (N, 3) in 0-based ``frame``."""
    scale = plane_scale(doc)
    to_normalised = np.linalg.inv(scale)
    p = rest[:, :2] @ to_normalised.T
    kp_s = np.asarray(doc["source"]["keypoints"])
    kp_d = np.asarray(doc[track]["keypoints"][frame])
    if doc["has_jacobians"]:
        affine = np.asarray(doc[track]["jacobians"][frame]) @ np.linalg.inv(np.asarray(doc["source"]["jacobians"]))
    else:
        affine = np.broadcast_to(np.eye(2), (len(kp_s), 2, 2))
    moved = kp_d[None] + np.einsum("kij,nkj->nki", affine, p[:, None, :] - kp_s[None])
    target = weights[:, :1] * p + (weights[:, 1:, None] * moved).sum(1)
    out = rest.copy()
    out[:, :2] = target @ scale.T
    return out


def weights_at(doc: dict, points: np.ndarray) -> np.ndarray:
    """The file's blend weights at normalised ``points`` (..., 2) -> (K+1, ...), bilinear
    between the grid nodes (background first)."""
    masks = np.asarray(doc["weights"]["masks"])
    _, rows, columns = masks.shape
    x = np.clip((points[..., 0] + 1) / 2 * (columns - 1), 0, columns - 1)
    y = np.clip((points[..., 1] + 1) / 2 * (rows - 1), 0, rows - 1)
    j = np.minimum(np.floor(x).astype(int), columns - 2)
    i = np.minimum(np.floor(y).astype(int), rows - 2)
    fx, fy = x - j, y - i
    top = masks[:, i, j] * (1 - fx) + masks[:, i, j + 1] * fx
    bottom = masks[:, i + 1, j] * (1 - fx) + masks[:, i + 1, j + 1] * fx
    return top * (1 - fy) + bottom * fy


# ------------------------------------------------------------------------------ render
def render_setup(extent: float) -> None:
    """Orthographic camera looking down at a flat plane centred at the origin; Cycles on the
    CPU with an exact colour pipeline (Standard view, box filter)."""
    scene = bpy.context.scene
    camera = bpy.data.objects.new("Test camera", bpy.data.cameras.new("Test camera"))
    camera.data.type = "ORTHO"
    camera.data.ortho_scale = extent
    camera.location = (0.0, 0.0, 5.0)
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4
    scene.cycles.use_denoising = False
    scene.cycles.pixel_filter_type = "BOX"
    scene.render.resolution_x = scene.render.resolution_y = RENDER_SIZE
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = True
    scene.render.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = "Standard"


def render(path: Path, frame: int) -> np.ndarray:
    """(RENDER_SIZE, RENDER_SIZE, 4) float RGBA of scene ``frame``, first row at the top."""
    scene = bpy.context.scene
    scene.frame_set(frame)
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return read_png(path)


def read_png(path: Path) -> np.ndarray:
    image = bpy.data.images.load(str(path), check_existing=False)
    width, height = image.size
    pixels = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4)[::-1]


def pixel_positions(extent: float) -> np.ndarray:
    """(RENDER_SIZE, RENDER_SIZE, 2) plane-local (x, y) of each render pixel's centre."""
    centres = (np.arange(RENDER_SIZE) + 0.5) / RENDER_SIZE * extent - extent / 2
    x, y = np.meshgrid(centres, -centres)
    return np.stack([x, y], axis=-1)


# ------------------------------------------------------------------------------ snapshots
def snapshot() -> dict:
    """Every data-block by type and name, and the scene's timing: what an import changes."""
    state = {}
    for prop in bpy.types.BlendData.bl_rna.properties:
        if prop.type == "COLLECTION" and issubclass(getattr(bpy.types, prop.fixed_type.identifier, type(None)), bpy.types.ID):
            state[prop.identifier] = sorted(block.name for block in getattr(bpy.data, prop.identifier))
    scene = bpy.context.scene
    state["scene"] = (scene.render.fps, scene.render.fps_base, scene.frame_start, scene.frame_end, scene.frame_current)
    state["users"] = sorted((block.name, block.users) for block in bpy.data.images)
    return state
