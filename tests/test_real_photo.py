"""``fomm animate`` on a real photograph: face regions, best frame, paste-back, full resolution.

The photo is scikit-image's ``astronaut`` (NASA portrait of Eileen Collins, public domain),
which the scikit-image wheel ships, so nothing is downloaded. It is scaled to 1024x1024;
the driving video is the same photo turned about the face from -30 to +30 degrees, as a
hand-held camera would, with the unturned picture at frame ``UPRIGHT``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from animation_helpers import model_checkpoint
from skimage import data as skimage_data

from fomm_model.cli import main
from fomm_model.framing import Box, face_box
from fomm_model.video import VideoWriter, read_image

SIZE = 1024
FRAMES = 25
UPRIGHT = 12  # the frame whose pose is the source's
FACE = Box(354, 120, 190, 210)  # where the face is in the 1024x1024 photo (by eye), for a sanity check


def turned(photo: np.ndarray, degrees: float, centre: tuple[float, float]) -> np.ndarray:
    matrix = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    return cv2.warpAffine(photo, matrix, photo.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photo")
    photo = cv2.resize(skimage_data.astronaut(), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(folder / "astronaut.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    centre = (FACE.x + FACE.width / 2, FACE.y + FACE.height / 2)
    angles = np.linspace(-30, 30, FRAMES)  # 0 at the middle frame
    assert angles[UPRIGHT] == pytest.approx(0, abs=1e-9)
    with VideoWriter(folder / "turning.mp4", 25) as writer:
        for angle in angles:
            frame = turned(photo, float(angle), centre)
            writer.write(torch.from_numpy(frame).permute(2, 0, 1).float() / 255)
    return {"source": folder / "astronaut.png", "driving": folder / "turning.mp4"}


def frames_of(folder: Path) -> torch.Tensor:
    files = sorted(folder.glob("*.png"))
    return torch.stack([read_image(path) for path in files])


def test_the_face_is_found_in_the_photo(inputs) -> None:
    box = face_box(read_image(inputs["source"]))
    assert box.x <= FACE.x and box.y <= FACE.y and box.right >= FACE.right and box.bottom >= FACE.bottom
    assert box.width < SIZE / 2, "the region should be the face, not the picture"


def test_face_region_pasted_back_at_full_resolution(inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--source-face --driving-face --full-resolution: 1024x1024 frames; outside the face
    region every pixel is the photo's (a PNG output, so exactly); inside it the face turns."""
    out = tmp_path / "result"
    code = main(
        ["animate", str(inputs["source"]), str(inputs["driving"]), "-o", str(out), "--checkpoint", model_checkpoint(),
         "--source-face", "--driving-face", "--full-resolution", "--quiet"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert f"({FRAMES} PNG frames, {SIZE}x{SIZE}" in capsys.readouterr().out
    source = read_image(inputs["source"])
    result = frames_of(out)
    assert result.shape == (FRAMES, 3, SIZE, SIZE)

    box = face_box(source)
    outside = torch.ones(SIZE, SIZE, dtype=torch.bool)
    outside[box.y : box.bottom, box.x : box.right] = False
    assert (result[:, :, outside] == source[:, outside]).all(), "paste-back changed the picture outside the face region"

    inside = box.crop(result)
    first_to_middle = (inside[0] - inside[UPRIGHT]).abs().mean().item()
    assert first_to_middle > 0.02, f"the face region hardly changes as the driving face turns ({first_to_middle:.4f})"
    # full resolution: the texture of the photo survives (detail at the pixel scale, which an
    # upscaled 128x128 output cannot have)
    detail = (box.crop(source)[:, :, 1:] - box.crop(source)[:, :, :-1]).abs().mean().item()
    kept = (inside[UPRIGHT][:, :, 1:] - inside[UPRIGHT][:, :, :-1]).abs().mean().item()
    assert kept > 0.5 * detail, f"the face lost its detail: neighbour differences {kept:.4f} vs the photo's {detail:.4f}"


def test_best_frame_is_the_upright_one(inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--best-frame with the driving region at the source's face box: the frame whose picture
    is the source's (up to the video's compression) is chosen, and the animation starts there:
    of all the result's frames, that one is closest to the photo (no motion is applied to it)."""
    source = read_image(inputs["source"])
    box = face_box(source)
    out = tmp_path / "best"
    code = main(
        ["animate", str(inputs["source"]), str(inputs["driving"]), "-o", str(out), "--checkpoint", model_checkpoint(),
         "--source-face", "--driving-box", f"{box.x},{box.y},{box.width},{box.height}", "--best-frame",
         "--full-resolution"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"best reference frame: {UPRIGHT}" in captured.err
    result = frames_of(out)
    errors = [(box.crop(frame) - box.crop(source)).abs().mean().item() for frame in result]
    assert min(range(FRAMES), key=errors.__getitem__) == UPRIGHT, f"the result is closest to the photo elsewhere: {errors}"
