"""Unit tests of the node classes, called directly against the real ComfyUI modules."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

from fomm_model.checkpoint import write_safetensors
from fomm_model.footage import FootageOptions, animate_footage
from fomm_model.framing import fit
from fomm_model.keypoints import Keypoints, find_best_frame
from fomm_model.loading import DEFAULT_MODEL_NAME
from fomm_model.motion_file import read_motion
from fomm_model.pipeline import MotionOptions

from .conftest import TEST_MODEL_NAME


@pytest.fixture(scope="module")
def n(pack: ModuleType) -> ModuleType:
    """The pack's ``nodes`` package."""
    return pack.nodes


@pytest.fixture(scope="module")
def model(n: ModuleType):
    """The embedded model, as the shipped workflows load it."""
    return n.LoadModel.execute(DEFAULT_MODEL_NAME, "auto", "fp32").args[0]


def comfy_images(frames: int, height: int, width: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """Smooth random pictures as a ComfyUI IMAGE [B, H, W, C]."""
    generator = torch.Generator().manual_seed(seed)
    small = torch.rand(frames, channels, 6, 6, generator=generator)
    return torch.nn.functional.interpolate(small, size=(height, width), mode="bicubic").clamp(0, 1).permute(0, 2, 3, 1)


def moving_video(frames: int, height: int, width: int) -> torch.Tensor:
    """A picture sliding right a few pixels per frame (real motion for the detector)."""
    base = comfy_images(1, height, width + 4 * frames, seed=1)
    return torch.cat([base[:, :, 4 * t : 4 * t + width] for t in range(frames)])


# The step nodes reach the frames through other calls than FOMM Animate (the flow made in one
# node and applied in the next, in chunks of their own), so their fp32 sums run in another order:
# a few pixels differ by about 2e-5. The embedded model's generator also blends the source
# warped by the flow (since phase 31), sampled with zeros outside the picture: where the flow
# reaches across the border, that last-bit difference of the flow moves a few pixels by up to
# about 2.5e-4 (12 of 196608 values in the largest case here).
STEPS_ATOL = 5e-4


def run_steps(n: ModuleType, model, source, driving, full_resolution: bool = False, fit: str = "pad", **motion) -> dict:
    kp_source = n.DetectKeypoints.execute(model, source, fit, 8).args[0]
    kp_driving = n.DetectKeypoints.execute(model, driving, fit, 3).args[0]
    options = dict(relative=True, relative_jacobian=True, adapt_scale=True, reference="first", reference_index=0)
    options.update(motion)
    motion_data, moved = n.EstimateMotion.execute(kp_source, kp_driving, **options).args
    flow, occlusion, masks = n.DenseMotion.execute(model, source, motion_data, 3).args
    frames = n.Generate.execute(model, source, flow, full_resolution, 3).args[0]
    return dict(kp_source=kp_source, kp_driving=kp_driving, motion=motion_data, moved=moved, flow=flow,
                occlusion=occlusion, masks=masks, frames=frames)


def test_every_node_is_prefixed_and_documented(n: ModuleType) -> None:
    ids = set()
    for node in n.NODES:
        schema = node.define_schema()
        assert schema.node_id.startswith("FOMM_") and schema.display_name.startswith("FOMM ")
        assert len(schema.description) > 40, schema.node_id
        for socket in [*schema.inputs, *schema.outputs]:
            assert socket.tooltip, f"{schema.node_id}.{socket.id or socket.display_name} has no tooltip"
            io_type = socket.get_io_type()
            assert io_type in ("IMAGE", "MASK", "INT", "FLOAT", "BOOLEAN", "STRING", "COMBO") or io_type.startswith("FOMM_")
        ids.add(schema.node_id)
    assert len(ids) == len(n.NODES) == 10


def test_model_dropdown_and_loading(n: ModuleType, model) -> None:
    assert n.loader.model_choices()[:1] == [DEFAULT_MODEL_NAME] and TEST_MODEL_NAME in n.loader.model_choices()
    assert model.frame_size == (128, 128) and model.fomm.discriminator is None
    assert model.patcher.load_device == torch.device("cpu")
    from_folder = n.LoadModel.execute(TEST_MODEL_NAME, "auto", "fp32").args[0]
    assert from_folder.key != model.key and from_folder.frame_size == (128, 128)
    again = n.LoadModel.execute(TEST_MODEL_NAME, "cpu", "bf16").args[0]
    assert again.key == from_folder.key and again.precision == "bf16"


def test_missing_model_says_where_to_put_one(n: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import folder_paths

    monkeypatch.setitem(folder_paths.folder_names_and_paths, "fomm", ([str(tmp_path / "empty")], {".safetensors"}))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    assert n.loader.model_choices() in ([n.loader.NO_MODEL], ["default"])
    with pytest.raises(ValueError, match=r"put a checkpoint .* in .*empty"):
        n.LoadModel.execute(n.loader.NO_MODEL, "auto", "fp32")


def test_unreadable_checkpoint_is_named(n: ModuleType, comfy_dirs: Path) -> None:
    broken = comfy_dirs / "models" / "fomm" / "broken.pth.tar"
    broken.write_bytes(b"PK\x03\x04 this is not a checkpoint at all")
    try:
        with pytest.raises(ValueError, match=r"cannot use broken.pth.tar as a FOMM model: .*corrupt"):
            n.LoadModel.execute("broken.pth.tar", "auto", "fp32")
    finally:
        broken.unlink()


def test_checkpoint_with_a_frame_size_its_networks_cannot_take_is_refused_at_load(n: ModuleType, model, comfy_dirs: Path) -> None:
    """The checkpoint's own frame size is the problem, said when it is loaded, not when
    animating with advice to resize images (the nodes fit every image to the model's size)."""
    odd = comfy_dirs / "models" / "fomm" / "odd-frame.safetensors"
    networks = {"kp_detector": model.fomm.kp_detector.state_dict(), "generator": model.fomm.generator.state_dict()}
    write_safetensors(odd, networks, model.fomm.config.replace(frame_shape=(64, 96)))
    try:
        with pytest.raises(ValueError, match=r"cannot use odd-frame.safetensors as a FOMM model: .*frame_shape 64x96 does not fit these networks: its sides must be multiples of 64"):
            n.LoadModel.execute("odd-frame.safetensors", "auto", "fp32")
    finally:
        odd.unlink()


def test_steps_give_the_animate_frames_at_the_input_size(n: ModuleType, model) -> None:
    source = comfy_images(1, 90, 150, seed=3)  # not the model's size nor aspect
    driving = moving_video(5, 64, 96)
    steps = run_steps(n, model, source, driving)
    animate = n.Animate.execute(model, source, driving, "pad", True, True, True, "first", 0, False, 3).args[0]
    assert steps["frames"].shape == animate.shape == (5, 90, 150, 3)
    torch.testing.assert_close(steps["frames"], animate, atol=STEPS_ATOL, rtol=0)
    assert steps["occlusion"].shape == (5, 77, 128)  # the source's aspect at the model's resolution
    flow_masks = steps["flow"].masks  # at the dense motion network's resolution, padded to the model's square
    side = flow_masks.shape[-1]
    assert side < 128 and flow_masks.shape == (5, 11, side, side)
    rows = round(side * 77 / 128)  # the keypoint regions at the source's aspect too, at that resolution
    assert steps["masks"].shape == (5 * 11, rows, side)
    masks = steps["masks"].reshape(5, 11, rows, side).cpu()
    torch.testing.assert_close(masks.sum(1), torch.ones(5, rows, side), atol=1e-4, rtol=0)  # shares of each pixel
    top = (side - rows) // 2  # the picture's rows of the padded square
    assert (masks - flow_masks[:, :, top : top + rows]).abs().mean() < 0.02
    assert len(steps["moved"].keypoints) == 5 and steps["motion"].reference_frame == 0


def test_full_resolution_is_the_librarys_and_keeps_the_source_sharp(n: ModuleType, model) -> None:
    """full_resolution on FOMM Animate and FOMM Generate: the same frames as fomm animate
    --full-resolution (fomm_model.footage, one implementation), at the source's size; with a
    still driving video the result is the source itself where the model sees it unoccluded,
    much closer to it than the plain output (a 128x128 frame scaled up, which loses the
    source's fine texture)."""
    source = comfy_images(1, 300, 420, seed=5)  # larger than the model's frames, another aspect
    # detail a few pixels across: lost at the model's 128x128, kept by full resolution
    texture = torch.rand(1, 1, 60, 84, generator=torch.Generator().manual_seed(7))
    texture = torch.nn.functional.interpolate(texture, size=(300, 420), mode="bicubic").permute(0, 2, 3, 1)
    source = (0.7 * source + 0.3 * texture).clamp(0, 1)
    driving = moving_video(4, 64, 96)
    steps = run_steps(n, model, source, driving, full_resolution=True)
    animate = n.Animate.execute(model, source, driving, "pad", True, True, True, "first", 0, True, 3).args[0]
    assert animate.shape == (4, 300, 420, 3)
    torch.testing.assert_close(steps["frames"], animate, atol=STEPS_ATOL, rtol=0)
    library = torch.stack(list(animate_footage(
        model.fomm, source[0].permute(2, 0, 1), driving.permute(0, 3, 1, 2), MotionOptions(),
        FootageOptions(full_resolution=True, fit="pad"), batch_size=3,
    )))  # fmt: skip
    torch.testing.assert_close(animate.cpu(), library.permute(0, 2, 3, 1), atol=2e-5, rtol=0)

    still = n.Animate.execute(model, source, driving[:1].expand(3, -1, -1, -1), "pad", True, True, True, "first", 0, True, 3).args[0]
    plain = n.Animate.execute(model, source, driving[:1].expand(3, -1, -1, -1), "pad", True, True, True, "first", 0, False, 3).args[0]
    sharp, blurred = (still - source).abs().mean().item(), (plain - source).abs().mean().item()
    assert sharp < 0.7 * blurred, f"full resolution is not closer to the still source: {sharp:.4f} vs {blurred:.4f}"


@pytest.mark.parametrize("full_resolution", [False, True])
def test_crop_keeps_the_source_where_the_model_saw_nothing(n: ModuleType, model, full_resolution: bool) -> None:
    """fit=crop shows the model the middle square of a wide picture; the sides it cut off
    stay the source's own pixels (not black), in FOMM Animate, FOMM Generate and the
    occlusion mask (1 = the source shows), as in fomm animate --fit crop."""
    source = comfy_images(1, 90, 160, seed=6)
    driving = moving_video(3, 64, 96)
    animate = n.Animate.execute(model, source, driving, "crop", True, True, True, "first", 0, full_resolution, 3).args[0]
    steps = run_steps(n, model, source, driving, full_resolution=full_resolution, fit="crop")
    torch.testing.assert_close(steps["frames"], animate, atol=STEPS_ATOL, rtol=0)
    sides = torch.cat([animate[:, :, :30], animate[:, :, -30:]], dim=2).cpu()  # the middle 90 columns are seen
    torch.testing.assert_close(sides, torch.cat([source[:, :, :30], source[:, :, -30:]], dim=2).expand_as(sides))
    assert steps["occlusion"].shape == (3, 128, 228)  # the source's aspect at the model's resolution
    assert steps["occlusion"][:, :, :42].min() == 1 and steps["occlusion"][:, :, -42:].min() == 1
    middle = animate[:, :, 40:120].cpu()
    assert (middle - source[:, :, 40:120]).abs().mean() > 1e-3  # the seen part is the model's


@pytest.mark.parametrize("reference", ["index", "closest to source"])
def test_reference_frame_choices_match_animate(n: ModuleType, model, reference: str) -> None:
    source = comfy_images(1, 128, 128, seed=4)
    driving = moving_video(4, 128, 128)
    steps = run_steps(n, model, source, driving, reference=reference, reference_index=2)
    expected = 2 if reference == "index" else find_best_frame(steps["kp_source"].keypoints, steps["kp_driving"].keypoints)
    assert steps["motion"].reference_frame == expected
    animate = n.Animate.execute(model, source, driving, "pad", True, True, True, reference, 2, False, 8).args[0]
    torch.testing.assert_close(steps["frames"], animate, atol=STEPS_ATOL, rtol=0)


def test_rgba_and_grayscale_images_are_accepted(n: ModuleType, model) -> None:
    rgb = comfy_images(1, 128, 128)
    rgba = torch.cat([rgb, torch.rand(1, 128, 128, 1)], dim=-1)
    gray = rgb.mean(-1, keepdim=True)
    driving = moving_video(2, 128, 128)
    base = n.Animate.execute(model, rgb, driving, "crop", True, True, True, "first", 0, False, 8).args[0]
    with_alpha = n.Animate.execute(model, rgba, driving, "crop", True, True, True, "first", 0, False, 8).args[0]
    torch.testing.assert_close(base, with_alpha)
    grey = n.Animate.execute(model, gray, driving, "crop", True, True, True, "first", 0, False, 8).args[0]
    assert grey.shape == base.shape == (2, 128, 128, 3)
    assert n.runtime.image_batch(gray, "x").shape == (1, 3, 128, 128)


def test_bad_inputs_get_clear_messages(n: ModuleType, model) -> None:
    source = comfy_images(1, 128, 128)
    driving = moving_video(3, 128, 128)
    with pytest.raises(ValueError, match="empty batch"):
        n.Animate.execute(model, source, driving[:0], "pad", True, True, True, "first", 0, False, 8)
    with pytest.raises(ValueError, match="reference_index 7 is outside the driving video's 3 frames"):
        n.Animate.execute(model, source, driving, "pad", True, True, True, "index", 7, False, 8)
    with pytest.raises(ValueError, match="the source image is 160x20 pixels: too small to animate"):
        n.Animate.execute(model, comfy_images(1, 20, 160), driving, "pad", True, True, True, "first", 0, False, 8)
    steps = run_steps(n, model, source, driving)
    with pytest.raises(ValueError, match=r"is 100x128 pixels but .* 128x128 image: connect the same source image"):
        n.DenseMotion.execute(model, comfy_images(1, 128, 100), steps["motion"], 8)
    other = n.types.LoadedModel(model.patcher, "other.pth.tar", "another-file", "fp32")
    with pytest.raises(ValueError, match="computed with a different FOMM model"):
        n.Generate.execute(other, source, steps["flow"], False, 8)
    foreign = n.types.KeypointSet(steps["kp_driving"].keypoints, steps["kp_driving"].framing, "another-file")
    with pytest.raises(ValueError, match="detected by different FOMM models"):
        n.EstimateMotion.execute(steps["kp_source"], foreign, True, True, True, "first", 0)
    for wires in ((steps["moved"], steps["kp_driving"]), (steps["kp_source"], steps["moved"])):
        with pytest.raises(ValueError, match="are moved keypoints .*: connect FOMM Detect Keypoints' keypoints here"):
            n.EstimateMotion.execute(*wires, True, True, True, "first", 0)
    with pytest.raises(ValueError, match="channels per pixel"):
        n.runtime.image_batch(torch.rand(1, 8, 8, 5), "source")
    with pytest.raises(ValueError, match="an image is 4x4 pixels: too small to animate; give at least 32x32"):
        n.DetectKeypoints.execute(model, comfy_images(1, 4, 4), "pad", 8)  # the steps refuse what Animate refuses


@pytest.mark.parametrize("fit", ["pad", "crop", "stretch"])
def test_user_occlusion_replaces_the_flow_occlusion(n: ModuleType, model, fit: str) -> None:
    """FOMM Dense Motion's occlusion output (at the model's resolution, the source's aspect) and
    the same mask scaled up to the source's size both fit back onto the flow: each gives
    frames far closer to the flow's own occlusion than a blank mask does."""
    source = comfy_images(1, 300, 420, seed=2)
    steps = run_steps(n, model, source, moving_video(2, 128, 128), fit=fit)
    occlusion = steps["occlusion"]
    assert occlusion.shape[1:] == steps["flow"].framing.at_model_scale().input_size
    full_size = torch.nn.functional.interpolate(occlusion[:, None], size=(300, 420), mode="bilinear")[:, 0]
    own = n.Generate.execute(model, source, steps["flow"], False, 8, occlusion=None).args[0]
    blind = n.Generate.execute(model, source, steps["flow"], False, 8, occlusion=torch.zeros(1, 300, 420)).args[0]
    for mask in (occlusion, full_size):
        same = n.Generate.execute(model, source, steps["flow"], False, 8, occlusion=mask).args[0]
        # the same mask, sent to its size and back, changes the frames far less than a blank one
        assert 0 < (same - own).abs().mean() < 0.1 * (blind - own).abs().mean(), mask.shape
    with pytest.raises(ValueError, match="one mask or one per frame"):
        n.Generate.execute(model, source, steps["flow"], False, 8, occlusion=torch.zeros(3, 300, 420))
    with pytest.raises(ValueError, match="occlusion has NaN or infinite values"):
        n.Generate.execute(model, source, steps["flow"], False, 8, occlusion=torch.full_like(occlusion, float("nan")))
    height, width = occlusion.shape[1:]
    expected = rf"occlusion mask is 64x64 .*: give the mask at the size FOMM Dense Motion gives it \({width}x{height}\) or at the source image's \(420x300\)"
    with pytest.raises(ValueError, match=expected):
        n.Generate.execute(model, source, steps["flow"], False, 8, occlusion=torch.zeros(1, 64, 64))


def test_occlusion_output_does_not_grow_with_the_source(n: ModuleType, model) -> None:
    """ComfyUI caches every output, used or not: the occlusion of a large source is held at the
    model's resolution (the source's aspect), not a source-size mask per frame."""
    source = comfy_images(1, 1200, 1920, seed=7)
    steps = run_steps(n, model, source, moving_video(3, 64, 64))
    assert steps["occlusion"].shape == (3, 80, 128)
    assert steps["frames"].shape == (3, 1200, 1920, 3)


def test_visualisations_line_up_with_the_inputs(n: ModuleType, model) -> None:
    source = comfy_images(1, 96, 160)
    driving = moving_video(3, 96, 160)
    steps = run_steps(n, model, source, driving)
    drawn = n.DrawKeypoints.execute(driving, steps["kp_driving"]).args[0]
    assert drawn.shape == driving.shape and (drawn - driving).abs().amax() > 0.3
    on_source = n.DrawKeypoints.execute(source, steps["moved"]).args[0]
    assert on_source.shape == (3, 96, 160, 3)
    flow, occlusion, regions = n.VisualizeFlow.execute(steps["flow"], "source").args
    assert flow.shape == occlusion.shape == regions.shape == (3, 96, 160, 3)
    # by default at the model's resolution, the source's aspect: the maps' own detail, not 3 source-size copies
    compact = steps["flow"].framing.at_model_scale()
    small = n.VisualizeFlow.execute(steps["flow"]).args
    height, width = compact.input_size
    assert all(picture.shape == (3, height, width, 3) for picture in small) and (height, width) == (77, 128)
    assert (flow.permute(0, 3, 1, 2)[:, :, ::5, ::5] - torch.nn.functional.interpolate(
        small[0].permute(0, 3, 1, 2), size=(96, 160), mode="bilinear")[:, :, ::5, ::5]).abs().mean() < 0.05
    # An animated source: moved keypoints are drawn on its first image, as the other nodes use.
    animated = torch.cat([source, comfy_images(1, 96, 160, seed=1)])
    assert torch.equal(n.DrawKeypoints.execute(animated, steps["moved"]).args[0], on_source)
    with pytest.raises(ValueError, match="do not pair up"):  # detected keypoints belong to their own frames
        n.DrawKeypoints.execute(driving[:2], steps["kp_driving"])
    with pytest.raises(ValueError, match="connect the images these keypoints were detected on"):
        n.DrawKeypoints.execute(comfy_images(3, 64, 64), steps["kp_driving"])
    # Moved keypoints on the frames generated from them: each frame with its own, the rest of it untouched.
    frames = steps["frames"]
    on_frames = n.DrawKeypoints.execute(frames, steps["moved"]).args[0]
    dots = (on_frames - frames).abs().amax(-1) > 0
    assert 0 < dots.float().mean() < 0.1 and torch.equal(on_frames[~dots], frames[~dots])
    assert not torch.equal(on_frames[1:], n.DrawKeypoints.execute(frames[:1], steps["moved"]).args[0][1:])


def test_flow_pictures_show_what_the_frames_do_where_a_crop_cut(n: ModuleType, model) -> None:
    """fit=crop: the model saw the middle of a wide source and the frames keep the source's
    own pixels, unmoved, at the sides; the pictures show that there (white: no motion; white:
    visible; grey: still background), not black, and the model's own maps in the middle."""
    source = comfy_images(1, 90, 160, seed=6)
    steps = run_steps(n, model, source, moving_video(3, 64, 96), fit="crop")
    flow, occlusion, regions = n.VisualizeFlow.execute(steps["flow"], "source").args
    assert flow.shape == occlusion.shape == regions.shape == (3, 90, 160, 3)
    for picture, outside in ((flow, 1.0), (occlusion, 1.0), (regions, 0.5)):
        sides = torch.cat([picture[:, :, :30], picture[:, :, -30:]], dim=2)
        torch.testing.assert_close(sides, torch.full_like(sides, outside))
    for picture, outside in zip(n.VisualizeFlow.execute(steps["flow"], "model").args, (1.0, 1.0, 0.5)):
        assert picture.shape[1:3] == steps["flow"].framing.at_model_scale().input_size
        sides = torch.cat([picture[:, :, :10], picture[:, :, -10:]], dim=2)
        torch.testing.assert_close(sides, torch.full_like(sides, outside))
    assert (regions[:, :, 40:120] - 0.5).abs().amax() > 0.1  # the keypoints' colours where the model saw


@pytest.mark.parametrize("fit", ["pad", "crop"])
def test_keypoints_are_drawn_on_the_image_itself(n: ModuleType, model, fit: str) -> None:
    """On a sharp 320x256 checkerboard: every pixel away from the dots is the input's own (not
    a model-size copy scaled back up, nor black where a crop cut), and a dot covers each
    keypoint where the framing puts it in the input."""
    rows, cols = torch.meshgrid(torch.arange(256), torch.arange(320), indexing="ij")
    board = (((rows // 8) + (cols // 8)) % 2).float()
    image = torch.stack([board, 1 - board, torch.full_like(board, 0.5)], dim=-1)[None]
    original = image.clone()
    keypoints = n.DetectKeypoints.execute(model, image, fit, 8).args[0]
    drawn = n.DrawKeypoints.execute(image, keypoints).args[0]
    assert torch.equal(image, original)  # drawn on a copy: ComfyUI's cached input stays as it was
    changed = (drawn - image).abs().amax(dim=-1)[0] > 0
    assert drawn.shape == image.shape and changed.float().mean() < 0.05
    points = keypoints.framing.points_to_input(keypoints.keypoints.value[0])
    pixels = ((points + 1) / 2 * torch.tensor([320, 256])).floor().long()
    for x, y in pixels.tolist():
        if 0 <= x < 320 and 0 <= y < 256:
            assert changed[y, x], (x, y)


@pytest.mark.parametrize("reference", ["first", "closest to source"])
def test_progress_advances_per_frame_and_cancel_stops(n: ModuleType, model, monkeypatch: pytest.MonkeyPatch, reference: str) -> None:
    """"closest to source" first searches all frames for the reference (the first half of the
    progress bar); Cancel must stop that search too, within one batch."""
    import comfy.model_management
    import comfy.utils

    updates: list[tuple[int, int]] = []
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", lambda value, total, preview, node_id=None: updates.append((value, total)))
    source = comfy_images(1, 128, 128)
    driving = moving_video(5, 128, 128)
    total = 5 if reference == "first" else 10
    n.Animate.execute(model, source, driving, "pad", True, True, True, reference, 0, False, 2)
    values = [value for value, _ in updates]
    assert values == sorted(values) and set(values) >= set(range(total - 5, total + 1))
    assert values[0] == 0 and {t for _, t in updates[1:]} == {total}

    seen: list[int] = []

    def cancel_after_first(value, total, preview, node_id=None):
        seen.append(value)
        if value >= 1:
            comfy.model_management.interrupt_current_processing()

    detected: list[int] = []  # frames through the keypoint detector: the source, then the driving batches
    hook = model.fomm.kp_detector.register_forward_hook(lambda module, args, out: detected.append(len(args[0])))
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", cancel_after_first)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            n.Animate.execute(model, source, moving_video(12, 128, 128), "pad", True, True, True, reference, 0, False, 2)
    finally:
        hook.remove()
    assert not comfy.model_management.processing_interrupted()  # the flag was consumed
    # Cancelled right after the first batch of two frames (of either pass): at most one more batch ran.
    assert len(seen) <= 3 and max(seen) <= 2 and sum(detected) <= 1 + 2 * 2


@pytest.mark.parametrize("node", ["Animate", "Generate"])
def test_full_resolution_counts_rendered_frames_and_cancel_stops_within_one(n: ModuleType, model, monkeypatch, node: str) -> None:
    """At full resolution each frame's rendering (the full-size source warped) can take far
    longer than the model's batch: the bar counts a frame once it is rendered, and Cancel stops
    within a frame, not a batch of them."""
    import comfy.model_management
    import comfy.utils

    from fomm_model import footage

    rendered: list[int] = []
    real_render = footage.render_full_resolution

    def counted(*args, **kwargs):
        rendered.append(1)
        return real_render(*args, **kwargs)

    monkeypatch.setattr(footage, "render_full_resolution", counted)
    source = comfy_images(1, 256, 256)
    driving = moving_video(4, 128, 128)
    flow = run_steps(n, model, source, driving)["flow"] if node == "Generate" else None

    def run() -> None:
        if node == "Animate":
            n.Animate.execute(model, source, driving, "pad", True, True, True, "first", 0, True, 4)
        else:
            n.Generate.execute(model, source, flow, True, 4)

    updates: list[tuple[int, int]] = []  # (frames on the bar, frames rendered then)
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", lambda value, total, preview, node_id=None: updates.append((value, len(rendered))))
    rendered.clear()
    run()
    assert {value for value, _ in updates} >= {1, 2, 3, 4} and all(value <= done for value, done in updates), updates

    def cancel_after_first(value, total, preview, node_id=None):
        if value >= 1:
            comfy.model_management.interrupt_current_processing()

    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", cancel_after_first)
    rendered.clear()
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        run()
    assert len(rendered) <= 2, rendered  # the batch holds 4


def test_motion_file_list_shows_only_motion_files_and_follows_changes(n: ModuleType, comfy_dirs: Path) -> None:
    folder = comfy_dirs / "input" / "listing" / "deeper"
    folder.mkdir(parents=True)
    (folder.parent / "workflow.json").write_text("{}")  # a workflow, not a motion file
    (folder.parent / "walk.fomm.json").write_text("{}")
    listed = n.motion_io.motion_files()
    assert "listing/walk.fomm.json" in listed and not any(name.endswith("workflow.json") for name in listed)
    assert n.motion_io.motion_files() == listed  # unchanged folders: the same list (from the cache)
    (folder / "run.fomm.json").write_text("{}")  # a new file two levels down
    assert "listing/deeper/run.fomm.json" in n.motion_io.motion_files()
    (folder.parent / "walk.fomm.json").unlink()
    assert "listing/walk.fomm.json" not in n.motion_io.motion_files()


def test_motion_file_list_sees_a_folder_created_after_the_first_look(n: ModuleType, tmp_path: Path) -> None:
    """ComfyUI makes output/ at the first save, after the pack listed it: the list must follow."""
    index = n.motion_io._MotionFileIndex()
    root = tmp_path / "output"
    assert index.under(str(root)) == []
    root.mkdir()
    (root / "Walk.FOMM.json").write_text("{}")
    assert index.under(str(root)) == ["Walk.FOMM.json"]


def test_checkpoint_suffixes_are_matched_in_any_case(n: ModuleType, comfy_dirs: Path) -> None:
    import folder_paths

    upper = comfy_dirs / "models" / "fomm" / "VOX-CPK.PTH.TAR"
    upper.write_bytes(b"listed only")
    folder_paths.filename_list_cache.clear()
    try:
        assert "VOX-CPK.PTH.TAR" in n.loader.model_choices()
    finally:
        upper.unlink()
        folder_paths.filename_list_cache.clear()


def test_motion_file_round_trip(n: ModuleType, model, comfy_dirs: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = comfy_images(1, 128, 160)
    driving = moving_video(4, 128, 128)
    path_out = n.SaveMotion.execute(model, source, driving, 12.0, "pad", True, True, True, "first", 0, False, False, "unit/motion", 8)
    path = Path(path_out.args[0])
    assert path.is_file() and path.parent == comfy_dirs / "output" / "unit"
    assert path_out.ui["motion_files"][0]["subfolder"] == "unit"
    assert path.name.endswith(".fomm.json")
    name = f"unit/{path.name} [output]"
    assert name in n.motion_io.motion_files()
    motion, texture, fps = n.LoadMotion.execute(name).args
    assert fps == 12.0 and len(motion.driving.keypoints) == 4
    flow = n.DenseMotion.execute(model, texture, motion, 8).args[0]
    frames = n.Generate.execute(model, texture, flow, False, 8).args[0]
    assert frames.shape[0] == 4 and frames.shape[1:3] == texture.shape[1:3]
    # The file names no model: keypoints of another count are refused; another frame size (fomm motion
    # --size) runs at the file's size, with a note in the log.
    fewer = dataclasses.replace(motion.source, keypoints=Keypoints(motion.source.keypoints.value[:, :5], motion.source.keypoints.jacobian[:, :5]))
    with pytest.raises(ValueError, match=r"the motion keypoints have 5 keypoints but .* has 10: connect the model"):
        n.DenseMotion.execute(model, texture, dataclasses.replace(motion, source=fewer), 8)
    with caplog.at_level(logging.WARNING, logger="comfyui-fomm"):
        small = dataclasses.replace(motion, source=dataclasses.replace(motion.source, framing=fit(texture.permute(0, 3, 1, 2), (64, 64), "pad")[1]))
        masks = n.DenseMotion.execute(model, texture, small, 8).args[2]
    height, width = small.source.framing.at_model_scale().input_size
    scale = model.fomm.config.generator.dense_motion.scale_factor
    assert masks.shape[-2:] == (round(height * scale), round(width * scale)) and "computed at 64x64 but" in caplog.text
    # Editing the texture beside the file runs Load Motion again (ComfyUI compares the fingerprints).
    before = n.LoadMotion.fingerprint_inputs(name)
    texture_file = path.with_name(path.name.removesuffix(".fomm.json") + ".source.png")
    os.utime(texture_file, ns=(texture_file.stat().st_atime_ns, texture_file.stat().st_mtime_ns + 10**9))
    assert n.LoadMotion.fingerprint_inputs(name) != before
    with pytest.raises(ValueError, match="not found"):
        n.LoadMotion.execute("nothing-here.json")
    indexed = n.SaveMotion.execute(model, source, driving, 12.0, "pad", True, True, True, "index", 2, False, False, "unit/motion", 8)
    assert read_motion(indexed.args[0]).options.reference_frame == 2
    with pytest.raises(ValueError, match="reference_index 9 is outside"):
        n.SaveMotion.execute(model, source, driving, 12.0, "pad", True, True, True, "index", 9, False, False, "unit/motion", 8)
