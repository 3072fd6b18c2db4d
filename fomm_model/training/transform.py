"""Random thin-plate-spline-like warps for the equivariance constraints."""

from __future__ import annotations

import torch
from torch import Tensor

from ..geometry import make_coordinate_grid, warp
from .config import TransformParams


class RandomTPS:
    """A random affine + radial-basis warp T per batch element.

    ``T(c) = A c + t + sum_p w_p phi(|c - p|_1)`` with ``phi(d) = d^2 log(d + 1e-6)`` over a
    P x P grid of control points; the radial term is one scalar added to both coordinates
    (as in the original). Parameters are drawn in the original order (affine first), so a
    seeded generator reproduces the original draws.
    """

    def __init__(self, batch: int, params: TransformParams, generator: torch.Generator | None = None):
        noise = torch.normal(mean=0, std=params.sigma_affine * torch.ones([batch, 2, 3]), generator=generator)
        self.theta = noise + torch.eye(2, 3).view(1, 2, 3)
        self.batch = batch
        self.tps = params.sigma_tps is not None and params.points_tps is not None
        points = params.points_tps or 1
        self.control_points = make_coordinate_grid(points, points).unsqueeze(0)
        self.control_params = (
            torch.normal(mean=0, std=params.sigma_tps * torch.ones([batch, 1, points**2]), generator=generator)
            if self.tps
            else torch.zeros(batch, 1, points**2)
        )

    def to(self, device: torch.device | str) -> "RandomTPS":
        self.theta = self.theta.to(device)
        self.control_points = self.control_points.to(device)
        self.control_params = self.control_params.to(device)
        return self

    def _radial(self, coordinates: Tensor) -> tuple[Tensor, Tensor]:
        """Distances (B, N, P*P) to the control points and their signed offsets (B, N, P*P, 2)."""
        offsets = coordinates.reshape(coordinates.shape[0], -1, 1, 2) - self.control_points.reshape(1, 1, -1, 2).to(
            coordinates
        )
        return offsets.abs().sum(-1), offsets

    def warp_coordinates(self, coordinates: Tensor) -> Tensor:
        """(B or 1, N, 2) -> (B, N, 2)."""
        theta = self.theta.to(coordinates).unsqueeze(1)
        out = torch.matmul(theta[..., :2], coordinates.unsqueeze(-1)) + theta[..., 2:]
        out = out.squeeze(-1)
        if not self.tps:  # affine only (no sigma_tps/points_tps): as the original, no radial term at all
            return out.expand(self.batch, -1, -1)
        distances, _ = self._radial(coordinates)
        radial = distances**2 * torch.log(distances + 1e-6) * self.control_params.to(coordinates)
        return out + radial.sum(dim=2).view(self.batch, coordinates.shape[1], 1)

    def jacobian(self, coordinates: Tensor) -> Tensor:
        """d T / d c at ``coordinates``: (B, N, 2, 2), rows = output coordinate.

        Analytic (the original used autograd; the values agree), so it also works without
        a graph and stays differentiable with respect to ``coordinates``.
        """
        affine = self.theta.to(coordinates)[:, None, :, :2]
        if not self.tps:
            return affine.expand(-1, coordinates.shape[1], -1, -1)
        distances, offsets = self._radial(coordinates)
        dphi = 2 * distances * torch.log(distances + 1e-6) + distances**2 / (distances + 1e-6)
        weights = (dphi * self.control_params.to(coordinates)).unsqueeze(-1)
        radial_grad = (weights * torch.sign(offsets)).sum(dim=2)  # (B, N, 2): d/dx, d/dy
        return affine + radial_grad.unsqueeze(-2)

    def transform_frame(self, frame: Tensor, align_corners: bool = True) -> Tensor:
        """frame(T(z)) sampled with reflection padding: (B, C, H, W)."""
        height, width = frame.shape[-2:]
        grid = make_coordinate_grid(height, width, frame.dtype, frame.device).reshape(1, height * width, 2)
        grid = self.warp_coordinates(grid).view(self.batch, height, width, 2)
        return warp(frame, grid, align_corners, padding_mode="reflection")
