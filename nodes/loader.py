"""FOMM Load Model: the ``models/fomm`` folder, and checkpoints under ComfyUI's memory manager."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch
from comfy_api.latest import io

from fomm_model import CheckpointError, ConfigError, load_model
from fomm_model.loading import DEFAULT_MODEL_NAME, default_model_path
from fomm_model.precision import PRECISIONS, check_precision

from .types import FommModel, LoadedModel, PatchableModel

log = logging.getLogger("comfyui-fomm")

MODEL_FOLDER = "fomm"
CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".safetensors")
# folder_paths filters by the last suffix only, so ".tar" stands for ".pth.tar".
_FOLDER_EXTENSIONS = {".tar", ".pth", ".pt", ".safetensors"}
NO_MODEL = "(no FOMM model found)"
DEVICES = ("auto", "cpu")


def register_model_folder() -> None:
    """Register ``models/fomm`` with ComfyUI, keeping folders added by extra_model_paths.yaml.

    ComfyUI applies extra_model_paths.yaml before custom nodes load; an entry ``fomm: path``
    there has already created the folder name (with "every file" as its extension filter).
    """
    import folder_paths

    default = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    if MODEL_FOLDER in folder_paths.folder_names_and_paths:
        paths, extensions = folder_paths.folder_names_and_paths[MODEL_FOLDER]
        if default not in paths:
            paths.append(default)
        extensions.update(_FOLDER_EXTENSIONS)
    else:
        folder_paths.folder_names_and_paths[MODEL_FOLDER] = ([default], set(_FOLDER_EXTENSIONS))


def model_folders() -> list[str]:
    """Every folder FOMM checkpoints are read from (models/fomm and extra_model_paths.yaml
    entries), for messages that tell the user where to put one."""
    import folder_paths

    return folder_paths.get_folder_paths(MODEL_FOLDER)


def model_choices() -> list[str]:
    """The dropdown: the embedded default model (when installed), then the folder's files."""
    import folder_paths

    files = [name for name in folder_paths.get_filename_list(MODEL_FOLDER) if name.lower().endswith(CHECKPOINT_SUFFIXES)]
    embedded = [DEFAULT_MODEL_NAME] if default_model_path().is_file() else []
    return embedded + files or [NO_MODEL]


def checkpoint_path(model_name: str) -> Path:
    """The file behind a dropdown entry, or an error that says where checkpoints go."""
    import folder_paths

    if model_name == DEFAULT_MODEL_NAME and default_model_path().is_file():
        return default_model_path()
    path = folder_paths.get_full_path(MODEL_FOLDER, model_name) if model_name != NO_MODEL else None
    if path is None:
        folders = " or ".join(model_folders())
        raise ValueError(
            f"no FOMM checkpoint named {model_name!r}: put a checkpoint (.pth.tar, .pth or .safetensors, e.g. "
            f"vox-cpk.pth.tar) in {folders}, then refresh the page (or press R) and pick it in FOMM Load Model"
        )
    return Path(path)


def weights_key(path: Path) -> str:
    """Identifies the weights: same file, size and modification time = same model."""
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


class LoadModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FOMM_LoadModel",
            display_name="FOMM Load Model",
            category="FOMM",
            description=(
                "Load a First Order Motion Model checkpoint from models/fomm (original .pth.tar, .pth or "
                ".safetensors; the architecture is read from the file). The model stays loaded between runs "
                "and ComfyUI moves it on and off the GPU like its other models."
            ),
            inputs=[
                io.Combo.Input(
                    "model_name",
                    options=model_choices(),
                    tooltip="Checkpoint in models/fomm (or a folder given as 'fomm' in extra_model_paths.yaml); "
                    "'default' is the small model that ships with the pack: it knows the synthetic puppets of "
                    "its training only; for faces or bodies use a published checkpoint (vox, taichi...).",
                ),
                io.Combo.Input(
                    "device",
                    options=list(DEVICES),
                    default="auto",
                    tooltip="auto: ComfyUI's device (the GPU when there is one); cpu: always the CPU.",
                ),
                io.Combo.Input(
                    "precision",
                    options=list(PRECISIONS),
                    default="fp32",
                    tooltip="fp32 is exact. bf16/fp16 run the generator's decoder (most of the work) in half "
                    "precision in FOMM Animate: faster on GPUs, slower on CPUs without native support. The "
                    "step-by-step nodes always run fp32.",
                ),
            ],
            outputs=[FommModel.Output(display_name="model", tooltip="The loaded model, for every other FOMM node.")],
        )

    @classmethod
    def fingerprint_inputs(cls, model_name: str, device: str, precision: str) -> str:
        """Reload when the file itself changes (replaced under the same name)."""
        try:
            return weights_key(checkpoint_path(model_name))
        except (ValueError, OSError):
            return model_name

    @classmethod
    def execute(cls, model_name: str, device: str, precision: str) -> io.NodeOutput:
        import comfy.model_management
        import comfy.model_patcher

        path = checkpoint_path(model_name)
        check_precision(precision)
        started = time.perf_counter()
        try:
            fomm = load_model(path, device="cpu")
        except (CheckpointError, ConfigError) as exc:
            raise ValueError(f"cannot use {model_name} as a FOMM model: {exc}") from None
        fomm.discriminator = None  # only needed for training
        load_device = comfy.model_management.get_torch_device() if device == "auto" else torch.device("cpu")
        offload_device = comfy.model_management.unet_offload_device() if device == "auto" else torch.device("cpu")
        patcher = comfy.model_patcher.ModelPatcher(PatchableModel(fomm), load_device=load_device, offload_device=offload_device)
        config = fomm.config
        log.info(
            "FOMM: loaded %s (%d keypoints, %s frames, %s) in %.2f s",
            model_name, config.num_kp, "x".join(map(str, config.frame_shape[:2])), precision, time.perf_counter() - started,
        )
        return io.NodeOutput(LoadedModel(patcher=patcher, name=model_name, key=weights_key(path), precision=precision))
