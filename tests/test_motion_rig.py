"""The rig follows what FOMM learned, measured on videos the default model never saw.

The Blender rig moves each source point by linear blend skinning: the motion file's weights
(the dense motion network's masks, pulled back to the source) blend the keypoints' local
affine maps, which the add-on keys as bone channels. Here that motion is computed with the
add-on's own numpy code (``blender_addon/fomm_motion/rig_math.py``, imported by path: the
weights it assigns to vertices and the bone channels it keys, recomposed into affine maps)
and compared with the model's own dense motion, the forward flow ``compute_motion(flow=True)``
inverts from the generator's backward sampling grid, at the source points that flow is
defined for (each frame shows them). Two baselines bound it from above: naive Gaussian
softmax weights around the keypoints (the reference notes' parameters) and no motion at all.
The bpy suite checks separately that Blender's Armature modifier applies exactly this blend.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

import fomm_model as fm
from fomm_model.geometry import make_coordinate_grid
from fomm_model.motion_file import Motion, compute_motion
from fomm_model.pipeline import MotionOptions, animate_batches
from fomm_model.training.synthetic import render_video

from conftest import REPO

SEED = 2024  # the default model was trained on other seeds
VIDEOS = 6
FRAMES = 16
# A source point counts where the inverted flow maps back onto it within half a grid step.
VISIBLE_RESIDUAL = 0.5
# Naive weights: softmax over [background logit, Gaussian heat maps of the keypoints] at a
# temperature (BLENDER_NOTES.md, the probes' setting), heat map variance FOMM's 0.01.
GAUSSIAN_TEMPERATURE, GAUSSIAN_BACKGROUND, GAUSSIAN_VARIANCE = 0.05, 0.5, 0.01
# Bounds, in pixels of the model's 128x128 frames (measured: see the README's Blender section).
MAX_MEAN_ERROR_PX = 1.25
MAX_SHARE_OF_BASELINE = 0.5


@pytest.fixture(scope="module")
def rig_math() -> ModuleType:
    """The add-on's numpy geometry, loaded from its file (the add-on package needs bpy)."""
    path = REPO / "blender_addon" / "fomm_motion" / "rig_math.py"
    spec = importlib.util.spec_from_file_location("fomm_addon_rig_math", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@dataclass
class Clip:
    motion: Motion
    points: np.ndarray  # (N, 2) the flow's grid nodes, normalised
    target: np.ndarray  # (T, N, 2) where the model's dense flow puts them
    visible: np.ndarray  # (T, N) where that flow is defined


@pytest.fixture(scope="module")
def clips() -> list[Clip]:
    model = fm.load_model("default")
    found = []
    for index in range(VIDEOS):
        frames = render_video(SEED, "test", index, FRAMES, model.config.frame_shape[0])
        video = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        motion = compute_motion(model, video[0], video, flow=True)
        assert motion.flow is not None
        positions = torch.from_numpy(motion.flow.positions)
        _, height, width, _ = positions.shape
        # check the stored forward flow against the model's backward grid, point by point
        model_source = torch.from_numpy(motion.source_image[..., :3]).permute(2, 0, 1)[None].float() / 255
        backward = torch.cat([batch.outputs["deformation"] for batch in animate_batches(model, model_source, video, MotionOptions())])
        mapped_back = F.grid_sample(rearrange(backward, "t h w c -> t c h w"), positions, align_corners=True)
        nodes = make_coordinate_grid(height, width, torch.float32)
        residual = (rearrange(mapped_back, "t c h w -> t h w c") - nodes).norm(dim=-1)
        visible = residual < VISIBLE_RESIDUAL * 2 / (max(height, width) - 1)
        found.append(Clip(
            motion,
            nodes.reshape(-1, 2).double().numpy(),
            positions.reshape(FRAMES, -1, 2).double().numpy(),
            visible.reshape(FRAMES, -1).numpy(),
        ))
    return found


def skinned(
    rig_math: ModuleType, motion: Motion, points: np.ndarray, weights: np.ndarray, region_pivots: bool = False
) -> np.ndarray:
    """Where the add-on's rig puts normalised ``points`` (N, 2) in every frame -> (T, N, 2):
    each control's keyed channels recomposed into its affine map, blended with ``weights``
    (N, K+1), the background column first. The controls rest at the source keypoints, or
    with ``region_pivots`` at the centres of the points they move (the "Part centres" option)."""
    height, width = motion.image_size
    frame = rig_math.PlaneFrame.for_image(width, height, motion.align_corners, 2.0)
    kp_source, jac_source = motion.source.value[0], motion.source.jacobian[0]
    rest = frame.to_local(points)
    heads = frame.to_local(kp_source)  # (K, 2) controls at rest
    pivots = rig_math.region_pivots(weights, rest, heads) if region_pivots else None
    pose = rig_math.bone_pose(frame, kp_source, jac_source, motion.motion.value, motion.motion.jacobian, pivots)
    heads = heads if pivots is None else pivots
    frames, num_kp = pose.theta.shape
    maps = np.array([
        [rig_math.recompose(pose.theta[t, k], *pose.scale[t, k], pose.phi[t, k]) for k in range(num_kp)] for t in range(frames)
    ])  # (T, K, 2, 2) in plane units
    offsets = rest[:, None] - heads[None]  # (N, K, 2)
    moved = heads[None, None] + pose.location[:, None] + np.einsum("tkij,nkj->tnki", maps, offsets)
    blended = weights[None, :, :1] * rest[None] + (weights[None, :, 1:, None] * moved).sum(2)
    return frame.to_normalised(blended)


def gaussian_weights(points: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    heat = np.exp(-0.5 * ((points[:, None] - keypoints[None]) ** 2).sum(-1) / GAUSSIAN_VARIANCE)
    logits = np.concatenate([np.full((len(points), 1), GAUSSIAN_BACKGROUND), heat], axis=1) / GAUSSIAN_TEMPERATURE
    logits -= logits.max(axis=1, keepdims=True)
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def mean_error_px(clip: Clip, moved: np.ndarray) -> float:
    """Mean distance to the model's flow over the visible points, in pixels of the model's frames."""
    height, width = clip.motion.image_size
    pixels = np.array([(width - 1) / 2, (height - 1) / 2]) if clip.motion.align_corners else np.array([width / 2, height / 2])
    distance = np.linalg.norm((moved - clip.target) * pixels, axis=-1)
    return float(distance[clip.visible].mean())


def test_rig_follows_the_models_dense_motion(rig_math, clips) -> None:
    rig, gaussian, still = [], [], []
    for clip in clips:
        assert clip.visible.mean() > 0.8  # the comparison covers most of the picture
        weights = rig_math.vertex_weights(clip.motion.masks.astype(np.float64), clip.points)
        rig.append(mean_error_px(clip, skinned(rig_math, clip.motion, clip.points, weights)))
        naive = gaussian_weights(clip.points, clip.motion.source.value[0].astype(np.float64))
        gaussian.append(mean_error_px(clip, skinned(rig_math, clip.motion, clip.points, naive)))
        still.append(mean_error_px(clip, np.broadcast_to(clip.points, clip.target.shape)))
    figures = {name: round(float(np.mean(values)), 3) for name, values in (("rig", rig), ("gaussian", gaussian), ("still", still))}
    print(f"\nmean distance to the model's dense flow, pixels of 128x128 frames, {VIDEOS} videos x {FRAMES} frames: {figures}")
    assert figures["rig"] < MAX_MEAN_ERROR_PX
    assert figures["rig"] < MAX_SHARE_OF_BASELINE * figures["gaussian"]
    assert figures["rig"] < MAX_SHARE_OF_BASELINE * figures["still"]
    assert all(r < g and r < s for r, g, s in zip(rig, gaussian, still)), (rig, gaussian, still)


def test_part_centre_pivots_move_the_plane_exactly_as_keypoint_pivots(rig_math, clips) -> None:
    """Resting the bones at the centres of their parts changes where the bones are, not how
    the plane moves; and it moves apart the bones whose keypoints sit closest together."""
    for clip in clips[:3]:
        weights = rig_math.vertex_weights(clip.motion.masks.astype(np.float64), clip.points)
        at_keypoints = skinned(rig_math, clip.motion, clip.points, weights)
        at_centres = skinned(rig_math, clip.motion, clip.points, weights, region_pivots=True)
        assert np.abs(at_centres - at_keypoints).max() < 1e-9
        height, width = clip.motion.image_size
        frame = rig_math.PlaneFrame.for_image(width, height, clip.motion.align_corners, 2.0)
        keypoints = frame.to_local(clip.motion.source.value[0])
        centres = rig_math.region_pivots(weights, frame.to_local(clip.points), keypoints)
        owned = weights[:, 1:].sum(axis=0) >= 1.0
        assert owned.sum() >= 2
        closest = lambda p: min(np.linalg.norm(a - b) for a, b in itertools.combinations(p, 2))  # noqa: E731
        assert closest(centres[owned]) > closest(keypoints[owned])


def test_grid_sampler_is_torchs_bilinear_border_lookup(rig_math) -> None:
    """The add-on's bilinear lookup (vertex weights, the flow cache's vertices) against torch's
    ``grid_sample`` with the same conventions: corners aligned, border values outside."""
    generator = np.random.default_rng(0)
    values = generator.normal(size=(7, 11, 3))  # gh != gw catches a swapped axis
    points = generator.uniform(-1.3, 1.3, size=(500, 2))  # some beyond the border
    points[:4] = [[-1, -1], [1, 1], [-1, 1], [1, -1]]  # the corner nodes exactly
    ours = rig_math.GridSampler.at(points, values.shape[:2])(values)
    grid = torch.from_numpy(points)[None, None]  # (1, 1, N, 2)
    theirs = F.grid_sample(rearrange(torch.from_numpy(values), "h w c -> 1 c h w"), grid, align_corners=True, padding_mode="border")
    assert np.abs(ours - rearrange(theirs, "1 c 1 n -> n c").numpy()).max() < 1e-12
    with pytest.raises(ValueError, match="made for"):
        rig_math.GridSampler.at(points, (7, 11))(values[:, :10])


def test_pc2_holds_the_samples_its_header_promises(rig_math, tmp_path) -> None:
    """Frames are written as they come: a stream that ends early (or runs long) is an error
    rather than a cache whose header lies about its length."""
    frames = [np.full((5, 3), t, np.float32) for t in range(3)]
    path = tmp_path / "cache.pc2"
    rig_math.write_pc2(path, iter(frames), samples=3, points=5, start=2.0)
    data = path.read_bytes()
    assert rig_math.PC2_HEADER.unpack(data[:32]) == (b"POINTCACHE2\0", 1, 5, 2.0, 1.0, 3)
    assert np.array_equal(np.frombuffer(data[32:], "<f4").reshape(3, 5, 3), np.stack(frames))
    with pytest.raises(ValueError, match="2 samples written, the header promised 3"):
        rig_math.write_pc2(path, iter(frames[:2]), samples=3, points=5)
    with pytest.raises(ValueError, match=r"shape \(4, 3\)"):
        rig_math.write_pc2(path, iter([np.zeros((4, 3))]), samples=1, points=5)
