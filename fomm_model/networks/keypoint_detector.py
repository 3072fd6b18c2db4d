"""Keypoint detector: an hourglass predicts one heat map per keypoint (and jacobian maps)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..config import KeypointDetectorConfig
from ..geometry import make_coordinate_grid
from ..keypoints import Keypoints
from .antialias import AntiAliasInterpolation2d
from .blocks import Hourglass


class KPDetector(nn.Module):
    """Keypoints as the expected coordinate under a softmax heat map.

    The heat map comes from a 7x7 convolution without padding, so it is smaller than the
    feature map (58x58 for 64x64) and keypoint coordinates live on the heat map's own grid.
    Jacobians are the heat-map-weighted average of 4 (or 4 shared, ``single_jacobian_map``)
    regression maps, read row-major as 2x2 matrices.
    """

    def __init__(self, config: KeypointDetectorConfig, num_kp: int, num_channels: int, estimate_jacobian: bool):
        super().__init__()
        self.predictor = Hourglass(
            config.block_expansion,
            in_features=num_channels,
            max_features=config.max_features,
            num_blocks=config.num_blocks,
        )
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=(7, 7), padding=config.pad)
        if estimate_jacobian:
            self.num_jacobian_maps = 1 if config.single_jacobian_map else num_kp
            self.jacobian = nn.Conv2d(
                self.predictor.out_filters, 4 * self.num_jacobian_maps, kernel_size=(7, 7), padding=config.pad
            )
            # An untrained detector predicts identity jacobians.
            self.jacobian.weight.data.zero_()
            self.jacobian.bias.data.copy_(torch.tensor([1, 0, 0, 1] * self.num_jacobian_maps, dtype=torch.float))
        else:
            self.jacobian = None
        self.temperature = config.temperature
        self.scale_factor = config.scale_factor
        if self.scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, self.scale_factor)

    def forward(self, x: Tensor) -> Keypoints:
        if self.scale_factor != 1:
            x = self.down(x)
        feature_map = self.predictor(x)
        logits = self.kp(feature_map)
        height, width = logits.shape[-2:]
        heatmap = F.softmax(rearrange(logits, "b k h w -> b k (h w)") / self.temperature, dim=2)
        heatmap = rearrange(heatmap, "b k (h w) -> b k h w", h=height)
        grid = make_coordinate_grid(height, width, heatmap.dtype, heatmap.device)
        value = (heatmap.unsqueeze(-1) * grid).sum(dim=(2, 3))
        if self.jacobian is None:
            return Keypoints(value)
        jacobian_maps = rearrange(self.jacobian(feature_map), "b (j e) h w -> b j e h w", e=4)
        jacobian = (heatmap.unsqueeze(2) * jacobian_maps).sum(dim=(-2, -1))
        return Keypoints(value, rearrange(jacobian, "b k (r c) -> b k r c", r=2))
