"""Building the animated plane in the scene from loaded motion data.

``import_motion`` creates, inside a new collection: a grid plane textured with the source
image (or the generated frames as an image sequence) and one of
- an armature rig: a control bone per keypoint keyed on every frame, a child bone per control
  for the shear part of the local affine motion, a static background bone, and vertex groups
  from the motion file's blend weights (linear blend skinning through an Armature modifier);
- a Mesh Cache modifier playing the model's exact dense flow from a .pc2 file;
- nothing (a still plane, e.g. for the generated frames, which already move).
``SceneGuard`` makes a failed import leave the file exactly as it was.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from .motion_data import FrameSequence, MotionData
from .rig_math import (
    PC2_HEADER,
    BonePose,
    GridMesh,
    PlaneFrame,
    bone_pose,
    flow_positions,
    grid_mesh,
    region_pivots,
    vertex_weights,
    write_pc2,
)

DEFORM_MODES = ("RIG", "FLOW_CACHE", "NONE")
TEXTURE_MODES = ("SOURCE", "FRAMES")
MOTION_MODES = ("FILE", "ABSOLUTE")
PIVOT_MODES = ("KEYPOINTS", "REGIONS")
BACKGROUND_BONE = "BG"


def control_bone(k: int) -> str:
    return f"KP_{k:02d}"


def shear_bone(k: int) -> str:
    return f"KP_{k:02d}.shear"


@dataclass(frozen=True)
class ImportSettings:
    deform: str = "RIG"  # one of DEFORM_MODES
    texture: str = "SOURCE"  # one of TEXTURE_MODES
    motion: str = "FILE"  # one of MOTION_MODES: the file's (normalised) motion, or the raw driving keypoints
    pivots: str = "KEYPOINTS"  # one of PIVOT_MODES: bones at the keypoints, or at the centres of the parts they move
    height: float = 2.0  # plane height in scene units
    subdivisions: int = 64  # quads along the plane's longer side
    upright: bool = True  # stand in the XZ plane facing -Y (front view); else lie in XY
    emission: bool = True  # unlit (shows the image's colours exactly) or Principled BSDF
    frame_start: int = 1
    set_scene: bool = True  # set the scene's fps and frame range to the motion's; else retime to the scene's fps


class ImportFailed(Exception):
    """The motion file is valid but cannot be imported as asked (unreadable image, ...)."""


class SceneGuard:
    """On an exception, remove every data-block created inside the block, restore the scene's
    frame settings and delete the files this import created (``files``; never a file that was
    there before), so the .blend and the folder are exactly as before."""

    def __init__(self, scene: bpy.types.Scene):
        self.scene = scene
        self.files: list[Path] = []

    def __enter__(self) -> "SceneGuard":
        self.before = {uid for _, uid in _all_ids()}
        render = self.scene.render
        self.settings = (render.fps, render.fps_base, self.scene.frame_start, self.scene.frame_end, self.scene.frame_current)
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if kind is None:
            return False
        created = [datablock for datablock, uid in _all_ids() if uid not in self.before]
        if created:
            bpy.data.batch_remove(created)
        render = self.scene.render
        render.fps, render.fps_base, self.scene.frame_start, self.scene.frame_end, current = self.settings
        self.scene.frame_set(current)
        for path in self.files:
            path.unlink(missing_ok=True)
        return False

    def new_file(self, folder: Path, stem: str, suffix: str) -> Path:
        """Create an empty file ``<stem><suffix>`` in ``folder``, or ``<stem>.001<suffix>``... if
        that name is taken (another import's cache, in use by another plane or .blend file),
        and remember it as this import's. Creation is exclusive, so two imports never share
        a file."""
        for number in range(1000):
            path = folder / (f"{stem}{suffix}" if number == 0 else f"{stem}.{number:03d}{suffix}")
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            except FileExistsError:
                continue
            self.files.append(path)
            return path
        raise ImportFailed(f"{folder} already holds 1000 files named {stem}.*{suffix}: remove old ones")


def _all_ids():
    for prop in bpy.types.BlendData.bl_rna.properties:
        if prop.type != "COLLECTION" or not issubclass(getattr(bpy.types, prop.fixed_type.identifier, type(None)), bpy.types.ID):
            continue
        for datablock in getattr(bpy.data, prop.identifier):
            yield datablock, datablock.session_uid


@dataclass(frozen=True)
class ImportResult:
    collection: bpy.types.Collection
    plane: bpy.types.Object
    rig: bpy.types.Object | None
    cache: Path | None = None  # the baked Flow cache
    warning: str | None = None  # something the artist should know, though the import succeeded

    @property
    def summary(self) -> str:
        """What the import made, in words: the collection, and the cache file it wrote (it can
        be large, and it lives beside the motion file, not in the .blend)."""
        if self.cache is None:
            return f"Imported {self.collection.name}"
        size = self.cache.stat().st_size
        amount = f"{size / 2**20:.0f} MB" if size >= 2**20 else f"{size / 2**10:.0f} KB"
        return f"Imported {self.collection.name}, its flow baked to {self.cache.name} ({amount})"


# On each import's collection: the scene frame rate at which it plays at its real speed.
REAL_SPEED_FPS = "fomm_real_speed_fps"


def import_motion(context: bpy.types.Context, data: MotionData, settings: ImportSettings) -> ImportResult:
    """Build the plane (and rig or cache) for ``data``; on any error nothing is left behind."""
    _check_settings(data, settings)
    scene = context.scene
    timing = Timing.of(scene, data.fps, settings)
    with SceneGuard(scene) as guard:
        frame = PlaneFrame.for_image(data.width, data.height, data.align_corners, settings.height)
        collection = bpy.data.collections.new(f"FOMM {data.name}")
        scene.collection.children.link(collection)
        image = _load_texture(data, settings)
        mesh = _plane_mesh(f"FOMM {data.name}", grid_mesh(frame, settings.subdivisions))
        material = _material(f"FOMM {data.name}", image, settings.emission)
        if settings.texture == "FRAMES":
            _play_sequence(material, data.frames, timing)
        mesh.materials.append(material)
        plane = bpy.data.objects.new(f"FOMM {data.name}", mesh)
        collection.objects.link(plane)
        rig = cache = None
        if settings.deform == "RIG":
            rig = _build_rig(context, collection, plane, frame, data, settings, timing)
        elif settings.deform == "FLOW_CACHE":
            cache = _bake_flow_cache(plane, frame, data, timing, guard, context.window_manager)
        root = rig or plane
        root.location = tuple(scene.cursor.location)
        root.rotation_euler = (math.pi / 2, 0.0, 0.0) if settings.upright else (0.0, 0.0, 0.0)
        warning = None
        if settings.set_scene:
            warning = _speed_changes(scene, data.fps)
            _set_scene_timing(scene, data.fps, settings.frame_start, data.num_frames)
        collection[REAL_SPEED_FPS] = scene_fps(scene)
        for selected in context.selected_objects:
            selected.select_set(False)
        root.select_set(True)
        context.view_layer.objects.active = root
        scene.frame_set(scene.frame_current)
    return ImportResult(collection, plane, rig, cache, warning)


@dataclass(frozen=True)
class Timing:
    """Where motion frame ``t`` lands in the scene: ``start + t * step``.

    With Set Scene Timing the scene takes the motion's frame rate and ``step`` is 1. Without
    it the motion keeps its real speed in the scene's frame rate (as Blender's BVH importer
    scales its keys): a 12 fps motion in a 24 fps scene puts its frames 2 scene frames apart.
    """

    start: int
    step: float

    @staticmethod
    def of(scene: bpy.types.Scene, motion_fps: float, settings: ImportSettings) -> "Timing":
        fps = scene_fps(scene)
        step = 1.0 if settings.set_scene or same_rate(fps, motion_fps) else fps / motion_fps
        return Timing(settings.frame_start, step)

    def scene_frames(self, count: int) -> np.ndarray:
        return self.start + self.step * np.arange(count, dtype=np.float64)

    def motion_frame(self, scene_frame: np.ndarray) -> np.ndarray:
        """The motion frame (0-based) a still image shows at each scene frame: the last one
        that has started, so frames are held (slower scene) or skipped (faster scene)."""
        return np.floor((scene_frame - self.start) / self.step + 1e-3).astype(np.int64)


def _check_settings(data: MotionData, settings: ImportSettings) -> None:
    for name, allowed in (("deform", DEFORM_MODES), ("texture", TEXTURE_MODES), ("motion", MOTION_MODES), ("pivots", PIVOT_MODES)):
        if getattr(settings, name) not in allowed:
            raise ImportFailed(f"{name} must be one of {', '.join(allowed)}, not {getattr(settings, name)!r}")
    if settings.deform == "FLOW_CACHE" and data.flow is None:
        raise ImportFailed(f"{data.path.name} has no dense flow to bake: write it with `fomm motion --flow`")
    if settings.texture == "FRAMES" and data.frames is None:
        raise ImportFailed(f"{data.path.name} has no generated frames: write it with `fomm motion --frames`")
    if settings.height <= 0 or settings.subdivisions < 1:
        raise ImportFailed("the plane needs a positive height and at least one subdivision")


# ------------------------------------------------------------------------------ plane
def _plane_mesh(name: str, grid: GridMesh) -> bpy.types.Mesh:
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(grid.positions))
    mesh.vertices.foreach_set("co", grid.positions.astype(np.float32).ravel())
    corners = grid.quads.ravel().astype(np.int32)
    mesh.loops.add(len(corners))
    mesh.loops.foreach_set("vertex_index", corners)
    mesh.polygons.add(len(grid.quads))
    mesh.polygons.foreach_set("loop_start", np.arange(0, len(corners), 4, dtype=np.int32))
    uv_layer = mesh.uv_layers.new(name="UVMap")
    uv_layer.data.foreach_set("uv", grid.uvs[corners].astype(np.float32).ravel())
    mesh.update(calc_edges=True)
    mesh.validate()
    return mesh


def _load_texture(data: MotionData, settings: ImportSettings) -> bpy.types.Image:
    if settings.texture == "FRAMES":
        assert data.frames is not None
        image = _load_image(data.frames.first)
        image.source = "SEQUENCE"
        return image
    if data.image_path is not None:
        return _load_image(data.image_path)
    assert data.image_png is not None
    name = f"{data.name}.source.png"
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder) / name
        scratch.write_bytes(data.image_png)
        image = _load_image(scratch)
    image.name = name
    numbered = re.fullmatch(r".*\.(\d{3,})", image.name) if image.name != name else None
    if numbered:  # Blender numbered it (another import's: face.source.png.001): Unpack must not share its file
        name = f"{data.name}.source.{numbered.group(1)}.png"
    image.filepath_raw = f"//{name}"  # where Unpack writes it: packing from memory keeps this path
    image.pack(data=data.image_png, data_len=len(data.image_png))
    return image


def _load_image(path: Path) -> bpy.types.Image:
    """Load an image the motion file's reader has checked (it exists, its PNG header gives the
    motion's aspect ratio); its pixel data can still be damaged, which only loading shows."""
    image = bpy.data.images.load(str(path), check_existing=False)
    width, height = image.size  # reading the size loads the pixels
    if width == 0 or height == 0:
        raise ImportFailed(f"{path.name} cannot be read as an image")
    image.filepath_raw = _blend_relative(path)  # the project can move with its motion files
    return image


def _material(name: str, image: bpy.types.Image, emission: bool) -> bpy.types.Material:
    """Image texture -> Emission (or Principled) shader, alpha mixed with transparency."""
    material = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):
        material.use_nodes = True  # always on (and deprecated) from 5.0
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = image
    texture.interpolation = "Linear"
    texture.extension = "EXTEND"
    texture.location = (-500, 0)
    if emission:
        shader = nodes.new("ShaderNodeEmission")
        links.new(texture.outputs["Color"], shader.inputs["Color"])
    else:
        shader = nodes.new("ShaderNodeBsdfPrincipled")
        links.new(texture.outputs["Color"], shader.inputs["Base Color"])
    shader.location = (-200, -100)
    transparent = nodes.new("ShaderNodeBsdfTransparent")
    transparent.location = (-200, 100)
    mix = nodes.new("ShaderNodeMixShader")
    mix.location = (50, 0)
    links.new(texture.outputs["Alpha"], mix.inputs["Fac"])
    links.new(transparent.outputs[0], mix.inputs[1])
    links.new(shader.outputs[0], mix.inputs[2])
    output = nodes.new("ShaderNodeOutputMaterial")
    output.location = (250, 0)
    links.new(mix.outputs[0], output.inputs["Surface"])
    nodes.active = texture  # what Workbench's texture colour mode shows
    return material


def _play_sequence(material: bpy.types.Material, frames: FrameSequence, timing: Timing) -> None:
    """Show generated frame 1 at scene frame ``timing.start``, the next ``timing.step``
    frames later, and so on.

    An image sequence shows file ``scene frame - frame_start + 1 + frame_offset``, one per
    scene frame; when the scene runs at another rate the offset is keyed on every scene frame
    (constant interpolation) so that each shows the motion frame due then.
    """
    texture = material.node_tree.nodes.active
    user = texture.image_user
    user.frame_start = timing.start
    user.use_auto_refresh = True
    user.use_cyclic = False
    if timing.step == 1.0:
        user.frame_duration = frames.count
        user.frame_offset = frames.first_number - 1
        return
    span = math.ceil((frames.count - 1) * timing.step - 1e-3) + 1  # scene frames until the last motion frame
    user.frame_duration = span
    elapsed = np.arange(span, dtype=np.float64)
    shown = np.minimum(timing.motion_frame(timing.start + elapsed), frames.count - 1)
    offsets = frames.first_number + shown - (elapsed + 1)
    channels = _Channels(material.node_tree, f"{material.name} Frames")
    channels.add(f'nodes["{texture.name}"].image_user.frame_offset', 0, timing.start + elapsed, offsets, "Frames", _CONSTANT)


# ------------------------------------------------------------------------------ rig
def _build_rig(
    context, collection, plane, frame: PlaneFrame, data: MotionData, settings: ImportSettings, timing: Timing
) -> bpy.types.Object:
    # named after its plane (FOMM face.001 Rig moves FOMM face.001), numbered or not
    armature = bpy.data.armatures.new(f"{plane.name} Rig")
    armature.display_type = "OCTAHEDRAL"
    rig = bpy.data.objects.new(f"{plane.name} Rig", armature)
    rig.show_in_front = True
    collection.objects.link(rig)
    rest = np.empty(len(plane.data.vertices) * 3, np.float32)
    plane.data.vertices.foreach_get("co", rest)
    rest = rest.reshape(-1, 3)
    weights = vertex_weights(data.masks, frame.to_normalised(rest))
    keypoints = frame.to_local(data.source_points)
    # Keypoints can sit together or off the object (the default model's gather on the torso);
    # at the centres of their parts the bones are where an artist looks for them.
    pivots = region_pivots(weights, rest[:, :2].astype(np.float64), keypoints) if settings.pivots == "REGIONS" else None
    _add_bones(context, rig, keypoints if pivots is None else pivots, 0.04 * settings.height, data.num_kp)

    plane.parent = rig
    _assign_weights(plane, weights, [BACKGROUND_BONE] + [shear_bone(k) for k in range(data.num_kp)])
    modifier = plane.modifiers.new("FOMM Rig", "ARMATURE")
    modifier.object = rig
    modifier.use_vertex_groups = True
    modifier.use_bone_envelopes = False

    track = data.motion if settings.motion == "FILE" else data.driving
    pose = bone_pose(frame, data.source_points, data.source_jacobians, track.points, track.jacobians, pivots)
    _key_pose(rig, pose, timing.scene_frames(pose.location.shape[0]))
    return rig


def _add_bones(context, rig: bpy.types.Object, heads: np.ndarray, length: float, num_kp: int) -> None:
    """Bones along +Y with roll 0, so pose channels act along the plane's own axes."""
    view_layer = context.view_layer
    previous_active = view_layer.objects.active
    view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        bones = rig.data.edit_bones
        background = bones.new(BACKGROUND_BONE)
        background.head, background.tail = (0.0, 0.0, 0.0), (0.0, 2 * length, 0.0)
        for k, (x, y) in enumerate(heads):
            control = bones.new(control_bone(k))
            control.head, control.tail, control.roll = (x, y, 0.0), (x, y + length, 0.0), 0.0
            control.use_deform = False
            shear = bones.new(shear_bone(k))
            shear.head, shear.tail, shear.roll = (x, y, 0.0), (x, y + 0.5 * length, 0.0), 0.0
            shear.parent = control
            shear.inherit_scale = "FULL"  # parent's non-uniform scale, then this rotation: shear
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        view_layer.objects.active = previous_active
    for k in range(num_kp):
        rig.data.bones[shear_bone(k)].hide = True
        control = rig.pose.bones[control_bone(k)]
        control.lock_location[2] = True
        control.lock_rotation[0] = control.lock_rotation[1] = True
        control.lock_scale[2] = True
    for bone in rig.pose.bones:
        bone.rotation_mode = "XYZ"


def _assign_weights(plane: bpy.types.Object, weights: np.ndarray, names: list[str]) -> None:
    """Vertex groups from the (N, len(names)) weights, each written whole as a float
    attribute and converted in C. One ``VertexGroup.add`` call per vertex made a
    512-subdivision import of the tests' puppet take 2.4 s instead of 1.3 s."""
    mesh = plane.data
    for column, name in enumerate(names):
        attribute = mesh.attributes.new(name, "FLOAT", "POINT")
        attribute.data.foreach_set("value", np.ascontiguousarray(weights[:, column], np.float32))
        mesh.attributes.active = attribute
        with bpy.context.temp_override(object=plane, active_object=plane):
            bpy.ops.geometry.attribute_convert(mode="VERTEX_GROUP")
    mesh.update()


def _key_pose(rig: bpy.types.Object, pose: BonePose, frames: np.ndarray) -> None:
    channels = _Channels(rig, rig.name)
    for k in range(pose.location.shape[1]):
        control, shear = f'pose.bones["{control_bone(k)}"]', f'pose.bones["{shear_bone(k)}"]'
        group = control_bone(k)
        channels.add(f"{control}.location", 0, frames, pose.location[:, k, 0], group)
        channels.add(f"{control}.location", 1, frames, pose.location[:, k, 1], group)
        channels.add(f"{control}.rotation_euler", 2, frames, pose.theta[:, k], group)
        channels.add(f"{control}.scale", 0, frames, pose.scale[:, k, 0], group)
        channels.add(f"{control}.scale", 1, frames, pose.scale[:, k, 1], group)
        channels.add(f"{shear}.rotation_euler", 2, frames, pose.phi[:, k], group)


_LINEAR = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items["LINEAR"].value
_CONSTANT = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items["CONSTANT"].value


class _Channels:
    """F-curves of a new action on ``owner``, across Blender's action APIs: layered actions
    with slots (4.4+; ``Action.fcurves`` is gone in 5.0) and the older flat actions."""

    def __init__(self, owner: bpy.types.ID, name: str):
        action = bpy.data.actions.new(name)
        animation = owner.animation_data or owner.animation_data_create()
        animation.action = action
        self.groups: dict[str, object] = {}
        if not hasattr(action, "slots"):  # 4.2, 4.3
            self.bag = action
            return
        slot = animation.action_slot or action.slots.new(id_type=owner.id_type, name=owner.name)
        animation.action_slot = slot
        from bpy_extras import anim_utils

        if hasattr(anim_utils, "action_ensure_channelbag_for_slot"):  # 5.0+
            self.bag = anim_utils.action_ensure_channelbag_for_slot(action, slot)
        else:  # 4.4, 4.5
            layer = action.layers[0] if action.layers else action.layers.new("Layer")
            strip = layer.strips[0] if layer.strips else layer.strips.new(type="KEYFRAME")
            self.bag = strip.channelbag(slot, ensure=True)

    def add(self, data_path: str, index: int, frames: np.ndarray, values: np.ndarray, group: str, interpolation: int = _LINEAR) -> None:
        curve = self.bag.fcurves.new(data_path, index=index)
        if group not in self.groups:
            self.groups[group] = self.bag.groups.new(group)
        curve.group = self.groups[group]
        points = curve.keyframe_points
        points.add(len(frames))
        points.foreach_set("co", np.column_stack([frames, values]).astype(np.float32).ravel())
        points.foreach_set("interpolation", np.full(len(frames), interpolation, np.int32))
        curve.update()


# ------------------------------------------------------------------------------ caches
MAX_FRAME_SCALE = 100.0  # Blender clamps the Mesh Cache modifier's frame_scale to this


def _bake_flow_cache(plane, frame: PlaneFrame, data: MotionData, timing: Timing, guard: SceneGuard,
                     window_manager: bpy.types.WindowManager) -> Path:
    """Write the cache beside the motion file and play it with a Mesh Cache modifier; the
    cache's path."""
    assert data.flow is not None
    if timing.step < 1 / MAX_FRAME_SCALE:
        raise ImportFailed(
            f"the motion runs at more than {MAX_FRAME_SCALE:g} times the scene's frame rate, faster than a Mesh Cache "
            "can play: turn on Set Scene Timing or raise the scene's frame rate"
        )
    rest = np.empty(len(plane.data.vertices) * 3, np.float32)
    plane.data.vertices.foreach_get("co", rest)
    rest = rest.reshape(-1, 3).astype(np.float64)
    samples = len(data.flow)
    _check_free_space(data.path.parent, PC2_HEADER.size + samples * rest.size * 4)
    window_manager.progress_begin(0, samples)
    try:
        path = guard.new_file(data.path.parent, data.name, ".pc2")
        scratch = guard.new_file(data.path.parent, f".{path.name}", ".partial")
        moved = flow_positions(frame, data.flow, rest)
        write_pc2(scratch, _reporting(moved, window_manager), samples, len(rest))
        os.replace(scratch, path)  # the cache appears whole or not at all
    except OSError as exc:
        raise ImportFailed(f"cannot write the mesh cache in {data.path.parent}: {exc.strerror}; put the motion file in a writable folder") from None
    finally:
        window_manager.progress_end()
    modifier = plane.modifiers.new("FOMM Flow", "MESH_CACHE")
    modifier.cache_format = "PC2"
    modifier.filepath = _blend_relative(path)
    modifier.time_mode = "FRAME"
    modifier.play_mode = "SCENE"
    # The modifier reads sample (scene frame x frame_scale - frame_start): sample 0 at timing.start.
    modifier.frame_scale = 1.0 / timing.step
    modifier.frame_start = timing.start / timing.step
    modifier.interpolation = "LINEAR"
    modifier.deform_mode = "OVERWRITE"
    return path


# The cache the last import baked, while only that import's plane can use it: a save (the
# saved .blend may use it) or another file's load forgets it.
_unsaved_cache: list[Path] = []


def remember_cache(path: Path | None) -> None:
    _unsaved_cache[:] = [] if path is None else [path]


@bpy.app.handlers.persistent
def forget_cache(*_args) -> None:
    _unsaved_cache.clear()


def delete_replaced_cache() -> Path | None:
    """Delete the cache of the import that Adjust Last Operation has just undone to run it
    again with other options (every tweak used to leave its .pc2 behind, up to a gigabyte
    each). Nothing can bring that import back: Blender drops it from the undo history. Kept
    when a plane still plays it or a save since the bake may; returns the path deleted."""
    if not _unsaved_cache:
        return None
    path = _unsaved_cache.pop()
    used = {
        Path(bpy.path.abspath(modifier.filepath)).resolve()
        for obj in bpy.data.objects
        for modifier in obj.modifiers
        if modifier.type == "MESH_CACHE" and modifier.filepath
    }
    if path.resolve() in used:
        return None
    path.unlink(missing_ok=True)
    return path


def _check_free_space(folder: Path, size: int) -> None:
    """Refuse a cache the disk cannot hold, before writing any of it: a long video on a dense
    plane makes gigabytes (frames x vertices x 12 bytes)."""
    free = shutil.disk_usage(folder).free
    if size > free:
        raise ImportFailed(
            f"the mesh cache needs {size / 2**30:.2f} GB and {folder} has {free / 2**30:.2f} GB free: import with fewer "
            "subdivisions (the cache grows with their square), or free some space"
        )


def _reporting(frames: Iterator[np.ndarray], window_manager: bpy.types.WindowManager) -> Iterator[np.ndarray]:
    """``frames`` passed through, each one counted on Blender's progress indicator."""
    for done, item in enumerate(frames, 1):
        yield item
        window_manager.progress_update(done)


def _speed_changes(scene: bpy.types.Scene, fps: float) -> str | None:
    """Earlier imports in ``scene`` whose speed a new frame rate of ``fps`` would change, in words."""
    if same_rate(scene_fps(scene), fps):
        return None
    changed = sorted(
        child.name
        for child in scene.collection.children_recursive
        if REAL_SPEED_FPS in child and not same_rate(child[REAL_SPEED_FPS], fps)
    )
    if not changed:
        return None
    return (
        f"the scene now runs at {fps:g} fps, so {', '.join(changed)} play{'s' if len(changed) == 1 else ''} at another "
        "speed: import them again with Set Scene Timing off to retime them, or import this one with it off"
    )


def scene_fps(scene: bpy.types.Scene) -> float:
    return scene.render.fps / scene.render.fps_base


def same_rate(a: float, b: float) -> bool:
    """29.97 and Blender's 30/1.001 are one rate: frames that close are the same frames."""
    return math.isclose(a, b, rel_tol=1e-4)


def _set_scene_timing(scene: bpy.types.Scene, fps: float, frame_start: int, count: int) -> None:
    whole = max(1, round(fps))
    scene.render.fps = whole
    scene.render.fps_base = whole / fps
    scene.frame_start = frame_start
    scene.frame_end = frame_start + count - 1
    if not scene.frame_start <= scene.frame_current <= scene.frame_end:  # else play starts outside the range
        scene.frame_current = frame_start


def _blend_relative(path: Path) -> str:
    """``//``-relative to a saved .blend, so the project can move; absolute where it cannot
    be (an unsaved .blend, or another drive on Windows)."""
    if not bpy.data.filepath:
        return str(path)
    try:
        return bpy.path.relpath(str(path))
    except ValueError:
        return str(path)
