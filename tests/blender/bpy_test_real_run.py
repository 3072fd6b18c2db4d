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
    RENDER_SIZE,
    load,
    pixel_positions,
    plane_object,
    plane_scale,
    read_png,
    render,
    render_setup,
    rest_vertices,
    weight_names,
    weights_at,
)

# A keypoint "moves" when it travels more than this (normalised units; 6.4 pixels of the
# model's 128x128 frames) between the first and the last frame.
MOVING_KEYPOINT = 0.1


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


def test_part_centre_pivots_move_bones_not_the_plane(scene, real) -> None:
    """"Part centres" rests each control at the weighted centre of the vertices it moves
    (away from the keypoints, many of which the default model puts together near the torso);
    the plane follows the same motion at every frame."""
    path, doc = real
    import_motion(path, subdivisions=48, upright=False, pivots="REGIONS")
    plane, rig = plane_object(path), bpy.data.objects[f"FOMM {path.stem} Rig"]
    rest = rest_vertices(plane)
    weights = group_weights(plane, weight_names(doc["num_kp"]))
    owned = weights[:, 1:].sum(0)
    centres = (weights[:, 1:].T @ rest[:, :2]) / np.maximum(owned, 1e-12)[:, None]
    keypoints = np.asarray(doc["source"]["keypoints"]) @ plane_scale(doc).T
    expected_heads = np.where((owned >= 1.0)[:, None], centres, keypoints)
    heads = np.array([rig.data.bones[f"KP_{k:02d}"].head_local[:2] for k in range(doc["num_kp"])])
    assert np.abs(heads - expected_heads).max() < 1e-4
    # some moved off their keypoints: by more than 3 pixels of the model's 128x128 frame
    assert np.linalg.norm(heads - keypoints, axis=1).max() > 0.05
    for frame in range(doc["num_frames"]):
        scene.frame_set(frame + 1)
        assert np.abs(evaluated_vertices(plane) - expected_vertices(doc, rest, weights, frame)).max() < 5e-5


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


def test_rendered_plane_moves_where_keypoints_move_and_stays_still_far_from_them(scene, real, tmp_path) -> None:
    """Cycles renders of the first and the last frame, regions chosen by the model's own
    keypoints and weights (read from the file, at each pixel's rest position):

    - where the keypoints that moved own the plane (their weights sum to more than one half),
      the picture changes: most pixels by more than 0.1, since the puppet's textures are
      displaced by several pixels there;
    - where the keypoints together own less than 1 % (the background weight is above 0.99),
      the formula moves a point by at most its keypoint weight times the farthest any
      keypoint's affine map takes it: a fraction of a render pixel. The picture there may change
      by no more than that shift times the texture's steepest step to a neighbouring pixel,
      plus one 8-bit level of rounding, except where a moving part of the plane lands on it
      in the last frame (a limb swung across the background covers it).
    """
    path, doc = real
    import_motion(path, upright=False)
    render_setup(extent=2.2)
    last_frame = doc["num_frames"]
    first = render(tmp_path / "first.png", 1)[..., :3]
    last = render(tmp_path / "last.png", last_frame)[..., :3]
    change = np.abs(last - first).max(-1)

    scale = plane_scale(doc)
    points = pixel_positions(2.2) @ np.linalg.inv(scale).T  # normalised rest position of each pixel
    on_plane = (np.abs(points) < 0.97).all(-1)  # leave out the plane's anti-aliased rim
    weights = weights_at(doc, points)  # (K+1, h, w)
    kp_source = np.asarray(doc["source"]["keypoints"])
    travel = np.linalg.norm(np.asarray(doc["motion"]["keypoints"][last_frame - 1]) - kp_source, axis=1)
    moving = travel > MOVING_KEYPOINT
    assert moving.any(), travel  # the puppet moves

    owned = (weights[1:][moving].sum(0) > 0.5) & on_plane
    assert owned.mean() > 0.05, "the moving keypoints own hardly any of the plane"
    assert (change[owned] > 0.1).mean() > 0.5 and change[owned].mean() > 0.1, "the plane did not move where its keypoints moved"

    affine = np.asarray(doc["motion"]["jacobians"][last_frame - 1]) @ np.linalg.inv(np.asarray(doc["source"]["jacobians"]))
    kp_driving = np.asarray(doc["motion"]["keypoints"][last_frame - 1])
    mapped = kp_driving + np.einsum("kij,hwkj->hwki", affine, points[:, :, None] - kp_source)  # (h, w, K, 2)
    reach = np.linalg.norm(mapped - points[:, :, None], axis=-1).max(-1)
    render_pixels = RENDER_SIZE / 2.2 * np.abs(scale).max()  # render pixels per normalised unit, at most
    landed = weights[0, ..., None] * points + np.einsum("khw,hwkc->hwc", weights[1:], mapped)  # the formula's
    travelled = np.linalg.norm(landed - points, axis=-1) * render_pixels > 0.5
    whole_plane = (np.abs(points) <= 1).all(-1)
    background = (weights[0] > 0.99) & on_plane & ~covered(landed[travelled & whole_plane] @ scale.T, 2.2)
    assert background.mean() > 0.15, "the weights leave hardly any of the plane to the background"
    shift = ((1 - weights[0]) * reach)[background].max() * render_pixels
    bound = shift * steepest_step(first)[background].max() + 1.5 / 255
    assert change[background].max() <= bound, f"the plane moved far from the keypoints: {change[background].max() * 255:.1f}/255 > {bound * 255:.1f}/255"


def covered(positions: np.ndarray, extent: float) -> np.ndarray:
    """(RENDER_SIZE, RENDER_SIZE): the pixel nearest to any of the plane-local ``positions``
    (N, 2) and its eight neighbours, in a render of ``extent`` units (:func:`pixel_positions`)."""
    column = np.rint((positions[:, 0] + extent / 2) / extent * RENDER_SIZE - 0.5).astype(int)
    row = np.rint((extent / 2 - positions[:, 1]) / extent * RENDER_SIZE - 0.5).astype(int)
    hit = np.zeros((RENDER_SIZE + 2, RENDER_SIZE + 2), bool)  # a pixel of margin on each side
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            hit[np.clip(row + di + 1, 0, RENDER_SIZE + 1), np.clip(column + dj + 1, 0, RENDER_SIZE + 1)] = True
    return hit[1:-1, 1:-1]


def steepest_step(image: np.ndarray) -> np.ndarray:
    """(h, w): the largest colour difference between each pixel and its four neighbours."""
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    neighbours = (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:])
    return np.max([np.abs(image - other).max(-1) for other in neighbours], axis=0)


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
