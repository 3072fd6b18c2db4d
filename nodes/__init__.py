"""The ComfyUI nodes: thin adapters from ComfyUI's types and services to ``fomm_model``."""

from __future__ import annotations

from comfy_api.latest import io

from .animate import Animate
from .loader import LoadModel, register_model_folder
from .motion_io import LoadMotion, SaveMotion
from .samples import install_samples
from .steps import DenseMotion, DetectKeypoints, EstimateMotion, Generate
from .visualize import DrawKeypoints, VisualizeFlow

NODES: list[type[io.ComfyNode]] = [
    LoadModel,
    Animate,
    DetectKeypoints,
    EstimateMotion,
    DenseMotion,
    Generate,
    DrawKeypoints,
    VisualizeFlow,
    SaveMotion,
    LoadMotion,
]

__all__ = ["NODES", "install_samples", "register_model_folder"]
