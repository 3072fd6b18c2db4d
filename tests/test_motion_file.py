"""The motion file: what compute_motion puts in it, writing, reading and validation."""

from __future__ import annotations

import base64
import copy
import json

import numpy as np
import pytest
import torch

import fomm_model as fm
from fomm_model import motion_file
from fomm_model.geometry import make_coordinate_grid
from fomm_model.motion_file import (
    MotionFormatError,
    _WeightAverage,
    compute_motion,
    invert_backward_flow,
    pull_back_masks,
    read_motion,
    write_motion,
)
from fomm_model.schemas import motion_format

from conftest import REPO

SMALL = fm.ModelConfig(
    num_kp=5,
    kp_detector=fm.KeypointDetectorConfig(block_expansion=8, max_features=32, num_blocks=3, scale_factor=0.5),
    generator=fm.GeneratorConfig(
        block_expansion=8,
        max_features=32,
        num_bottleneck_blocks=1,
        dense_motion=fm.DenseMotionConfig(block_expansion=8, max_features=32, num_blocks=3, scale_factor=0.5),
    ),
    discriminator=None,
    frame_shape=(64, 64),
)


@pytest.fixture(scope="module")
def model() -> fm.FirstOrderModel:
    torch.manual_seed(3)
    return fm.build_model(SMALL)


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    return torch.rand(1, 3, 90, 120, generator=generator), torch.rand(6, 3, 64, 64, generator=generator)


@pytest.fixture(scope="module")
def motion(model, inputs):
    source, driving = inputs
    return compute_motion(model, source, driving, fps=12.5, flow=True, frames=True, batch_size=4)


def test_compute_motion_matches_the_model(model, inputs, motion) -> None:
    """The stored texture, shrunk to the model's size, is exactly what the model saw."""
    _, driving = inputs
    model_source = torch.from_numpy(motion.source_image[..., :3]).permute(2, 0, 1)[None].float() / 255
    model_source = fm.framing.resize(model_source, (64, 64))
    kp_source = model.detect_keypoints(model_source)
    kp_driving = model.detect_keypoints(driving)
    normalised = fm.normalize_keypoints(kp_source, kp_driving, kp_driving[0])
    assert np.allclose(motion.source.value, kp_source.value.numpy(), atol=1e-6)
    assert np.allclose(motion.driving.value, kp_driving.value.numpy(), atol=1e-6)
    assert np.allclose(motion.motion.value, normalised.value.numpy(), atol=1e-5)
    assert np.allclose(motion.motion.jacobian, normalised.jacobian.numpy(), atol=1e-4)
    assert motion.options.movement_scale == pytest.approx(fm.movement_scale(kp_source, kp_driving[0]), rel=1e-5)
    assert motion.image_size == (64, 64) and motion.fps == 12.5 and motion.num_frames == 6 and motion.num_kp == 5
    assert motion.masks.shape == (6, 32, 32) and np.allclose(motion.masks.sum(0), 1, atol=1e-5)
    assert motion.frames.shape == (6, 64, 64, 4) and motion.frames.dtype == np.uint8
    expected = model.generate(model_source, kp_source, normalised)["prediction"]
    assert np.abs(motion.frames[..., :3].astype(np.float32) / 255 - expected.permute(0, 2, 3, 1).numpy()).max() < 0.5 / 255 + 1e-6
    # the pad framing's bars are see-through in the frames as in the texture (they were opaque)
    alpha = motion.frames[..., 3]
    assert np.array_equal(alpha, np.broadcast_to(motion.source_image[::2, ::2, 3], alpha.shape))
    assert (alpha[0, :, 0] == 255).sum() == 48 and alpha[:, 0].max() == 0


def test_frames_of_a_framing_without_padding_are_opaque_rgb(model, inputs) -> None:
    source, driving = inputs
    motion = compute_motion(model, source, driving[:2], framing="crop", frames=True)
    assert motion.source_image.shape[-1] == 3 and motion.frames.shape == (2, 64, 64, 3)


def test_texture_keeps_resolution_and_marks_padding(motion) -> None:
    """A 120x90 source for a 64x64 model: a 128x128 texture (2x), the padding transparent."""
    texture = motion.source_image
    assert texture.shape == (128, 128, 4)
    assert (texture[:, :, 3].max(1) == 255).sum() == 96  # 90 rows scaled by 128/120
    assert texture[0, :, 3].max() == 0 and texture[64, :, 3].min() == 255


def test_round_trip_with_image_beside_the_file(tmp_path, motion) -> None:
    path = write_motion(tmp_path / "clip.json", motion)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.json", "clip.source.png", "clip_frames"]
    back = read_motion(path)
    for name in ("source", "driving", "motion"):
        assert np.abs(getattr(back, name).value - getattr(motion, name).value).max() < 1e-6
        assert np.abs(getattr(back, name).jacobian - getattr(motion, name).jacobian).max() < 1e-6
    assert np.abs(back.masks - motion.masks).max() < 6e-6  # grids keep 5 decimals (float32 adds a little)
    assert np.abs(back.flow.positions - motion.flow.positions).max() < 6e-6
    assert np.array_equal(back.source_image, motion.source_image)
    assert back.options == motion.options and back.image_size == motion.image_size and back.fps == motion.fps
    assert back.frame_files.directory == tmp_path / "clip_frames" and len(back.frame_files.files) == 6
    assert (tmp_path / "clip.json").stat().st_mode & 0o044  # readable like any file, not 0600


def test_embedded_image_makes_one_self_contained_file(tmp_path, motion) -> None:
    plain = copy.copy(motion)
    plain.frames = None
    path = write_motion(tmp_path / "one.json", plain, embed_image=True)
    assert [p.name for p in tmp_path.iterdir()] == ["one.json"]
    document = json.loads(path.read_text())
    assert base64.b64decode(document["source"]["image"]["png_base64"]).startswith(b"\x89PNG")
    assert np.array_equal(read_motion(path).source_image, motion.source_image)


def test_side_files_of_a_fomm_json_drop_the_whole_suffix(tmp_path, motion) -> None:
    path = write_motion(tmp_path / "Clip.FOMM.json", motion)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Clip.FOMM.json", "Clip.source.png", "Clip_frames"]
    assert read_motion(path).frame_files.directory == tmp_path / "Clip_frames"


def test_rewriting_replaces_the_frames_folder_whole(tmp_path, motion) -> None:
    write_motion(tmp_path / "clip.json", motion)
    shorter = copy.copy(motion)
    shorter.frames = motion.frames[:2]
    for name in ("driving", "motion"):
        track = getattr(motion, name)
        setattr(shorter, name, type(track)(track.value[:2], track.jacobian[:2]))
    shorter.flow = None
    write_motion(tmp_path / "clip.json", shorter)
    assert sorted(p.name for p in (tmp_path / "clip_frames").iterdir()) == ["frame_00001.png", "frame_00002.png"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("failure", ["json", "frames"])
def test_a_failed_write_leaves_the_previous_motion_as_it_was(tmp_path, motion, monkeypatch, failure) -> None:
    """Everything is staged before anything is renamed: a write that fails while encoding the
    JSON (the last part) or a frame leaves the earlier file, image and frames untouched."""
    write_motion(tmp_path / "clip.json", motion)

    def contents() -> dict[str, bytes]:
        return {str(p.relative_to(tmp_path)): p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}

    before = contents()
    changed = copy.copy(motion)
    changed.source_image = 255 - motion.source_image
    changed.frames = 255 - motion.frames
    if failure == "json":
        def full_disk(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(motion_file.json, "dumps", full_disk)
    else:
        changed.frames = changed.frames.astype(np.float64)  # PIL cannot write float RGB frames
    with pytest.raises((OSError, TypeError)):
        write_motion(tmp_path / "clip.json", changed)
    assert contents() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.json", "clip.source.png", "clip_frames"]


def test_invalid_motion_is_not_written(tmp_path, motion) -> None:
    write_motion(tmp_path / "clip.json", motion)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    wrong = copy.copy(motion)
    wrong.masks = motion.masks[:-1]
    with pytest.raises(MotionFormatError, match="refusing to write .*masks has 5 channels but the file has 5 keypoints"):
        write_motion(tmp_path / "clip.json", wrong)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_zero_order_model_writes_null_jacobians(tmp_path, inputs) -> None:
    model = fm.build_model(SMALL.replace(estimate_jacobian=False))
    source, driving = inputs
    motion = compute_motion(model, source, driving[:3])
    document = json.loads(write_motion(tmp_path / "z.json", motion).read_text())
    assert document["has_jacobians"] is False and document["motion"]["jacobians"] is None
    assert read_motion(tmp_path / "z.json").motion.jacobian is None


def test_8_bit_and_0_255_pixels_are_refused_not_clamped_white(model, inputs) -> None:
    """The source and driving frames are converted and clamped for fitting: an 8-bit or a
    0-255 picture must be refused before that, not turned white."""
    source, driving = inputs
    with pytest.raises(ValueError, match="source must be floating point.*uint8"):
        compute_motion(model, (source * 255).byte(), driving)
    with pytest.raises(ValueError, match="source has values from .* to 2\\d\\d"):
        compute_motion(model, source * 255, driving)
    with pytest.raises(ValueError, match="driving must be floating point.*uint8"):
        compute_motion(model, source, (driving * 255).byte())
    with pytest.raises(ValueError, match="driving has values from"):
        compute_motion(model, source, [frame * 255 for frame in driving])

def test_reference_frame_and_absolute_mode(model, inputs) -> None:
    source, driving = inputs
    relative = compute_motion(model, source, driving, reference=3, adapt_scale=False)
    assert relative.options.reference_frame == 3
    assert np.allclose(relative.motion.value[3], relative.source.value[0], atol=1e-6)
    absolute = compute_motion(model, source, driving, relative=False)
    assert np.allclose(absolute.motion.value, absolute.driving.value)
    with pytest.raises(ValueError, match="reference frame 6 is beyond the last driving frame"):
        compute_motion(model, source, driving, reference=6)
    best = compute_motion(model, source, driving, reference="best")
    kp_source = fm.Keypoints(torch.from_numpy(best.source.value), torch.from_numpy(best.source.jacobian))
    kp_driving = fm.Keypoints(torch.from_numpy(best.driving.value), torch.from_numpy(best.driving.jacobian))
    assert best.options.reference_frame == fm.keypoints.find_best_frame(kp_source, kp_driving)


def test_driving_can_stream_in_batches(model, inputs, motion) -> None:
    source, driving = inputs
    streamed = compute_motion(model, source, iter(driving.split(4)), fps=12.5)
    assert np.allclose(streamed.motion.value, motion.motion.value, atol=1e-6)
    assert np.allclose(streamed.masks, motion.masks, atol=1e-6)


# ------------------------------------------------------------------------------ algorithms
def test_flow_inversion_recovers_a_known_map() -> None:
    """D(z) = M z + b + a smooth ripple; the forward positions must map back onto the grid."""
    grid = make_coordinate_grid(40, 48)
    matrix = torch.tensor([[0.9, 0.15], [-0.1, 1.05]])
    backward = grid @ matrix.T + torch.tensor([0.05, -0.03]) + 0.03 * torch.sin(3 * grid.flip(-1))
    forward, residual = invert_backward_flow(backward[None])
    interior = (forward.abs() < 0.9).all(-1)
    assert interior.float().mean() > 0.5
    assert residual[interior].max() < 1e-4
    again = torch.nn.functional.grid_sample(backward.permute(2, 0, 1)[None], forward, align_corners=True)
    assert (again.permute(0, 2, 3, 1) - grid)[interior].abs().max() < 1e-4


def test_masks_pull_back_along_the_flow() -> None:
    """With the identity flow nothing changes; when every point moved one grid step right,
    each source point reads the masks one step to its right."""
    masks = torch.softmax(torch.randn(1, 3, 9, 9), dim=1)
    grid = make_coordinate_grid(9, 9)[None]
    assert torch.allclose(pull_back_masks(masks, grid), masks, atol=1e-6)
    moved = grid + torch.tensor([0.25, 0.0])
    assert torch.allclose(pull_back_masks(masks, moved)[..., :-1], masks[..., 1:], atol=1e-6)


def test_weights_average_the_frames_that_show_each_point() -> None:
    """A frame where a point is hidden (its flow inversion left a residual) does not count
    for that point; a point hidden in every frame gets the plain average."""
    first, second = torch.softmax(torch.randn(2, 3, 5, 5), dim=1)
    residual = torch.zeros(2, 5, 5)
    residual[1, 2, 2] = 0.3  # point (2, 2) hidden in the second frame
    residual[:, 4, 4] = 0.3  # point (4, 4) hidden in both
    average = _WeightAverage()
    average.add(torch.stack([first, second]), residual)
    weights = average.result()
    assert torch.allclose(weights.sum(0), torch.ones(5, 5), atol=1e-6)
    assert torch.allclose(weights[:, 2, 2], first[:, 2, 2], atol=1e-6)
    assert torch.allclose(weights[:, 0, 0], (first[:, 0, 0] + second[:, 0, 0]) / 2, atol=1e-6)
    assert torch.allclose(weights[:, 4, 4], (first[:, 4, 4] + second[:, 4, 4]) / 2, atol=1e-6)


# ------------------------------------------------------------------------------ validation
@pytest.fixture
def document(tmp_path, motion) -> dict:
    plain = copy.copy(motion)
    plain.frames = None
    return json.loads(write_motion(tmp_path / "v.json", plain, embed_image=True).read_text())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(version=2), "version 2 is newer than this reader"),
        (lambda d: d.update(format="other"), "not a FOMM motion file"),
        (lambda d: d.pop("fps"), r'\$ is missing "fps"'),
        (lambda d: d.update(extra=1), r"\$ has unknown field\(s\) extra"),
        (lambda d: d.update(fps=-3), r"\$.fps must be > 0"),
        (lambda d: d["image"].update(width="64"), r"\$.image.width must be an integer"),
        (lambda d: d["image"].update(width=True), r"\$.image.width must be an integer"),
        (lambda d: d["options"].update(framing="zoom"), r"\$.options.framing must be one of"),
        (lambda d: d["motion"]["keypoints"].pop(), r"\$.motion.keypoints has 5 entries but num_frames is 6"),
        (lambda d: d["driving"]["keypoints"][2].pop(), r"\$.driving.keypoints\[2\] has 4 entries but num_kp is 5"),
        (lambda d: d["motion"]["keypoints"][1][0].append(0.0), r"\$.motion.keypoints\[1\]\[0\] must have at most 2 items"),
        (lambda d: d["weights"]["masks"].pop(), r"masks has 5 channels but the file has 5 keypoints \(expected 6"),
        (lambda d: d["weights"]["masks"][0][3].pop(), r"\$.weights.masks\[0\]\[3\] has 31 entries but \$.weights.grid.width is 32"),
        (lambda d: d["weights"]["masks"][0][0].__setitem__(0, 0.9), "sum to .*, not 1"),
        (lambda d: d["source"].update(jacobians=[[[1, 2], [2, 4]]] * 5), r"\$.source.jacobians\[0\] is not invertible"),
        (lambda d: d.update(has_jacobians=False), r"\$.source.jacobians must be null because has_jacobians is false"),
        (lambda d: d["source"].update(image={"path": ""}), "must not be empty"),
        (lambda d: d["source"].update(image={}), 'missing "path" or .*missing "png_base64"'),
        (lambda d: d["options"].update(reference_frame=6), "reference_frame is 6 but there are 6 frames"),
        (lambda d: d["flow"]["positions"].pop(), r"\$.flow.positions has 5 entries"),
    ],
)
def test_validation_names_the_problem(document, change, message) -> None:
    change(document)
    with pytest.raises(MotionFormatError, match=message):
        motion_format.validate(document)


def test_parse_refuses_damaged_text(tmp_path, document) -> None:
    text = json.dumps(document, separators=(",", ":"))
    with pytest.raises(MotionFormatError, match="not valid JSON .* damaged or truncated"):
        motion_format.parse(text[: len(text) // 3])
    with pytest.raises(MotionFormatError, match="NaN is not a number"):
        motion_format.parse(text.replace('"fps":12.5', '"fps":NaN'))
    with pytest.raises(MotionFormatError, match="must be a finite number"):
        motion_format.parse(text.replace('"fps":12.5', '"fps":1e999'))
    (tmp_path / "cut.json").write_text(text[:1000])
    with pytest.raises(MotionFormatError, match="cut.json: not valid JSON"):
        read_motion(tmp_path / "cut.json")


def test_reader_checks_the_image(tmp_path, motion) -> None:
    plain = copy.copy(motion)
    plain.frames = None
    path = write_motion(tmp_path / "m.json", plain)
    (tmp_path / "m.source.png").unlink()
    with pytest.raises(MotionFormatError, match="source image .*m.source.png not found.*--embed-image"):
        read_motion(path)
    from PIL import Image

    Image.new("RGB", (50, 20)).save(tmp_path / "m.source.png")
    with pytest.raises(MotionFormatError, match="is 50x20 but the motion is for 64x64 frames"):
        read_motion(path)


def test_a_linked_file_that_cannot_be_read_is_a_format_error(tmp_path) -> None:
    """Not an OSError's traceback in Blender: the message names the file and what to check."""
    with pytest.raises(MotionFormatError, match=f"{tmp_path} cannot be read .*: check that it is a file you may read"):
        motion_format._read_head(tmp_path)  # a folder: unreadable as a file, even for root


def test_addon_ships_the_same_format_files() -> None:
    """The Blender add-on cannot import fomm_model, so it carries copies of the schema and the
    validator; they must stay identical (after an edit: cp fomm_model/schemas/motion* blender_addon/fomm_motion/)."""
    for name in ("motion.schema.json", "motion_format.py"):
        canonical = (REPO / "fomm_model" / "schemas" / name).read_bytes()
        assert (REPO / "blender_addon" / "fomm_motion" / name).read_bytes() == canonical, f"blender_addon copy of {name} is stale"


def test_schema_uses_only_checked_keywords() -> None:
    schema = motion_format.load_schema()
    assert schema["properties"]["format"]["const"] == motion_format.FORMAT_NAME
    with pytest.raises(RuntimeError, match="unsupported keyword"):
        motion_format._check_keywords({"properties": {"x": {"pattern": "a+"}}}, "#")
