"""Bad motion files: a clear error, and the scene and the folder exactly as they were."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import bpy
import pytest

from helpers import import_motion, load, snapshot


@pytest.fixture
def broken(manifest, tmp_path) -> tuple[Path, dict]:
    """A copy of the real run's motion file and its source image, to damage."""
    original = Path(manifest["real"])
    doc = load(original)
    shutil.copy(original.parent / doc["source"]["image"]["path"], tmp_path / doc["source"]["image"]["path"])
    shutil.copytree(original.parent / doc["frames"]["directory"], tmp_path / doc["frames"]["directory"])
    return tmp_path / "broken.json", doc


def write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def assert_refused(path: Path, message: str, **options) -> None:
    """The import fails with ``message`` and leaves no trace in the file or on disk."""
    _populate_scene()
    before, files = snapshot(), sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(RuntimeError, match=message):
        import_motion(path, **options)
    assert snapshot() == before
    assert sorted(p.name for p in path.parent.iterdir()) == files


def _populate_scene() -> None:
    """Something to keep: an object, a material and non-default timing."""
    scene = bpy.context.scene
    keep = bpy.data.objects.new("Keep me", bpy.data.meshes.new("Keep me"))
    keep.data.materials.append(bpy.data.materials.new("Keep me"))
    scene.collection.objects.link(keep)
    scene.render.fps, scene.frame_start, scene.frame_end = 30, 7, 77
    scene.frame_set(9)


def test_malformed_json(scene, broken) -> None:
    path, _ = broken
    path.write_text('{"format": "fomm-motion", "version": 1, "image": {')
    assert_refused(path, "not valid JSON .* damaged or truncated")


def test_truncated_file(scene, broken, manifest) -> None:
    path, _ = broken
    text = Path(manifest["real"]).read_text()
    path.write_text(text[: len(text) // 2])
    assert_refused(path, "not valid JSON")


def test_not_a_motion_file(scene, broken) -> None:
    path, _ = broken
    write(path, {"hello": "world"})
    assert_refused(path, "not a FOMM motion file")


def test_future_version(scene, broken) -> None:
    path, doc = broken
    doc["version"] = 2
    doc["something_new"] = True
    assert_refused(write(path, doc), "version 2 is newer than this reader.*update")


def test_missing_source_image(scene, broken) -> None:
    path, doc = broken
    doc["source"]["image"]["path"] = "nowhere.png"
    assert_refused(write(path, doc), "source image .*nowhere.png not found")


def test_keypoint_count_does_not_match_the_weights(scene, broken) -> None:
    path, doc = broken
    doc["weights"]["masks"] = doc["weights"]["masks"][:-1]
    assert_refused(write(path, doc), "masks has 10 channels but the file has 10 keypoints")


def test_frame_count_mismatch(scene, broken) -> None:
    path, doc = broken
    doc["motion"]["keypoints"] = doc["motion"]["keypoints"][:-1]
    assert_refused(write(path, doc), r"motion.keypoints has 9 entries but num_frames is 10")


def test_number_out_of_range(scene, broken) -> None:
    path, doc = broken
    doc["weights"]["masks"][0][0][0] = 7
    assert_refused(write(path, doc), r"masks\[0\]\[0\]\[0\] must be <= 1")


def test_source_image_that_is_not_a_png(scene, broken) -> None:
    path, doc = broken
    (path.parent / doc["source"]["image"]["path"]).write_bytes(b"GIF89a not the PNG the format asks for")
    assert_refused(write(path, doc), "source image .* cannot be read as an image: it is not a PNG file")


def test_source_image_of_another_shape(scene, broken) -> None:
    """A PNG whose header says 64x32 for a motion of square frames (the header is read
    without decoding, so the check costs nothing for a large texture)."""
    path, doc = broken
    image = path.parent / doc["source"]["image"]["path"]
    head = bytearray(image.read_bytes())
    head[16:24] = struct.pack(">II", 64, 32)
    image.write_bytes(bytes(head))
    assert_refused(write(path, doc), "is 64x32 but the motion is for 128x128 frames: the image does not belong")


def test_missing_generated_frame(scene, broken) -> None:
    path, doc = broken
    (path.parent / doc["frames"]["directory"] / doc["frames"]["files"][3]).unlink()
    assert_refused(write(path, doc), "1 generated frame\\(s\\) missing .*first: frame_00004.png.*keep the frames folder",
                   texture="FRAMES")


def test_a_missing_frames_folder_matters_only_to_an_import_of_the_frames(scene, broken) -> None:
    """The generated frames are large and only Texture = Generated frames plays them: without
    their folder the rig (or the cache) still imports."""
    path, doc = broken
    shutil.rmtree(path.parent / doc["frames"]["directory"])
    write(path, doc)
    count = len(doc["frames"]["files"])
    assert_refused(path, f"{count} generated frame\\(s\\) missing .*keep the frames folder", texture="FRAMES")
    assert import_motion(path) == {"FINISHED"}
    plane = bpy.data.objects["FOMM broken"]
    image = plane.active_material.node_tree.nodes.active.image
    assert plane.parent is not None and image.source == "FILE" and image.filepath.endswith(doc["source"]["image"]["path"])


def test_unreadable_source_image_fails_after_building_started(scene, broken) -> None:
    """The image's PNG header is intact (so the import starts) but its data is cut off:
    everything made before Blender finds out is removed again."""
    path, doc = broken
    image = path.parent / doc["source"]["image"]["path"]
    image.write_bytes(image.read_bytes()[:40])
    assert_refused(write(path, doc), "cannot be read as an image")


def test_option_the_file_cannot_serve(scene, broken) -> None:
    path, doc = broken
    del doc["flow"]
    assert_refused(write(path, doc), "no dense flow to bake.*--flow", deform="FLOW_CACHE")


def test_missing_file(scene, tmp_path) -> None:
    assert_refused(tmp_path / "absent.json", "absent.json not found")
