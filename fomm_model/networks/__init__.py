"""The original FOMM networks, one per file, with the original state-dict names."""

from .antialias import AntiAliasInterpolation2d, ImagePyramid
from .dense_motion import DenseMotionNetwork
from .discriminator import Discriminator, MultiScaleDiscriminator
from .generator import OcclusionAwareGenerator
from .keypoint_detector import KPDetector

__all__ = [
    "AntiAliasInterpolation2d",
    "DenseMotionNetwork",
    "Discriminator",
    "ImagePyramid",
    "KPDetector",
    "MultiScaleDiscriminator",
    "OcclusionAwareGenerator",
]
