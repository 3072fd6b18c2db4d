"""Parsing and validation of FOMM motion files, standard library only.

The motion file is read by two programs that share no code at run time: ``fomm_model``
(PyTorch) and the Blender add-on (Blender's Python, no torch). So the schema
(``motion.schema.json`` beside this module) and this module are the single definition of the
format, and the add-on ships byte-identical copies of both (a test keeps them in sync).

Validation = the JSON Schema (the subset of draft 2020-12 keywords the schema uses; an
unknown keyword is an error, so the schema cannot silently say more than is checked) plus the
rules a schema cannot express: array sizes that follow ``num_frames``, ``num_kp`` and the
grids, weights that sum to one, invertible source Jacobians, finite numbers, consecutively
numbered frame files. :func:`linked_files` then checks the files a document points to (the
source image, the generated frames) before either reader uses them.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

FORMAT_NAME = "fomm-motion"
FORMAT_VERSION = 1
MOTION_SUFFIX = ".fomm.json"  # the recommended name; any .json reads
SCHEMA_PATH = Path(__file__).with_name("motion.schema.json")

# Keywords this validator implements; annotations are accepted and ignored.
_ASSERTIONS = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "minimum", "maximum", "exclusiveMinimum", "minLength", "enum", "const", "oneOf", "$ref",
}
_ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description"}
_WEIGHT_SUM_TOLERANCE = 1e-3
_MIN_JACOBIAN_DET = 1e-6
_ASPECT_TOLERANCE = 0.01  # relative: rounding to whole pixels at small sizes
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class MotionFormatError(ValueError):
    """The file is not a valid motion file; the message says where and what to do."""


def parse(text: str | bytes) -> dict[str, Any]:
    """Parse and validate a motion file's text; raises :class:`MotionFormatError`."""
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise MotionFormatError(
            f"not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}): the file is damaged "
            "or truncated; write it again with `fomm motion`"
        ) from None
    except UnicodeDecodeError:
        raise MotionFormatError("not a text file: a motion file is UTF-8 JSON written by `fomm motion`") from None
    validate(document)
    return document


def validate(document: Any) -> None:
    """Check a parsed motion document against the format; raises :class:`MotionFormatError`."""
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise MotionFormatError(f'not a FOMM motion file (no "format": "{FORMAT_NAME}" at the top)')
    version = document.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise MotionFormatError(
            f"motion format version {version} is newer than this reader, which knows versions up to "
            f"{FORMAT_VERSION}: update the fomm package or the Blender add-on"
        )
    schema = load_schema()
    _check(document, schema, schema, "$")
    _check_sizes(document)


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    _check_keywords(schema, "#")
    return schema


# ---------------------------------------------------------------------------- JSON Schema
def _check(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str) -> None:
    if "$ref" in schema:
        _check(value, _resolve(schema["$ref"], root), root, path)
    if "const" in schema and value != schema["const"]:
        raise MotionFormatError(f"{path} must be {json.dumps(schema['const'])}, got {_show(value)}")
    if "enum" in schema and value not in schema["enum"]:
        raise MotionFormatError(f"{path} must be one of {', '.join(map(json.dumps, schema['enum']))}, got {_show(value)}")
    if "oneOf" in schema:
        _check_one_of(value, schema["oneOf"], root, path)
    if "type" in schema and not _is_type(value, schema["type"]):
        raise MotionFormatError(f"{path} must be {_article(schema['type'])}, got {_show(value)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(value, schema, path)
    elif isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise MotionFormatError(f"{path} must not be empty")
    elif isinstance(value, list):
        _check_array(value, schema, root, path)
    elif isinstance(value, dict):
        _check_object(value, schema, root, path)


def _check_object(value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], path: str) -> None:
    for name in schema.get("required", ()):
        if name not in value:
            raise MotionFormatError(f'{path} is missing "{name}"')
    properties = schema.get("properties", {})
    if schema.get("additionalProperties", True) is False:
        unknown = sorted(set(value) - set(properties))
        if unknown:
            raise MotionFormatError(f"{path} has unknown field(s) {', '.join(unknown)}")
    for name, sub in properties.items():
        if name in value:
            _check(value[name], sub, root, f"{path}.{name}")


def _check_array(value: list[Any], schema: dict[str, Any], root: dict[str, Any], path: str) -> None:
    if len(value) < schema.get("minItems", 0):
        raise MotionFormatError(f"{path} must have at least {schema['minItems']} item(s), has {len(value)}")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        raise MotionFormatError(f"{path} must have at most {schema['maxItems']} items, has {len(value)}")
    items = schema.get("items")
    if items is None:
        return
    items = _resolve(items["$ref"], root) if set(items) == {"$ref"} else items
    if _is_number_schema(items):
        _check_numbers(value, items, path)
        return
    inner = items.get("items")
    if items.get("type") == "array" and isinstance(inner, dict) and set(items) <= _PLAIN_ARRAY and _is_number_schema(inner):
        # fast path for the long arrays of points and rows: one comparison per number
        shortest, longest = items.get("minItems", 0), items.get("maxItems", math.inf)
        low, high = _finite_bounds(inner)
        for index, row in enumerate(value):
            if type(row) is not list or not shortest <= len(row) <= longest:
                _check(row, items, root, f"{path}[{index}]")  # raises with the message
            for number in row:
                if type(number) not in _NUMBER_TYPES or not low <= number <= high:
                    _check_numbers(row, inner, f"{path}[{index}]")
        return
    for index, item in enumerate(value):
        _check(item, items, root, f"{path}[{index}]")


_PLAIN_ARRAY = {"type", "items", "minItems", "maxItems", "description"}
_NUMBER_TYPES = (int, float)


def _is_number_schema(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "number" and set(schema) <= {"type", "minimum", "maximum", "description"}


def _finite_bounds(schema: dict[str, Any]) -> tuple[float, float]:
    """Bounds that also fail NaN and the infinities (every comparison with NaN is false)."""
    return max(schema.get("minimum", -sys.float_info.max), -sys.float_info.max), min(schema.get("maximum", sys.float_info.max), sys.float_info.max)


def _check_numbers(values: list[Any], schema: dict[str, Any], path: str) -> None:
    low, high = _finite_bounds(schema)
    for index, item in enumerate(values):
        if type(item) not in _NUMBER_TYPES or not low <= item <= high:
            if type(item) not in _NUMBER_TYPES:
                raise MotionFormatError(f"{path}[{index}] must be a number, got {_show(item)}")
            _check_number(item, schema, f"{path}[{index}]")


def _check_number(value: float, schema: dict[str, Any], path: str) -> None:
    if not math.isfinite(value):
        raise MotionFormatError(f"{path} must be a finite number, got {value}")
    if "minimum" in schema and value < schema["minimum"]:
        raise MotionFormatError(f"{path} must be >= {schema['minimum']}, got {value}")
    if "maximum" in schema and value > schema["maximum"]:
        raise MotionFormatError(f"{path} must be <= {schema['maximum']}, got {value}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        raise MotionFormatError(f"{path} must be > {schema['exclusiveMinimum']}, got {value}")


def _check_one_of(value: Any, branches: list[dict[str, Any]], root: dict[str, Any], path: str) -> None:
    errors = []
    for branch in branches:
        try:
            _check(value, branch, root, path)
        except MotionFormatError as exc:
            errors.append(str(exc))
    matched = len(branches) - len(errors)
    if matched == 1:
        return
    if matched == 0:
        raise MotionFormatError(" or ".join(errors) if len(errors) > 1 else errors[0])
    raise MotionFormatError(f"{path} matches more than one allowed form")


def _is_type(value: Any, expected: str | list[str]) -> bool:
    if isinstance(expected, list):
        return any(_is_type(value, one) for one in expected)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    python_types = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    return isinstance(value, python_types[expected])


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise MotionFormatError(f"schema reference {ref} is not local")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _check_keywords(schema: Any, where: str) -> None:
    """Refuse a schema that uses keywords this validator would not enforce."""
    if not isinstance(schema, dict):
        return
    unknown = set(schema) - _ASSERTIONS - _ANNOTATIONS
    if unknown:
        raise RuntimeError(f"motion schema {where} uses unsupported keyword(s) {sorted(unknown)}")
    for name, sub in schema.get("properties", {}).items():
        _check_keywords(sub, f"{where}/properties/{name}")
    for name, sub in schema.get("$defs", {}).items():
        _check_keywords(sub, f"{where}/$defs/{name}")
    for index, sub in enumerate(schema.get("oneOf", ())):
        _check_keywords(sub, f"{where}/oneOf/{index}")
    if "items" in schema:
        _check_keywords(schema["items"], f"{where}/items")


def _reject_constant(name: str) -> float:
    raise MotionFormatError(f"{name} is not a number a motion file may hold")


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, (list, dict)) else type(value).__name__.replace("dict", "object").replace("list", "array")
    return text if len(text) <= 40 else text[:37] + "..."


def _article(expected: str | list[str]) -> str:
    names = expected if isinstance(expected, list) else [expected]
    return " or ".join(("an " if name[0] in "aeiou" else "a ") + name for name in names)


# ---------------------------------------------------------------------------- sizes
def _check_sizes(doc: dict[str, Any]) -> None:
    frames, num_kp, has_jacobians = doc["num_frames"], doc["num_kp"], doc["has_jacobians"]
    source = doc["source"]
    _expect_len(source["keypoints"], num_kp, "$.source.keypoints", "num_kp")
    _check_jacobian_presence(source["jacobians"], has_jacobians, "$.source.jacobians")
    if has_jacobians:
        _expect_len(source["jacobians"], num_kp, "$.source.jacobians", "num_kp")
        for k, ((a, b), (c, d)) in enumerate(source["jacobians"]):
            if abs(a * d - b * c) < _MIN_JACOBIAN_DET:
                raise MotionFormatError(f"$.source.jacobians[{k}] is not invertible (determinant {a * d - b * c:.3g})")
    for name in ("driving", "motion"):
        track = doc[name]
        _expect_len(track["keypoints"], frames, f"$.{name}.keypoints", "num_frames")
        for t, points in enumerate(track["keypoints"]):
            _expect_len(points, num_kp, f"$.{name}.keypoints[{t}]", "num_kp")
        _check_jacobian_presence(track["jacobians"], has_jacobians, f"$.{name}.jacobians")
        if has_jacobians:
            _expect_len(track["jacobians"], frames, f"$.{name}.jacobians", "num_frames")
            for t, matrices in enumerate(track["jacobians"]):
                _expect_len(matrices, num_kp, f"$.{name}.jacobians[{t}]", "num_kp")
    if doc["options"]["reference_frame"] >= frames:
        raise MotionFormatError(f"$.options.reference_frame is {doc['options']['reference_frame']} but there are {frames} frames")
    _check_weights(doc["weights"], num_kp)
    if "flow" in doc:
        grid = doc["flow"]["grid"]
        positions = doc["flow"]["positions"]
        _expect_len(positions, frames, "$.flow.positions", "num_frames")
        for t, rows in enumerate(positions):
            _expect_grid(rows, grid, f"$.flow.positions[{t}]", "$.flow.grid")
    if "frames" in doc:
        _expect_len(doc["frames"]["files"], frames, "$.frames.files", "num_frames")
        _check_frame_names(doc["frames"]["files"])


def _check_weights(weights: dict[str, Any], num_kp: int) -> None:
    masks, grid = weights["masks"], weights["grid"]
    if len(masks) != num_kp + 1:
        raise MotionFormatError(
            f"$.weights.masks has {len(masks)} channels but the file has {num_kp} keypoints (expected "
            f"{num_kp + 1}: background + one per keypoint): the weights come from a different model; "
            "write the file again with `fomm motion`"
        )
    for k, channel in enumerate(masks):
        _expect_grid(channel, grid, f"$.weights.masks[{k}]", "$.weights.grid")
    for i in range(grid["height"]):
        for j in range(grid["width"]):
            total = sum(channel[i][j] for channel in masks)
            if abs(total - 1.0) > _WEIGHT_SUM_TOLERANCE:
                raise MotionFormatError(f"$.weights.masks at row {i}, column {j} sum to {total:.4f}, not 1")


def _expect_grid(rows: list[Any], grid: dict[str, int], path: str, grid_path: str) -> None:
    _expect_len(rows, grid["height"], path, f"{grid_path}.height")
    for i, row in enumerate(rows):
        _expect_len(row, grid["width"], f"{path}[{i}]", f"{grid_path}.width")


def _expect_len(items: list[Any], expected: int, path: str, what: str) -> None:
    if len(items) != expected:
        raise MotionFormatError(f"{path} has {len(items)} entries but {what} is {expected}")


def _check_jacobian_presence(jacobians: Any, has_jacobians: bool, path: str) -> None:
    if has_jacobians and jacobians is None:
        raise MotionFormatError(f"{path} is null but has_jacobians is true")
    if not has_jacobians and jacobians is not None:
        raise MotionFormatError(f"{path} must be null because has_jacobians is false")


_NUMBERED = re.compile(r"^([^/\\]*?)(\d+)(\.[^./\\]+)$")


def _check_frame_names(files: list[str]) -> None:
    """Frame files are plain names numbered consecutively (what an image sequence needs)."""
    matches = [_NUMBERED.match(name) for name in files]
    numbers = [int(match.group(2)) if match else None for match in matches]
    patterns = {(match.group(1), match.group(3)) if match else None for match in matches}
    if None in numbers or len(patterns) != 1 or numbers != list(range(numbers[0], numbers[0] + len(files))):
        raise MotionFormatError(
            "$.frames.files must be file names numbered consecutively, like frame_00001.png, frame_00002.png, ..."
        )


# ---------------------------------------------------------------------------- linked files
def motion_stem(path: Path) -> str:
    """The name a motion file's side files (source image, frames, mesh cache) share: ``face``
    for ``face.fomm.json`` as for ``face.json`` (so those two in one folder share side files)."""
    if path.name.lower().endswith(MOTION_SUFFIX) and len(path.name) > len(MOTION_SUFFIX):
        return path.name[: -len(MOTION_SUFFIX)]
    return path.name[: -len(path.suffix)] if path.suffix else path.name


def side_files(path: Path) -> tuple[Path, Path]:
    """Where a motion file's source image and generated frames go beside it:
    ``face.source.png`` and ``face_frames/`` for ``face.fomm.json``."""
    stem = motion_stem(path)
    return path.with_name(f"{stem}.source.png"), path.with_name(f"{stem}_frames")


@dataclass(frozen=True)
class LinkedFiles:
    """The files a motion document points to, found and checked by :func:`linked_files`."""

    image_path: Path | None  # the source image beside the motion file ...
    image_png: bytes | None  # ... or the PNG embedded in it
    frames_directory: Path | None  # the generated frames, when the document lists them
    frame_names: tuple[str, ...]

    @property
    def first_frame_number(self) -> int:
        """The number in the first frame's name (validation made them consecutive)."""
        match = _NUMBERED.match(self.frame_names[0])
        assert match is not None
        return int(match.group(2))


def linked_files(document: dict[str, Any], path: Path, frames: bool = True) -> LinkedFiles:
    """Find and check the files that a validated ``document``, read from ``path``, points to:
    the source image exists and is a PNG of the motion's aspect ratio (the schema says PNG, so
    its header gives the size without decoding it), and every generated frame is there.
    ``frames=False`` leaves the generated frames out (none are returned), for a reader that
    will not show them: a moved or deleted frames folder then costs nothing.
    Raises :class:`MotionFormatError` saying what is missing and what to do."""
    entry = document["source"]["image"]
    image_path, image_png = None, None
    if "png_base64" in entry:
        try:
            image_png = base64.b64decode(entry["png_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise MotionFormatError("the embedded source image is not valid base64") from None
        header, where = image_png[:24], "the embedded source image"
    else:
        image_path = path.parent / entry["path"]
        if not image_path.is_file():
            raise MotionFormatError(
                f"source image {image_path} not found: it is written next to the motion file, so copy or "
                "move the two together (or write the motion with the image inside: fomm motion --embed-image)"
            )
        header, where = _read_head(image_path), f"source image {image_path}"
    check_image_size(_png_size(header, where), document, where)

    directory, names = None, ()
    if frames and "frames" in document:
        directory, names = path.parent / document["frames"]["directory"], tuple(document["frames"]["files"])
        missing = [name for name in names if not (directory / name).is_file()]
        if missing:
            raise MotionFormatError(
                f"{len(missing)} generated frame(s) missing from {directory} (first: {missing[0]}); "
                "keep the frames folder next to the motion file"
            )
        first = directory / names[0]
        check_image_size(_png_size(_read_head(first), f"generated frame {first}"), document, f"generated frame {first}")
    return LinkedFiles(image_path, image_png, directory, names)


def check_image_size(size: tuple[int, int], document: dict[str, Any], where: str) -> None:
    """An image of ``size`` (width, height) belongs to the motion when it has its aspect ratio
    (the texture may have more pixels than the model saw, never another shape)."""
    width, height = size
    expected = document["image"]["width"] / document["image"]["height"]
    if width <= 0 or height <= 0 or abs(width / height - expected) > _ASPECT_TOLERANCE * expected:
        raise MotionFormatError(
            f"{where} is {width}x{height} but the motion is for {document['image']['width']}x"
            f"{document['image']['height']} frames: the image does not belong to this motion file"
        )


def _read_head(path: Path) -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read(24)
    except OSError as exc:
        raise MotionFormatError(f"{path} cannot be read ({exc.strerror}): check that it is a file you may read") from None


def _png_size(header: bytes, where: str) -> tuple[int, int]:
    """(width, height) from a PNG's first 24 bytes: the signature, then the IHDR chunk."""
    if len(header) < 24 or not header.startswith(PNG_SIGNATURE) or header[12:16] != b"IHDR":
        raise MotionFormatError(f"{where} cannot be read as an image: it is not a PNG file (damaged or another format)")
    width, height = struct.unpack(">II", header[16:24])
    return width, height
