"""Multi-scale patch discriminator (training only), optionally keypoint-conditioned."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import DiscriminatorConfig
from ..geometry import keypoint_heatmaps
from ..keypoints import Keypoints
from .antialias import scale_key
from .blocks import width


class DiscriminatorBlock(nn.Module):
    """4x4 conv without padding -> [instance norm] -> LeakyReLU(0.2) -> [2x2 average pool]."""

    def __init__(self, in_features: int, out_features: int, norm: bool, pool: bool, sn: bool):
        super().__init__()
        conv = nn.Conv2d(in_features, out_features, kernel_size=4)
        self.conv = nn.utils.spectral_norm(conv) if sn else conv
        self.norm = nn.InstanceNorm2d(out_features, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        out = F.leaky_relu(out, 0.2)
        if self.pool:
            out = F.avg_pool2d(out, (2, 2))
        return out


class Discriminator(nn.Module):
    """Patch discriminator; records every block's output for the feature-matching loss."""

    def __init__(self, config: DiscriminatorConfig, num_kp: int, num_channels: int):
        super().__init__()
        be, cap, n = config.block_expansion, config.max_features, config.num_blocks
        first_in = num_channels + num_kp * config.use_kp
        self.down_blocks = nn.ModuleList(
            DiscriminatorBlock(
                first_in if i == 0 else width(be, i, cap),
                width(be, i + 1, cap),
                norm=i != 0,
                pool=i != n - 1,
                sn=config.sn,
            )
            for i in range(n)
        )
        conv = nn.Conv2d(width(be, n, cap), 1, kernel_size=1)
        self.conv = nn.utils.spectral_norm(conv) if config.sn else conv
        self.use_kp = config.use_kp
        self.kp_variance = config.kp_variance

    def forward(self, x: Tensor, kp: Keypoints | None = None) -> tuple[list[Tensor], Tensor]:
        out = x
        if self.use_kp:
            if kp is None:
                raise ValueError("this discriminator is keypoint-conditioned: pass the driving keypoints")
            heatmaps = keypoint_heatmaps(kp.value, *x.shape[-2:], self.kp_variance)
            out = torch.cat([out, heatmaps], dim=1)
        feature_maps = []
        for block in self.down_blocks:
            out = block(out)
            feature_maps.append(out)
        return feature_maps, self.conv(out)


class MultiScaleDiscriminator(nn.Module):
    """One discriminator per scale of the image pyramid (keys ``'1'``, ``'0-5'``...)."""

    def __init__(self, config: DiscriminatorConfig, num_kp: int, num_channels: int):
        super().__init__()
        self.scales = config.scales
        self.discs = nn.ModuleDict(
            {scale_key(scale): Discriminator(config, num_kp, num_channels) for scale in config.scales}
        )

    def forward(self, pyramid: dict[str, Tensor], kp: Keypoints | None = None) -> dict[str, Tensor | list[Tensor]]:
        out: dict[str, Tensor | list[Tensor]] = {}
        for key, disc in self.discs.items():
            scale = key.replace("-", ".")
            feature_maps, prediction_map = disc(pyramid["prediction_" + scale], kp)
            out["feature_maps_" + scale] = feature_maps
            out["prediction_map_" + scale] = prediction_map
        return out
