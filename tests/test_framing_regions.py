"""Crop boxes, face detection (OpenCV's bundled cascade on drawn faces), one steady box over
a video, and feathered paste-back."""

from __future__ import annotations

import pytest
import torch
from animation_helpers import drawn_face, smooth_frames

from fomm_model.framing import Box, FaceNotFoundError, detect_faces, face_box, feather_mask, fit, paste, paste_mask, stable_face_box


def test_box_parsing_and_geometry() -> None:
    box = Box.parse("10, 20,30,40")
    assert box == Box(10, 20, 30, 40) and (box.right, box.bottom) == (40, 60)
    for text in ("1,2,3", "a,b,c,d", "0,0,0,5", "-1,0,5,5"):
        with pytest.raises(ValueError, match="box"):
            Box.parse(text)
    assert box.union(Box(0, 50, 10, 20)) == Box(0, 20, 40, 50)
    assert box.enlarged(0.5) == Box(-5, 0, 60, 80)
    assert box.squared() == Box(5, 20, 40, 40)
    assert Box(-5, 90, 40, 40).clipped(100, 200) == Box(0, 60, 40, 40)  # moved in, size kept
    assert Box(0, 0, 300, 50).clipped(100, 200) == Box(0, 0, 200, 50)  # too wide: shrunk
    image = torch.arange(100 * 120).view(1, 100, 120)
    assert torch.equal(box.crop(image), image[:, 20:60, 10:40])


def test_box_must_fit_and_be_large_enough() -> None:
    with pytest.raises(ValueError, match="reaches outside the 120x100 image"):
        Box(100, 0, 40, 40).check_inside(100, 120, "source")
    with pytest.raises(ValueError, match="too small to animate"):
        Box(0, 0, 20, 40).check_inside(100, 120, "source")
    Box(0, 0, 120, 100).check_inside(100, 120, "source")


@pytest.mark.parametrize(("size", "centre", "scale"), [((256, 256), (128, 128), 1.0), ((360, 480), (300, 200), 1.2), ((1080, 1440), (500, 600), 4.0)])
def test_face_is_found_and_boxed(size, centre, scale) -> None:
    image = drawn_face(size, centre, scale)
    faces = detect_faces(image)
    assert faces, "the drawn face should be detected"
    face = faces[0]
    assert abs(face.center[0] - centre[0]) < 20 * scale and abs(face.center[1] - centre[1]) < 30 * scale
    box = face_box(image)
    assert box.width == box.height or box.bottom == size[0] or box.right == size[1]
    assert box.x <= face.x and box.y <= face.y and box.right >= face.right and box.bottom >= face.bottom
    assert 0 <= box.x and 0 <= box.y and box.right <= size[1] and box.bottom <= size[0]


def test_no_face_is_a_clear_error() -> None:
    with pytest.raises(FaceNotFoundError, match="no face found in the source.*box"):
        face_box(smooth_frames(1, (200, 200))[0])


def test_one_steady_box_covers_a_moving_face() -> None:
    size = (400, 560)
    centres = [(200 + 8 * t, 200 + 2 * t) for t in range(12)]
    frames = [drawn_face(size, c, 0.9) for c in centres]
    frames[5] = smooth_frames(1, size)[0]  # a frame where the face is lost
    box = stable_face_box(iter(frames), frame_count=len(frames))
    assert box.width == box.height and box.right < 560 and box.bottom < 400
    for index, frame in enumerate(frames):
        if index != 5:
            face = detect_faces(frame)[0]
            assert box.x <= face.x and box.right >= face.right and box.y <= face.y and box.bottom >= face.bottom
    sampled = stable_face_box(iter(frames), frame_count=len(frames), max_samples=4)  # every third frame
    assert sampled.width <= box.width
    with pytest.raises(FaceNotFoundError, match="driving video"):
        stable_face_box(iter(smooth_frames(3, size)))


def test_feather_mask_ramps_only_on_inner_edges() -> None:
    mask = feather_mask(20, 30, 5, (True, False, True, False))[0]
    assert mask.shape == (20, 30)
    assert mask[10:, 10:].eq(1).all()  # bottom and right lie on the picture's border: no ramp
    assert mask[0, 15] == pytest.approx(0.1) and mask[4, 15] == pytest.approx(0.9)
    assert mask[15, 0] == pytest.approx(0.1)
    assert feather_mask(8, 8, 0, (True, True, True, True)).eq(1).all()


def test_paste_blends_inside_the_box_and_keeps_the_rest() -> None:
    background = torch.zeros(3, 100, 120)
    region = torch.ones(3, 40, 50)
    box = Box(30, 20, 50, 40)
    mask = paste_mask(box, (100, 120), feather_fraction=0.25)
    out = paste(background, region, box, mask)
    assert out[:, :20].eq(0).all() and out[:, 60:].eq(0).all() and out[:, :, :30].eq(0).all()
    assert out[:, 40, 55].eq(1).all()  # centre of the region
    assert 0 < out[0, 20, 55] < 0.2  # the feathered top edge
    assert background.eq(0).all()  # input untouched
    corner = paste_mask(Box(0, 0, 50, 40), (100, 120), 0.25)
    assert corner[0, 0, 0] == 1 and corner[0, -1, 0] < 0.1  # border edges are not feathered


@pytest.mark.parametrize(
    ("size", "mode", "cuts"),
    [((90, 160), "crop", True), ((90, 160), "pad", False), ((97, 131), "stretch", False), ((60, 60), "crop", False)],
)
def test_only_a_crop_to_another_aspect_cuts_the_picture(size: tuple[int, int], mode: str, cuts: bool) -> None:
    _, framing = fit(torch.rand(1, 3, *size), (64, 64), mode)  # type: ignore[arg-type]
    assert framing.cuts_picture() is cuts


@pytest.mark.parametrize("mode", ["pad", "crop", "stretch"])
@pytest.mark.parametrize("size", [(96, 160), (160, 96), (128, 128)])
def test_points_map_back_to_where_they_are_in_the_input(mode: str, size: tuple[int, int]) -> None:
    """A bright pixel of the input, found in the fitted frame and mapped back, lands on
    itself (to within the resampling's half pixel); the content's edges map to -1 and +1."""
    height, width = size
    image = torch.zeros(1, 1, height, width)
    y, x = 3 * height // 5, 2 * width // 7
    image[..., y - 2 : y + 3, x - 2 : x + 3] = 1
    fitted, framing = fit(image, (128, 128), mode)  # type: ignore[arg-type]
    weights = fitted[0, 0].clamp(min=0)
    rows, cols = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    centre = torch.stack([(cols * weights).sum(), (rows * weights).sum()]) / weights.sum()
    model_point = (centre + 0.5) / 128 * 2 - 1  # pixel centre -> the visualiser's normalised coordinates
    back = (framing.points_to_input(model_point) + 1) / 2 * torch.tensor([width, height]) - 0.5
    assert torch.allclose(back, torch.tensor([x, y], dtype=back.dtype), atol=0.75), (back, (x, y))
    (top, left), (sh, sw) = framing.offset, framing.scaled_size
    edges = torch.tensor([[2 * left / 128 - 1, 2 * top / 128 - 1], [2 * (left + sw) / 128 - 1, 2 * (top + sh) / 128 - 1]])
    assert torch.allclose(framing.points_to_input(edges), torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), atol=1e-6)


@pytest.mark.parametrize("mode", ["pad", "crop", "stretch"])
@pytest.mark.parametrize("size", [(1080, 1920), (3000, 4000), (1001, 333), (128, 128), (40, 2000)])
def test_maps_at_model_scale_fit_back_with_the_same_geometry(mode: str, size: tuple[int, int]) -> None:
    """``at_model_scale`` keeps the input's aspect at the model's resolution, and fitting an
    image of that size gives the same model frame geometry: a per-frame map can travel at
    that size instead of the input's and still line up with what the model saw."""
    _, framing = fit(torch.rand(1, 1, *size), (256, 256), mode)  # type: ignore[arg-type]
    small = framing.at_model_scale()
    (height, width), (sh, sw) = size, small.input_size
    assert (max(sh, sw) if mode == "pad" else min(sh, sw)) == 256  # fits inside, or covers, the model's frame
    assert abs(sw / sh / (width / height) - 1) <= 0.5 / min(sh, sw) + 1e-9  # the input's aspect, to the pixel
    refitted, again = fit(torch.rand(1, 1, sh, sw), (256, 256), mode)  # type: ignore[arg-type]
    assert again == small and refitted.shape[-2:] == (256, 256)
    assert (again.target_size, again.offset, again.mode) == (framing.target_size, framing.offset, framing.mode)
    assert small.cuts_picture() == framing.cuts_picture()


@pytest.mark.parametrize("size", [(150, 200), (200, 150), (97, 333)])
def test_frames_pasted_back_where_a_crop_cut_have_no_seam(size: tuple[int, int]) -> None:
    """A crop fit's frames go back onto the picture the model did not see. Enlarged from a
    black border, their edge came out darker than both sides: a dark line on every frame
    (for a 200x150 source, column 25 at 29 where its neighbours are 36, of 255). On a flat
    grey picture animated to the same grey, every pixel must stay that grey."""
    import fomm_model as fm
    from fomm_model.footage import RegionRenderer

    region = torch.full((3, *size), 0.5)
    _, framing = fit(region[None], (128, 128), "crop")
    renderer = RegionRenderer(fm.load_model("default"), region, framing, full_resolution=False)
    frames = renderer.render({"prediction": torch.full((2, 3, 128, 128), 0.5), "deformation": torch.zeros(2, 32, 32, 2)})
    assert frames.shape == (2, 3, *size) and (frames - 0.5).abs().max() < 1e-3
