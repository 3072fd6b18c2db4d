"""Occlusion-aware generator: warps the source's features with the dense motion and decodes."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import GeneratorConfig
from ..geometry import resize_map, warp
from ..keypoints import Keypoints
from .blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, width
from .dense_motion import DenseMotionNetwork


class OcclusionAwareGenerator(nn.Module):
    """Encoder -> feature warp (x occlusion) -> residual bottleneck -> decoder.

    The forward pass is split into :meth:`encode` (depends on the source only),
    :meth:`motion` and :meth:`decode` so that an animation can encode the source once and
    reuse it for every driving frame.
    """

    def __init__(self, config: GeneratorConfig, num_kp: int, num_channels: int, align_corners: bool = True):
        super().__init__()
        self.dense_motion_network = DenseMotionNetwork(
            config.dense_motion,
            num_kp=num_kp,
            num_channels=num_channels,
            estimate_occlusion_map=config.estimate_occlusion_map,
            align_corners=align_corners,
        )
        be, cap, n = config.block_expansion, config.max_features, config.num_down_blocks
        self.first = SameBlock2d(num_channels, be, kernel_size=(7, 7), padding=(3, 3))
        self.down_blocks = nn.ModuleList(
            DownBlock2d(width(be, i, cap), width(be, i + 1, cap)) for i in range(n)
        )
        self.up_blocks = nn.ModuleList(
            UpBlock2d(width(be, n - i, cap), width(be, n - i - 1, cap)) for i in range(n)
        )
        self.bottleneck = nn.Sequential()
        for j in range(config.num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{j}", ResBlock2d(width(be, n, cap), kernel_size=(3, 3), padding=(1, 1)))
        self.final = nn.Conv2d(be, num_channels, kernel_size=(7, 7), padding=(3, 3))
        self.num_channels = num_channels

    @property
    def align_corners(self) -> bool:
        return self.dense_motion_network.align_corners

    @align_corners.setter
    def align_corners(self, value: bool) -> None:
        self.dense_motion_network.align_corners = value

    def encode(self, source: Tensor) -> Tensor:
        out = self.first(source)
        for block in self.down_blocks:
            out = block(out)
        return out

    def warp_features(self, features: Tensor, deformation: Tensor, occlusion_map: Tensor | None) -> Tensor:
        """Warp encoded features with the flow and darken what the source cannot show."""
        batch = deformation.shape[0]
        if features.shape[0] != batch:
            features = features.expand(batch, -1, -1, -1)
        out = warp(features, deformation, self.align_corners)
        if occlusion_map is not None:
            out = out * resize_map(occlusion_map, *out.shape[-2:])
        return out

    def decode(self, features: Tensor) -> Tensor:
        out = self.bottleneck(features)
        for block in self.up_blocks:
            out = block(out)
        return torch.sigmoid(self.final(out))

    def forward(
        self,
        source: Tensor,
        kp_source: Keypoints,
        kp_driving: Keypoints,
        *,
        source_features: Tensor | None = None,
        downscaled_source: Tensor | None = None,
        with_deformed: bool = True,
    ) -> dict[str, Tensor]:
        """Returns ``mask``, ``sparse_deformed``, ``occlusion_map`` (when estimated),
        ``deformation``, ``deformed`` (the source warped at full resolution) and ``prediction``.

        A batch-1 ``source`` is broadcast to the driving batch; ``source_features`` and
        ``downscaled_source`` let callers pass the source-only work precomputed.
        """
        features = self.encode(source) if source_features is None else source_features
        batch = kp_driving.value.shape[0]
        kp_source = kp_source.expand(batch)
        out = self.dense_motion_network(source, kp_driving, kp_source, downscaled_source=downscaled_source)
        features = self.warp_features(features, out["deformation"], out.get("occlusion_map"))
        if with_deformed:
            out["deformed"] = warp(
                source.expand(batch, -1, -1, -1) if source.shape[0] != batch else source,
                out["deformation"],
                self.align_corners,
            )
        out["prediction"] = self.decode(features)
        return out
