"""Importing a motion file with known geometry (3 keypoints: slide, turn, shear) in Blender."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import bpy
import numpy as np
import pytest

from helpers import (
    evaluated_vertices,
    expected_vertices,
    group_weights,
    import_motion,
    load,
    pixel_positions,
    plane_object,
    plane_scale,
    render,
    render_setup,
    rest_vertices,
    snapshot,
    weight_names,
)


@pytest.fixture
def synthetic(manifest) -> tuple[Path, dict]:
    path = Path(manifest["synthetic"])
    return path, load(path)


def test_builds_textured_plane_rig_and_scene_timing(scene, synthetic) -> None:
    path, doc = synthetic
    assert import_motion(path) == {"FINISHED"}
    plane, rig = plane_object(path), bpy.data.objects[f"FOMM {path.stem} Rig"]
    assert plane.parent == rig and rig.type == "ARMATURE"
    assert bpy.data.collections[f"FOMM {path.stem}"] in scene.collection.children.values()
    rest = rest_vertices(plane)
    assert np.allclose(rest.min(0)[:2], (-1, -1)) and np.allclose(rest.max(0)[:2], (1, 1))  # 64x64 -> 2 x 2 units
    image = plane.active_material.node_tree.nodes.active.image
    assert tuple(image.size) == (256, 256)
    assert (scene.render.fps / scene.render.fps_base, scene.frame_start, scene.frame_end) == (10.0, 1, 6)
    assert scene.frame_current == 1
    scene.frame_start, scene.frame_end = 1001, 1100  # a shot's range, the playhead at its start
    scene.frame_set(1001)
    assert import_motion(path) == {"FINISHED"}
    assert (scene.frame_start, scene.frame_end, scene.frame_current) == (1, 6, 1)  # the playhead comes along
    controls = [bone.name for bone in rig.data.bones if not bone.use_deform]
    assert controls == ["KP_00", "KP_01", "KP_02"]
    assert math.isclose(rig.rotation_euler.x, math.pi / 2, abs_tol=1e-6)  # upright by default: the XZ plane, facing -Y


def test_embedded_image_is_packed_into_the_blend_file(scene, manifest, tmp_path) -> None:
    path = Path(manifest["embedded"])
    assert [p.name for p in path.parent.iterdir()] == ["embedded.json"]
    assert import_motion(path) == {"FINISHED"}
    image = plane_object(path).active_material.node_tree.nodes.active.image
    assert image.packed_file is not None and tuple(image.size) == (256, 256)
    pixels = np.empty(256 * 256 * 4, np.float32)
    image.pixels.foreach_get(pixels)
    blob = pixels.reshape(256, 256, 4)[::-1][77, 77]  # first row at the top; the blob is centred at (0.3, 0.3)
    assert np.allclose(blob[:3], (1.0, 0.95, 0.3), atol=0.02)
    # Unpacked beside a saved .blend it takes the name the side file would have had.
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    image.unpack(method="WRITE_ORIGINAL")
    assert (tmp_path / "embedded.source.png").is_file(), image.filepath
    # A second import of a file of that name (another folder's, another picture) unpacks to a file of its own.
    assert import_motion(path) == {"FINISHED"}
    second = bpy.data.objects["FOMM embedded.001"].active_material.node_tree.nodes.active.image
    assert second.name == "embedded.source.png.001" and second.filepath_raw == "//embedded.source.001.png"
    second.unpack(method="WRITE_ORIGINAL")
    assert (tmp_path / "embedded.source.001.png").is_file() and (tmp_path / "embedded.source.png").is_file()


def test_rig_reproduces_the_motion_at_every_frame(scene, synthetic) -> None:
    path, doc = synthetic
    import_motion(path, subdivisions=40)
    plane = plane_object(path)
    rest = rest_vertices(plane)
    weights = group_weights(plane, weight_names(doc["num_kp"]))
    assert np.allclose(weights.sum(1), 1, atol=1e-6)
    for frame in range(doc["num_frames"]):
        scene.frame_set(frame + 1)
        error = np.abs(evaluated_vertices(plane) - expected_vertices(doc, rest, weights, frame)).max()
        assert error < 2e-5, f"frame {frame + 1}: the rig is {error} units off the motion"


def scene_at(scene, fps: int) -> None:
    """A scene that runs at ``fps`` (the synthetic motion is 10 fps)."""
    scene.render.fps, scene.render.fps_base = fps, 1.0


def test_without_scene_timing_the_rig_keeps_the_motions_speed(scene, synthetic) -> None:
    """Like Blender's BVH importer: in a 25 fps scene a 10 fps motion frame t plays at scene
    frame start + 2.5 t, and the scene's own rate and range are left alone."""
    path, doc = synthetic
    scene_at(scene, 25)
    scene.frame_end = 99
    import_motion(path, subdivisions=40, set_scene=False, frame_start=3)
    assert (scene.render.fps, scene.frame_end) == (25, 99)
    plane = plane_object(path)
    rest = rest_vertices(plane)
    weights = group_weights(plane, weight_names(doc["num_kp"]))
    for t in (0, 2, 4):  # on whole scene frames
        scene.frame_set(3 + int(2.5 * t))
        error = np.abs(evaluated_vertices(plane) - expected_vertices(doc, rest, weights, t)).max()
        assert error < 2e-5, f"motion frame {t} is {error} units off at scene frame {scene.frame_current}"
    scene.frame_set(4)  # between motion frames 0 and 1: on the way from one to the other
    between = evaluated_vertices(plane)
    first, second = (expected_vertices(doc, rest, weights, t) for t in (0, 1))
    assert np.abs(between - first).max() > 1e-3 and np.abs(between - second).max() > 1e-3


def test_vertex_weights_are_the_files_masks(scene, synthetic) -> None:
    """With 20 subdivisions of a 64x64 plane (no corner alignment) the vertices sit on the
    21x21 weight grid, so their weights are the file's values there."""
    path, doc = synthetic
    import_motion(path, subdivisions=20)
    plane = plane_object(path)
    weights = group_weights(plane, weight_names(doc["num_kp"]))
    masks = np.asarray(doc["weights"]["masks"])[:, ::-1]  # grid rows run top-down, vertex rows bottom-up
    expected = masks.reshape(len(masks), -1).T
    assert np.abs(weights - expected).max() < 3e-3  # weights under 1e-3 are dropped


def test_shear_and_rotation_are_exact(scene, synthetic) -> None:
    """Points owned by one keypoint move by its full local affine map, shear included."""
    path, doc = synthetic
    import_motion(path, subdivisions=40, upright=False)
    plane = plane_object(path)
    rest = rest_vertices(plane)
    weights = group_weights(plane, weight_names(doc["num_kp"]))
    scene.frame_set(doc["num_frames"])
    moved = evaluated_vertices(plane)
    scale = plane_scale(doc)
    for k in (1, 2):
        owned = weights[:, k + 1] > 0.999
        assert owned.sum() >= 10
        # least-squares affine of the owned vertices' motion, in normalised coordinates
        before = rest[owned, :2] @ np.linalg.inv(scale).T
        after = moved[owned, :2] @ np.linalg.inv(scale).T
        design = np.column_stack([before, np.ones(len(before))])
        fitted = np.linalg.lstsq(design, after, rcond=None)[0][:2].T
        expected = np.asarray(doc["motion"]["jacobians"][-1][k]) @ np.linalg.inv(doc["source"]["jacobians"][k])
        assert np.abs(fitted - expected).max() < 1e-4
    shear = np.asarray(doc["motion"]["jacobians"][-1][2])
    assert abs(shear[0, 1]) > 0.3  # the file really shears there


def test_plane_moves_where_keypoints_move_and_stays_still_far_away(scene, synthetic, tmp_path) -> None:
    path, doc = synthetic
    import_motion(path, upright=False)
    render_setup(extent=2.2)
    first = render(tmp_path / "first.png", 1)
    last = render(tmp_path / "last.png", doc["num_frames"])
    change = np.abs(last[..., :3] - first[..., :3]).max(-1)
    scale = plane_scale(doc)
    pixels = pixel_positions(2.2) @ np.linalg.inv(scale).T  # normalised position of each pixel
    kp_s = np.asarray(doc["source"]["keypoints"])
    distance = np.linalg.norm(pixels[:, :, None] - kp_s[None, None], axis=-1)  # (h, w, K)
    for k in range(3):
        near = distance[..., k] < 0.2
        assert (change[near] > 0.1).mean() > 0.05, f"nothing moved around keypoint {k}"
    far = (distance.min(-1) > 0.55) & (np.abs(pixels) < 0.95).all(-1)
    assert far.sum() > 1000
    # 8-bit output: a vertex off by float rounding may flip a few pixels by one level
    assert change[far].max() <= 1.5 / 255 and (change[far] > 0).mean() < 0.01, "the plane moved far from every keypoint"


def test_moving_a_control_deforms_the_plane_live(scene, synthetic) -> None:
    path, doc = synthetic
    import_motion(path, subdivisions=40)
    plane, rig = plane_object(path), bpy.data.objects[f"FOMM {path.stem} Rig"]
    scene.frame_set(3)
    before = evaluated_vertices(plane)
    rig.pose.bones["KP_00"].location.x += 0.3
    after = evaluated_vertices(plane)
    weights = group_weights(plane, weight_names(doc["num_kp"]))
    shift = after - before
    owned = weights[:, 1] > 0.999
    assert np.allclose(shift[owned], (0.3, 0, 0), atol=1e-5)
    assert np.abs(shift[weights[:, 0] > 0.999]).max() < 1e-6


def test_absolute_motion_follows_the_driving_keypoints(scene, synthetic) -> None:
    path, doc = synthetic
    import_motion(path, motion="ABSOLUTE", subdivisions=40)
    plane, rig = plane_object(path), bpy.data.objects[f"FOMM {path.stem} Rig"]
    rest = rest_vertices(plane)
    weights = group_weights(plane, weight_names(doc["num_kp"]))
    scene.frame_set(4)
    expected = expected_vertices(doc, rest, weights, 3, track="driving")
    assert np.abs(evaluated_vertices(plane) - expected).max() < 2e-5
    head = np.asarray(rig.pose.bones["KP_01"].head)[:2]
    assert np.allclose(head, np.asarray(doc["driving"]["keypoints"][3][1]) @ plane_scale(doc).T, atol=1e-5)


def test_flow_cache_plays_the_exact_flow(scene, synthetic) -> None:
    path, doc = synthetic
    import_motion(path, deform="FLOW_CACHE", subdivisions=20)
    plane = plane_object(path)
    modifier = plane.modifiers["FOMM Flow"]
    assert modifier.type == "MESH_CACHE" and cache_file(plane).parent == path.parent
    assert re.fullmatch(rf"{path.stem}(\.\d{{3}})?\.pc2", cache_file(plane).name)  # numbered when an earlier test made one
    assert_plays_the_flow(scene, plane, doc, frames=(1, 4, 6))


def test_without_scene_timing_the_flow_cache_keeps_the_motions_speed(scene, synthetic) -> None:
    path, doc = synthetic
    scene_at(scene, 20)
    import_motion(path, deform="FLOW_CACHE", subdivisions=20, set_scene=False, frame_start=5)
    assert scene.render.fps == 20
    positions = np.asarray(doc["flow"]["positions"])[:, ::-1].reshape(doc["num_frames"], -1, 2) @ plane_scale(doc).T
    plane = plane_object(path)
    for t in (0, 3, 5):
        scene.frame_set(5 + 2 * t)
        assert np.abs(evaluated_vertices(plane)[:, :2] - positions[t]).max() < 1e-5, f"motion frame {t}"
    scene.frame_set(5 + 2 * 3 + 1)  # halfway between motion frames 3 and 4
    assert np.abs(evaluated_vertices(plane)[:, :2] - (positions[3] + positions[4]) / 2).max() < 1e-5


def cache_file(plane: bpy.types.Object) -> Path:
    return Path(bpy.path.abspath(plane.modifiers["FOMM Flow"].filepath))


def assert_plays_the_flow(scene, plane: bpy.types.Object, doc: dict, frames: tuple[int, ...]) -> None:
    """With 20 subdivisions the plane's vertices are the flow's grid nodes: they must be
    exactly where the flow puts them."""
    positions = np.asarray(doc["flow"]["positions"])[:, ::-1].reshape(doc["num_frames"], -1, 2)
    for frame in frames:
        scene.frame_set(frame)
        assert np.abs(evaluated_vertices(plane)[:, :2] - positions[frame - 1] @ plane_scale(doc).T).max() < 1e-5


def test_each_import_bakes_its_own_cache_and_a_failed_one_removes_only_its_own(scene, synthetic, addon, monkeypatch) -> None:
    """A second import of the same file must not overwrite the first one's cache (the first
    plane still plays it), and an import that fails after baking deletes only the file it
    wrote, never a cache another plane uses."""
    path, doc = synthetic
    import_motion(path, deform="FLOW_CACHE", subdivisions=20)
    import_motion(path, deform="FLOW_CACHE", subdivisions=10)
    first, second = plane_object(path), bpy.data.objects[f"FOMM {path.stem}.001"]
    assert cache_file(first) != cache_file(second) and cache_file(first).is_file() and cache_file(second).is_file()
    assert_plays_the_flow(scene, first, doc, frames=(4,))  # an 11x11 cache would not fit its 21x21 vertices

    def failing(*_) -> None:
        raise addon.build.ImportFailed("injected failure after the bake")

    monkeypatch.setattr(addon.build, "_set_scene_timing", failing)
    before, files = snapshot(), {p.name: p.read_bytes() for p in path.parent.iterdir() if p.is_file()}
    with pytest.raises(RuntimeError, match="injected failure after the bake"):
        import_motion(path, deform="FLOW_CACHE", subdivisions=20)
    assert snapshot() == before
    assert {p.name: p.read_bytes() for p in path.parent.iterdir() if p.is_file()} == files
    assert_plays_the_flow(scene, first, doc, frames=(6,))


def test_adjusting_the_last_import_deletes_the_cache_of_the_run_it_replaces(scene, synthetic, addon, tmp_path) -> None:
    """Adjust Last Operation undoes the import and runs it again (with options.is_repeat set,
    which a headless Blender cannot drive: its ed.undo_redo crashes without a window), so
    this replays what the operator does then. The replaced run's cache goes; a cache a plane
    still plays, or one a save may use, stays."""
    path, _ = synthetic
    folder = shutil.copytree(path.parent, tmp_path / "motion")
    copied = folder / path.name
    build = addon.build

    def bake() -> Path:
        bpy.ops.ed.undo_push(message="before import")
        before = set(bpy.data.objects.keys())
        assert bpy.ops.import_scene.fomm_motion("EXEC_DEFAULT", True, filepath=str(copied), deform="FLOW_CACHE", subdivisions=10) == {"FINISHED"}
        (plane,) = [bpy.data.objects[name] for name in set(bpy.data.objects.keys()) - before if name.startswith("FOMM")]
        return cache_file(plane)

    replaced = bake()
    bpy.ops.ed.undo()  # what Adjust Last Operation does before running the import again
    assert not any(name.startswith("FOMM") for name in bpy.data.objects.keys())
    assert build.delete_replaced_cache() == replaced and not replaced.exists()
    assert build.delete_replaced_cache() is None  # only that run's
    playing = bake()
    assert build.delete_replaced_cache() is None and playing.is_file()  # a plane plays it
    saved = bake()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))  # the saved file plays it
    bpy.ops.ed.undo()
    assert build.delete_replaced_cache() is None and saved.is_file()
    plain = bake()
    bpy.ops.ed.undo()  # a plain undo leaves it: redo can bring the plane back
    assert plain.is_file() and playing.is_file()


def test_generated_frames_play_as_an_image_sequence(scene, synthetic, tmp_path) -> None:
    path, doc = synthetic
    import_motion(path, deform="NONE", texture="FRAMES", upright=False)
    render_setup(extent=2.2)
    for frame in (1, 3, 6):
        centre = render(tmp_path / f"f{frame}.png", frame)[54:74, 54:74, :3].mean((0, 1))
        expected = np.array([40 * (frame - 1), 255 - 40 * (frame - 1), 128]) / 255
        assert np.abs(centre - expected).max() < 0.02, f"frame {frame} shows {centre}"


def test_generated_frames_keep_the_pad_framings_bars_see_through(scene, manifest, tmp_path) -> None:
    """The frames of a padded source carry the texture's alpha: its bars show what is behind
    the plane, not the colour the model painted there."""
    path = Path(manifest["padded"])
    import_motion(path, deform="NONE", texture="FRAMES", upright=False)
    render_setup(extent=2.2)
    for frame in (1, 6):
        alpha = render(tmp_path / f"f{frame}.png", frame)[..., 3]
        assert alpha[12:28, 54:74].max() < 0.05 and alpha[100:116, 54:74].max() < 0.05, f"frame {frame}: bars not clear"
        assert alpha[54:74, 54:74].min() > 0.95, f"frame {frame}: the picture is not opaque"


def test_without_scene_timing_generated_frames_keep_the_motions_speed(scene, synthetic, tmp_path) -> None:
    """In a 25 fps scene each 10 fps frame shows for 2.5 scene frames on average: the one due
    is the last that has started."""
    path, doc = synthetic
    scene_at(scene, 25)
    import_motion(path, deform="NONE", texture="FRAMES", upright=False, set_scene=False)
    render_setup(extent=2.2)
    for scene_frame, motion_frame in ((1, 1), (3, 1), (4, 2), (6, 3), (9, 4), (13, 5), (14, 6), (20, 6)):
        centre = render(tmp_path / f"f{scene_frame}.png", scene_frame)[54:74, 54:74, :3].mean((0, 1))
        expected = np.array([40 * (motion_frame - 1), 255 - 40 * (motion_frame - 1), 128]) / 255
        assert np.abs(centre - expected).max() < 0.02, f"scene frame {scene_frame} shows {centre}"


def test_a_29_97_fps_motion_in_blenders_29_97_scene_keeps_one_frame_per_frame(scene, synthetic, tmp_path) -> None:
    """A 29.97 fps file in Blender's 29.97 preset (30/1.001) is not retimed: the image sequence
    plays frame by frame, like the rig, with nothing keyed."""
    path, doc = synthetic
    folder = shutil.copytree(path.parent, tmp_path / "ntsc")
    copied = folder / path.name
    copied.write_text(json.dumps({**doc, "fps": 29.97}))
    scene.render.fps, scene.render.fps_base = 30, 1.001
    import_motion(copied, deform="NONE", texture="FRAMES", upright=False, set_scene=False)
    tree = plane_object(copied).active_material.node_tree
    assert tree.animation_data is None and tree.nodes.active.image_user.frame_duration == doc["num_frames"]


def test_setting_the_scene_timing_warns_about_earlier_imports_it_speeds_up(scene, synthetic, tmp_path, capsys) -> None:
    path, doc = synthetic
    folder = shutil.copytree(path.parent, tmp_path / "faster")
    faster = folder / "faster.json"
    (folder / path.name).rename(faster)
    faster.write_text(json.dumps({**doc, "fps": 25.0}))
    import_motion(path)  # the scene takes its 10 fps
    capsys.readouterr()
    assert import_motion(faster) == {"FINISHED"}
    assert scene.render.fps == 25
    report = capsys.readouterr().out + capsys.readouterr().err
    assert f"FOMM {path.stem} plays at another speed" in report, report
    import_motion(faster)  # the same rate: nothing to say
    assert "another speed" not in capsys.readouterr().out


def test_a_motion_too_fast_for_a_mesh_cache_is_refused(scene, synthetic) -> None:
    path, _ = synthetic
    scene.render.fps, scene.render.fps_base = 1, 20.0  # 0.05 fps: the 10 fps motion is 200 times faster
    before = snapshot()
    with pytest.raises(RuntimeError, match="more than 100 times the scene's frame rate"):
        import_motion(path, deform="FLOW_CACHE", set_scene=False)
    assert snapshot() == before


def test_a_cache_the_disk_cannot_hold_is_refused_before_writing(scene, synthetic, addon, monkeypatch, capsys) -> None:
    """The cache's size is known before the bake (frames x vertices x 12 bytes + 32): with
    less free space than that, nothing is written and the message says what to do. With
    room for it, the import says where the cache went and how large it is."""
    path, doc = synthetic
    frames, vertices = doc["num_frames"], 21 * 21
    needed = 32 + frames * vertices * 12
    real_usage = shutil.disk_usage

    def almost_full(folder):
        return real_usage(folder)._replace(free=needed - 1)

    monkeypatch.setattr(addon.build.shutil, "disk_usage", almost_full)
    before, files = snapshot(), sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(RuntimeError, match="the mesh cache needs .* GB .* fewer subdivisions"):
        import_motion(path, deform="FLOW_CACHE", subdivisions=20)
    assert snapshot() == before
    assert sorted(p.name for p in path.parent.iterdir()) == files
    monkeypatch.setattr(addon.build.shutil, "disk_usage", lambda folder: real_usage(folder)._replace(free=needed))
    capsys.readouterr()
    import_motion(path, deform="FLOW_CACHE", subdivisions=20)
    cache = cache_file(plane_object(path))
    assert cache.stat().st_size == needed
    assert f"Imported FOMM {path.stem}, its flow baked to {cache.name} ({needed / 1024:.0f} KB)" in capsys.readouterr().out


def test_a_rig_and_its_action_are_named_after_their_plane(scene, synthetic) -> None:
    """After a Flow cache import took "FOMM m", a rigged import's plane is "FOMM m.001": its
    rig and the rig's action are "FOMM m.001 Rig", not the first plane's name nor "FOMM FOMM"."""
    path, _ = synthetic
    import_motion(path, deform="FLOW_CACHE", subdivisions=10)
    import_motion(path, subdivisions=10)
    plane = bpy.data.objects[f"FOMM {path.stem}.001"]
    rig = bpy.data.objects[f"FOMM {path.stem}.001 Rig"]
    assert plane.parent == rig and plane.modifiers["FOMM Rig"].object == rig
    assert rig.animation_data.action.name == f"FOMM {path.stem}.001 Rig"
    assert f"FOMM {path.stem} Rig" not in bpy.data.objects and not any(a.name.startswith("FOMM FOMM") for a in bpy.data.actions)


def test_a_fomm_json_names_its_objects_without_the_suffix(scene, synthetic, tmp_path) -> None:
    """face.fomm.json (the recommended name) gives "FOMM face", like its side files."""
    path, _ = synthetic
    folder = shutil.copytree(path.parent, tmp_path / "copy")  # with the side files the document names
    named = (folder / path.name).rename(folder / "clip.fomm.json")
    assert import_motion(named) == {"FINISHED"}
    assert "FOMM clip" in bpy.data.collections and bpy.data.objects["FOMM clip"].type == "MESH"


def test_a_saved_blend_links_its_textures_relatively(scene, synthetic, tmp_path) -> None:
    """Moving the project folder (the .blend with its motion files) keeps the textures."""
    path, _ = synthetic
    folder = shutil.copytree(path.parent, tmp_path / "project")
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "scene.blend"))
    assert import_motion(folder / path.name) == {"FINISHED"}
    image = plane_object(path).active_material.node_tree.nodes.active.image
    assert image.filepath == f"//{path.stem}.source.png"
    name = image.name
    bpy.ops.wm.save_mainfile()
    moved = shutil.move(str(folder), tmp_path / "moved")
    bpy.ops.wm.open_mainfile(filepath=str(Path(moved) / "scene.blend"))
    image = bpy.data.images[name]
    image.reload()
    assert tuple(image.size) == (256, 256) and image.has_data


def test_import_is_one_undo_step(scene, synthetic) -> None:
    path, _ = synthetic
    bpy.ops.ed.undo_push(message="before import")
    before = snapshot()
    # ('EXEC_DEFAULT', True): run as from the UI, which pushes the operator's undo step
    assert bpy.ops.import_scene.fomm_motion("EXEC_DEFAULT", True, filepath=str(path)) == {"FINISHED"}
    after = snapshot()
    assert after != before
    bpy.ops.ed.undo()
    assert snapshot() == before
    bpy.ops.ed.redo()
    assert snapshot() == after
