"""Dense motion network: blends K local affine motions into one backward flow."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from ..config import DenseMotionConfig
from ..geometry import inverse, keypoint_heatmaps, make_coordinate_grid, warp
from ..keypoints import Keypoints
from .antialias import AntiAliasInterpolation2d
from .blocks import Hourglass


class DenseMotionNetwork(nn.Module):
    """Predicts per-keypoint masks (background first) and an occlusion map.

    Inputs of the hourglass, per motion m = 0..K: [heat map difference, warped R, G, B],
    where motion 0 is the identity (background) with an all-zero heat map.
    """

    def __init__(
        self,
        config: DenseMotionConfig,
        num_kp: int,
        num_channels: int,
        estimate_occlusion_map: bool,
        align_corners: bool = True,
    ):
        super().__init__()
        self.hourglass = Hourglass(
            config.block_expansion,
            in_features=(num_kp + 1) * (num_channels + 1),
            max_features=config.max_features,
            num_blocks=config.num_blocks,
        )
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=(7, 7), padding=(3, 3))
        if estimate_occlusion_map:
            self.occlusion = nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=(7, 7), padding=(3, 3))
        else:
            self.occlusion = None
        self.num_kp = num_kp
        self.scale_factor = config.scale_factor
        self.kp_variance = config.kp_variance
        self.align_corners = align_corners
        if self.scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, self.scale_factor)

    def downscale(self, source: Tensor) -> Tensor:
        """The source at the network's working resolution (reusable across frames)."""
        return self.down(source) if self.scale_factor != 1 else source

    def sparse_motions(self, height: int, width: int, kp_driving: Keypoints, kp_source: Keypoints) -> Tensor:
        """(B, K+1, h, w, 2) backward maps z -> kp_s + J_s J_d^-1 (z - kp_d); identity first."""
        batch = kp_driving.value.shape[0]
        grid = make_coordinate_grid(height, width, kp_driving.value.dtype, kp_driving.value.device)
        offsets = grid - kp_driving.value[:, :, None, None, :]
        if kp_driving.jacobian is not None:
            if kp_source.jacobian is None:
                raise ValueError("driving keypoints have jacobians but the source keypoints do not")
            affine = torch.matmul(kp_source.jacobian, inverse(kp_driving.jacobian))
            offsets = torch.matmul(affine[:, :, None, None], offsets.unsqueeze(-1)).squeeze(-1)
        driving_to_source = offsets + kp_source.value[:, :, None, None, :]
        identity = repeat(grid, "h w c -> b 1 h w c", b=batch)
        return torch.cat([identity, driving_to_source], dim=1)

    def forward(
        self, source: Tensor, kp_driving: Keypoints, kp_source: Keypoints, *, downscaled_source: Tensor | None = None
    ) -> dict[str, Tensor]:
        small = self.downscale(source) if downscaled_source is None else downscaled_source
        batch = kp_driving.value.shape[0]
        if small.shape[0] != batch:
            small = small.expand(batch, -1, -1, -1)
        height, width = small.shape[-2:]

        heatmaps = keypoint_heatmaps(kp_driving.value, height, width, self.kp_variance) - keypoint_heatmaps(
            kp_source.value, height, width, self.kp_variance
        )
        heatmaps = F.pad(heatmaps, (0, 0, 0, 0, 1, 0))  # all-zero background channel first

        motions = self.sparse_motions(height, width, kp_driving, kp_source)
        motions_flat = rearrange(motions, "b m h w c -> (b m) h w c")
        sources = repeat(small, "b c h w -> (b m) c h w", m=self.num_kp + 1)
        sparse_deformed = rearrange(
            warp(sources, motions_flat, self.align_corners), "(b m) c h w -> b m c h w", b=batch
        )

        inputs = torch.cat([heatmaps.unsqueeze(2), sparse_deformed], dim=2)
        prediction = self.hourglass(rearrange(inputs, "b m c h w -> b (m c) h w"))

        mask = F.softmax(self.mask(prediction), dim=1)
        deformation = (motions * mask.unsqueeze(-1)).sum(dim=1)
        out = {"sparse_deformed": sparse_deformed, "mask": mask, "deformation": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction))
        return out
