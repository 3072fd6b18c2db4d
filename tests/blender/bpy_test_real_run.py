"""Importing the motion file of a real `fomm motion` run (a PNG and an MP4 made by the test)."""

from __future__ import annotations

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
    plane_object,
    plane_scale,
    read_png,
    render,
    render_setup,
    rest_vertices,
    weight_names,
)


@pytest.fixture
def real(manifest) -> tuple[Path, dict]:
    path = Path(manifest["real"])
    return path, load(path)


def test_scene_takes_the_videos_timing(scene, real, manifest) -> None:
    path, doc = real
    assert import_motion(path, frame_start=5) == {"FINISHED"}
    assert doc["num_frames"] == manifest["driving_frames"]
    assert scene.render.fps / scene.render.fps_base == pytest.approx(manifest["driving_fps"], rel=1e-3)
    assert (scene.frame_start, scene.frame_end) == (5, 4 + manifest["driving_frames"])


def test_rig_follows_the_keypoints_and_reproduces_the_motion(scene, real) -> None:
    path, doc = real
    import_motion(path, subdivisions=48, upright=False)
    plane, rig = plane_object(path), bpy.data.objects[f"FOMM {path.stem} Rig"]
    rest = rest_vertices(plane)
    weights = group_weights(plane, weight_names(doc["num_kp"]))
    scale = plane_scale(doc)
    for frame in range(doc["num_frames"]):
        scene.frame_set(frame + 1)
        moved = evaluated_vertices(plane)
        assert np.abs(moved - expected_vertices(doc, rest, weights, frame)).max() < 5e-5
        heads = np.array([rig.pose.bones[f"KP_{k:02d}"].head[:2] for k in range(doc["num_kp"])])
        assert np.abs(heads - np.asarray(doc["motion"]["keypoints"][frame]) @ scale.T).max() < 1e-5
    # relative motion: the first frame is the source at rest
    scene.frame_set(1)
    assert np.abs(evaluated_vertices(plane) - rest).max() < 1e-5


def test_rendered_frames_show_the_motion(scene, real, tmp_path) -> None:
    """Renders of the rigged plane equal renders of a still copy of the plane whose vertices
    were put where the FOMM formula says: at rest in frame 1, moved in the last frame."""
    path, doc = real
    import_motion(path, subdivisions=48, upright=False)
    plane = plane_object(path)
    render_setup(extent=2.2)
    rigged = [render(tmp_path / f"rig{frame}.png", frame) for frame in (1, doc["num_frames"])]

    rest = rest_vertices(plane)
    weights = group_weights(plane, weight_names(doc["num_kp"]))
    plane.hide_render = True
    copies = []
    for frame, target in ((1, rest), (doc["num_frames"], expected_vertices(doc, rest, weights, doc["num_frames"] - 1))):
        still = bpy.data.objects.new(f"expected {frame}", plane.data.copy())
        still.data.vertices.foreach_set("co", target.astype(np.float32).ravel())
        still.data.update()
        scene.collection.objects.link(still)
        for other in copies:
            other.hide_render = True
        copies.append(still)
        expected = render(tmp_path / f"expected{frame}.png", frame)
        got = rigged[0] if frame == 1 else rigged[1]
        assert np.abs(got - expected).mean() < 2e-3, f"frame {frame} does not show the motion"
    moved = np.abs(rigged[1][..., :3] - rigged[0][..., :3]).max(-1)
    assert (moved > 0.1).mean() > 0.05, "the last frame looks like the first"


def test_flow_cache_starts_at_rest_and_moves_like_the_flow(scene, real) -> None:
    path, doc = real
    import_motion(path, deform="FLOW_CACHE", subdivisions=48, upright=False)
    plane = plane_object(path)
    rest = rest_vertices(plane)
    scene.frame_set(1)
    assert np.abs(evaluated_vertices(plane) - rest).max() < 1e-3  # the reference frame's flow is the identity
    scene.frame_set(doc["num_frames"])
    moved = evaluated_vertices(plane)
    positions = np.asarray(doc["flow"]["positions"][-1])
    nodes = np.stack(np.meshgrid(np.linspace(-1, 1, positions.shape[1]), np.linspace(-1, 1, positions.shape[0])), -1)
    flow_shift = np.linalg.norm((positions - nodes) @ plane_scale(doc).T, axis=-1).mean()
    assert np.linalg.norm(moved - rest, axis=1).mean() == pytest.approx(flow_shift, rel=0.15)


def test_generated_frames_texture_shows_the_models_frames(scene, real, tmp_path) -> None:
    """The plane shows the generated pictures (which frame when is checked exactly with the
    synthetic file's coloured frames; this model's frames are too alike to tell apart)."""
    path, doc = real
    import_motion(path, deform="NONE", texture="FRAMES", upright=False)
    render_setup(extent=2.0)  # the plane fills the square render
    folder = path.parent / doc["frames"]["directory"]
    for frame in (1, doc["num_frames"]):
        shown = render(tmp_path / f"f{frame}.png", frame)[..., :3]
        generated = read_png(folder / doc["frames"]["files"][frame - 1])[..., :3]
        step = generated.shape[0] // shown.shape[0]
        generated = generated.reshape(shown.shape[0], step, shown.shape[1], step, 3).mean((1, 3))
        assert np.abs(shown - generated).mean() < 0.01
