"""Save and load the motion file the Blender add-on imports (``fomm_model.motion_file``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from comfy_api.latest import io
from torch import Tensor

from fomm_model.framing import fit
from fomm_model.motion_file import MotionFormatError, compute_motion, read_motion, write_motion
from fomm_model.schemas.motion_format import MOTION_SUFFIX, side_files

from .options import MODEL_TOOLTIP, MotionInputs, batch_size_input, fit_input, motion_inputs
from .runtime import prepare_run, to_comfy_image
from .types import FommModel, FommMotion, KeypointSet, LoadedModel, MotionData

# Motion files are named *.fomm.json (MOTION_SUFFIX) here and in the docs, so the list below
# is not filled with workflows and other JSON files.
NO_MOTION_FILE = "(no motion file found)"


class SaveMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FOMM_SaveMotion",
            display_name="FOMM Save Motion (Blender)",
            category="FOMM/motion file",
            description="Run the model on a source image and driving frames and write a motion file to the output "
            "folder: the source texture, keypoints and Jacobians per frame, blend weights, optionally the dense "
            "flow and the generated frames. Import it in Blender with File > Import > FOMM Motion.",
            is_output_node=True,
            inputs=[
                FommModel.Input("model", tooltip=MODEL_TOOLTIP),
                io.Image.Input("source", tooltip="The still image to animate (first image of the batch)."),
                io.Image.Input("driving", tooltip="The driving video's frames."),
                io.Float.Input(
                    "fps", default=25.0, min=0.01, max=1000.0, step=0.01,
                    tooltip="Frame rate recorded in the file (connect the video loader's fps).",
                ),
                fit_input(),
                *motion_inputs(),
                io.Boolean.Input("include_flow", default=False, tooltip="Also store the dense flow of every frame (larger file; for Blender's mesh-cache bake)."),
                io.Boolean.Input("include_frames", default=False, tooltip="Also render the animated frames into a folder next to the file."),
                io.String.Input("filename_prefix", default="fomm/motion", tooltip="File name in the output folder; a counter is added."),
                batch_size_input(),
            ],
            outputs=[io.String.Output(display_name="path", tooltip="Full path of the written motion file.")],
        )

    @classmethod
    def execute(
        cls,
        model: LoadedModel,
        source: Tensor,
        driving: Tensor,
        fps: float,
        fit: str,
        relative: bool,
        relative_jacobian: bool,
        adapt_scale: bool,
        reference: str,
        reference_index: int,
        include_flow: bool,
        include_frames: bool,
        filename_prefix: str,
        batch_size: int,
    ) -> io.NodeOutput:
        import folder_paths

        transfer = MotionInputs(relative, relative_jacobian, adapt_scale, reference, reference_index)
        run = prepare_run(model, source, driving, transfer, batch_size)
        motion = compute_motion(
            run.fomm, run.source, run.driving,
            relative=run.motion.relative, relative_jacobian=run.motion.relative_jacobian,
            adapt_scale=run.motion.adapt_scale, reference=run.motion.reference,
            fps=fps, framing=fit, flow=include_flow, frames=include_frames, batch_size=batch_size,
            progress=lambda stage, done, count: run.progress.update(done, count),
        )
        output_dir = folder_paths.get_output_directory()
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, output_dir)
        filename = f"{name}_{counter:05}_{MOTION_SUFFIX}"
        path = write_motion(Path(folder) / filename, motion)
        ui = {"motion_files": [{"filename": filename, "subfolder": subfolder, "type": "output"}]}
        return io.NodeOutput(str(path), ui=ui)


class LoadMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FOMM_LoadMotion",
            display_name="FOMM Load Motion",
            category="FOMM/motion file",
            description="Read a motion file (from the input or output folder) back into FOMM Dense Motion and "
            "FOMM Generate: its motion, its source image and its frame rate.",
            inputs=[
                io.Combo.Input(
                    "motion_file",
                    options=motion_files(),
                    tooltip="Motion files (*.fomm.json) in ComfyUI's input and output folders and their subfolders.",
                ),
            ],
            outputs=[
                FommMotion.Output(display_name="motion", tooltip="For FOMM Dense Motion."),
                io.Image.Output(display_name="source", tooltip="The source image stored in the file, framed as the model saw it."),
                io.Float.Output(display_name="fps", tooltip="The frame rate recorded in the file."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, motion_file: str) -> str:
        """The file and its source texture (``<name>.source.png``, as fomm motion and FOMM Save Motion
        name it): editing either runs the node again."""
        path = motion_path(motion_file)
        texture, _ = side_files(path)
        stamps = [str(file.stat().st_mtime_ns) for file in (path, texture) if file.is_file()]
        return "|".join([motion_file, *stamps])

    @classmethod
    def execute(cls, motion_file: str) -> io.NodeOutput:
        path = motion_path(motion_file)
        if not path.is_file():
            raise ValueError(
                f"motion file {motion_file!r} not found; save one with FOMM Save Motion or put it in the input folder, "
                "then refresh the page (or press R) and pick it in FOMM Load Motion"
            )
        try:
            motion = read_motion(path, frames=False)  # its frames are not used here: a moved folder does not matter
        except (MotionFormatError, OSError) as exc:
            raise ValueError(f"cannot read motion file {motion_file}: {exc}") from None
        texture = torch.from_numpy(np.ascontiguousarray(motion.source_image[..., :3])).permute(2, 0, 1)[None].float() / 255
        _, framing = fit(texture, motion.image_size, motion.options.framing)  # type: ignore[arg-type]
        source = KeypointSet(motion.source.to_keypoints(), framing, None)
        moved = KeypointSet(motion.motion.to_keypoints(), framing, None, moved=True)
        data = MotionData(source=source, driving=moved, reference_frame=motion.options.reference_frame)
        return io.NodeOutput(data, to_comfy_image(texture), float(motion.fps))


def motion_files() -> list[str]:
    """``*.fomm.json`` files under the input folder, and under the output folder as ``name [output]``."""
    import folder_paths

    found = _MOTION_FILES.under(folder_paths.get_input_directory())
    found += [f"{name} [output]" for name in _MOTION_FILES.under(folder_paths.get_output_directory())]
    return sorted(found) or [NO_MOTION_FILE]


def motion_path(motion_file: str) -> Path:
    """The file behind a :func:`motion_files` entry (``[output]`` names are in the output folder)."""
    import folder_paths

    return Path(folder_paths.get_annotated_filepath(motion_file))


class _MotionFileIndex:
    """The motion files under a folder, listed again only when a folder below it changed.

    ComfyUI asks for every node's inputs (``/object_info``) on each page load, and the output
    folder can hold thousands of images: like ComfyUI's own file lists, the result is kept
    with the modification time of every folder it came from (a file added, removed or
    renamed changes its folder's time), so an unchanged tree costs one ``stat`` per folder.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[dict[str, int], list[str]]] = {}

    def under(self, root: str) -> list[str]:
        """Paths relative to ``root`` (forward slashes) of the motion files below it."""
        cached = self._cache.get(root)
        if cached is not None and all(_mtime(folder) == mtime for folder, mtime in cached[0].items()):
            return list(cached[1])
        folders: dict[str, int] = {}
        files: list[str] = []
        pending = [root]
        while pending:
            folder = pending.pop()
            mtime = _mtime(folder)  # before listing: a change during the listing is seen next time
            folders[folder] = mtime  # a folder that is missing now (-1) is looked at again once it exists
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir():
                    pending.append(entry.path)
                elif entry.name.lower().endswith(MOTION_SUFFIX):
                    files.append(Path(os.path.relpath(entry.path, root)).as_posix())
        self._cache[root] = (folders, files)
        return list(files)


def _mtime(folder: str) -> int:
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return -1


_MOTION_FILES = _MotionFileIndex()
