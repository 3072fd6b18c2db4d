"""Occlusion-aware generator: warps the source's features with the dense motion and decodes."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import GeneratorConfig
from ..geometry import resize_map, warp, warp_sharp
from ..keypoints import Keypoints
from .blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, width
from .dense_motion import DenseMotionNetwork


class OcclusionAwareGenerator(nn.Module):
    """Encoder -> feature warp (x occlusion) -> residual bottleneck -> decoder.

    With ``blend_warped_source`` (our extension, see :class:`GeneratorConfig`) a second head
    beside the decoder's last convolution weighs, per pixel, the source image warped by the
    flow against the decoded frame.

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
        self.blend = nn.Conv2d(be, 1, kernel_size=(7, 7), padding=(3, 3)) if config.blend_warped_source else None
        self.num_channels = num_channels

    @property
    def blends_source(self) -> bool:
        """Whether :meth:`decode` needs the warped source image."""
        return self.blend is not None

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

    def decode(self, features: Tensor, warped_source: Tensor | None = None) -> dict[str, Tensor]:
        """Decode warped features into ``prediction``.

        A generator that :attr:`blends_source` needs ``warped_source`` (:meth:`warp_source`)
        and also returns ``decoded``, its own frame, and ``source_weight`` (N, 1, H, W):
        prediction = source_weight * warped_source + (1 - source_weight) * decoded.
        Full-resolution rendering puts a larger warped source in the same formula.
        """
        out = self.bottleneck(features)
        for block in self.up_blocks:
            out = block(out)
        decoded = torch.sigmoid(self.final(out))
        if self.blend is None:
            return {"prediction": decoded}
        if warped_source is None:
            raise ValueError("this generator blends the source image warped by the flow: pass warped_source")
        weight = torch.sigmoid(self.blend(out))
        return {"prediction": decoded + weight * (warped_source - decoded), "decoded": decoded, "source_weight": weight}

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
        ``deformation``, ``deformed`` (the source warped at full resolution), ``prediction``
        and, when the generator :attr:`blends_source`, ``decoded`` and ``source_weight``.

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
        out.update(self.decode(features, self.warp_source(source, out["deformation"])))
        return out

    def warp_source(self, source: Tensor, deformation: Tensor) -> Tensor | None:
        """The source image (a batch of one is broadcast) warped for :meth:`decode`'s blend,
        None for a generator that does not blend: with the flow upsampled on the model's grid,
        as full-resolution rendering warps a larger source, so a still flow gives the source
        back pixel for pixel (``deformed`` keeps the original's resize of the flow)."""
        if not self.blends_source:
            return None
        if source.shape[0] != deformation.shape[0]:
            source = source.expand(deformation.shape[0], -1, -1, -1)
        return warp_sharp(source, deformation, self.align_corners)
