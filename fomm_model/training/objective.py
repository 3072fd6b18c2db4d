"""The FOMM training objective (section 3.3 of the paper, ``modules/model.py`` originally).

:class:`GeneratorObjective` returns the losses of the keypoint detector and generator:
multi-scale perceptual reconstruction, LSGAN + feature matching against the
discriminator, and equivariance of keypoint values and jacobians under a random warp.
:class:`DiscriminatorObjective` returns the discriminator's LSGAN loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..geometry import inverse
from ..keypoints import Keypoints
from ..networks import ImagePyramid, KPDetector, MultiScaleDiscriminator, OcclusionAwareGenerator
from .config import LossWeights, TrainParams
from .transform import RandomTPS
from .vgg import Vgg19Features


class PerceptualLoss(nn.Module):
    """Weighted L1 between VGG19 activations, or between pixels without VGG weights.

    Without ImageNet VGG19 weights (they cannot be downloaded at run time) the loss falls
    back to L1 on the pixels of each pyramid level, weighted by the first perceptual
    weight; that still trains, but gives blurrier results than the perceptual loss. It is
    also some 60x smaller than the VGG19 loss, so the equivariance weights of the original
    configs weigh that much more against it (README: "Why the keypoints collapse").
    """

    def __init__(self, weights: tuple[float, ...], vgg: Vgg19Features | None):
        super().__init__()
        self.weights = weights
        self.vgg = vgg

    def forward(self, generated: Tensor, real: Tensor) -> Tensor:
        if self.vgg is None:
            return self.weights[0] * torch.abs(generated - real.detach()).mean()
        total = generated.new_zeros(())
        for weight, gen_features, real_features in zip(self.weights, self.vgg(generated), self.vgg(real)):
            total = total + weight * torch.abs(gen_features - real_features.detach()).mean()
        return total


class GeneratorObjective(nn.Module):
    """Keypoint detector + generator losses for a batch of (source, driving) pairs."""

    def __init__(
        self,
        kp_detector: KPDetector,
        generator: OcclusionAwareGenerator,
        discriminator: MultiScaleDiscriminator | None,
        params: TrainParams,
        vgg: Vgg19Features | None = None,
    ):
        super().__init__()
        self.kp_detector = kp_detector
        self.generator = generator
        self.discriminator = discriminator
        self.params = params
        self.weights: LossWeights = params.loss_weights
        self.pyramid = ImagePyramid(params.scales, generator.num_channels)
        self.perceptual = PerceptualLoss(self.weights.perceptual, vgg) if sum(self.weights.perceptual) else None
        if self.weights.generator_gan and discriminator is None:
            raise ValueError("generator_gan is non-zero but the model has no discriminator")

    def forward(
        self, source: Tensor, driving: Tensor, generator_rng: torch.Generator | None = None
    ) -> tuple[dict[str, Tensor], dict[str, Any]]:
        kp_source = self.kp_detector(source)
        kp_driving = self.kp_detector(driving)
        generated: dict[str, Any] = self.generator(source, kp_source, kp_driving)
        generated.update(kp_source=kp_source, kp_driving=kp_driving)
        losses: dict[str, Tensor] = {}

        pyramid_real = self.pyramid(driving)
        pyramid_generated = self.pyramid(generated["prediction"])
        if self.perceptual is not None:
            losses["perceptual"] = sum(
                self.perceptual(pyramid_generated[key], pyramid_real[key]) for key in pyramid_real
            )

        if self.weights.generator_gan and self.discriminator is not None:
            kp = kp_driving.detach()
            maps_generated = self.discriminator(pyramid_generated, kp)
            maps_real = self.discriminator(pyramid_real, kp)
            losses["gen_gan"] = sum(
                self.weights.generator_gan * ((1 - maps_generated[f"prediction_map_{scale}"]) ** 2).mean()
                for scale in self.discriminator.scales
            )
            if sum(self.weights.feature_matching):
                total = driving.new_zeros(())
                for scale in self.discriminator.scales:
                    pairs = zip(maps_real[f"feature_maps_{scale}"], maps_generated[f"feature_maps_{scale}"])
                    for weight, (real, fake) in zip(self.weights.feature_matching, pairs):
                        if weight:
                            total = total + weight * torch.abs(real - fake).mean()
                losses["feature_matching"] = total

        if self.params.transform_params is not None and (self.weights.equivariance_value or self.weights.equivariance_jacobian):
            transform = RandomTPS(driving.shape[0], self.params.transform_params, generator_rng).to(driving.device)
            transformed_frame = transform.transform_frame(driving, self.generator.align_corners)
            transformed_kp: Keypoints = self.kp_detector(transformed_frame)
            generated.update(transformed_frame=transformed_frame, transformed_kp=transformed_kp)
            if self.weights.equivariance_value:
                error = torch.abs(kp_driving.value - transform.warp_coordinates(transformed_kp.value)).mean()
                losses["equivariance_value"] = self.weights.equivariance_value * error
            if self.weights.equivariance_jacobian:
                if kp_driving.jacobian is None or transformed_kp.jacobian is None:
                    raise ValueError("equivariance_jacobian needs a model with jacobians; set its weight to 0")
                transformed_jacobian = torch.matmul(transform.jacobian(transformed_kp.value), transformed_kp.jacobian)
                product = torch.matmul(inverse(kp_driving.jacobian), transformed_jacobian)
                eye = torch.eye(2, dtype=product.dtype, device=product.device).view(1, 1, 2, 2)
                losses["equivariance_jacobian"] = self.weights.equivariance_jacobian * torch.abs(eye - product).mean()
        return losses, generated


class DiscriminatorObjective(nn.Module):
    """LSGAN loss of the discriminator on real driving frames vs. detached predictions."""

    def __init__(self, discriminator: MultiScaleDiscriminator, params: TrainParams, num_channels: int):
        super().__init__()
        self.discriminator = discriminator
        self.weight = params.loss_weights.discriminator_gan
        self.pyramid = ImagePyramid(discriminator.scales, num_channels)

    def forward(self, driving: Tensor, prediction: Tensor, kp_driving: Keypoints) -> dict[str, Tensor]:
        pyramid_real = self.pyramid(driving)
        pyramid_generated = self.pyramid(prediction.detach())
        kp = kp_driving.detach()
        maps_generated = self.discriminator(pyramid_generated, kp)
        maps_real = self.discriminator(pyramid_real, kp)
        total = driving.new_zeros(())
        for scale in self.discriminator.scales:
            key = f"prediction_map_{scale}"
            total = total + self.weight * ((1 - maps_real[key]) ** 2 + maps_generated[key] ** 2).mean()
        return {"disc_gan": total}
