"""The FOMM model object: three networks, their config, and the inference entry points."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .config import ModelConfig, resolve_config
from .geometry import warp
from .images import check_pixels
from .keypoints import Keypoints
from .networks import KPDetector, MultiScaleDiscriminator, OcclusionAwareGenerator
from .pipeline import Reference, animate_frames
from .precision import Precision, autocast, check_precision
from .threads import map_frame_shards


@dataclass(frozen=True)
class EncodedSource:
    """Everything about a source image that does not depend on the driving frame.

    Computed once per animation by :meth:`FirstOrderModel.encode_source` and reused for
    every batch of driving frames (the per-frame loop of the original re-encodes the
    source for every frame: about a fifth of the generator's work).
    """

    image: Tensor  # (N, C, H, W) on the model's device and dtype
    keypoints: Keypoints
    features: Tensor  # generator encoder output (N, F, H/2^n, W/2^n)
    downscaled: Tensor  # dense motion network input (N, C, h, w)

    def __len__(self) -> int:
        return self.image.shape[0]


class FirstOrderModel(nn.Module):
    """Keypoint detector + generator (+ discriminator when training) of one FOMM model.

    The inference methods run without gradients in whatever mode the model is in;
    :func:`load_model` and :func:`build_model` return it in eval mode.
    """

    def __init__(self, config: ModelConfig, align_corners: bool = True):
        super().__init__()
        self.config = config
        self.kp_detector = KPDetector(
            config.kp_detector, config.num_kp, config.num_channels, config.estimate_jacobian
        )
        self.generator = OcclusionAwareGenerator(
            config.generator, config.num_kp, config.num_channels, align_corners=align_corners
        )
        self.discriminator: MultiScaleDiscriminator | None = (
            None
            if config.discriminator is None
            else MultiScaleDiscriminator(config.discriminator, config.num_kp, config.num_channels)
        )

    # ------------------------------------------------------------------ properties
    @property
    def align_corners(self) -> bool:
        """grid_sample convention: True = training-time (torch 1.0), False = original on modern torch."""
        return self.generator.align_corners

    @align_corners.setter
    def align_corners(self, value: bool) -> None:
        self.generator.align_corners = bool(value)

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.generator.parameters()).dtype

    # ------------------------------------------------------------------ inference
    def check_images(self, images: Tensor, name: str = "images") -> None:
        """Validate an (N, C, H, W) float batch in [0, 1] of a size the model takes."""
        check_pixels(images, name, self.config.num_channels)
        self.config.check_image_size(*images.shape[-2:])

    @torch.no_grad()
    def detect_keypoints(self, images: Tensor) -> Keypoints:
        """(N, C, H, W) images in [0, 1] -> keypoints (values (N, K, 2), jacobians or None)."""
        self.check_images(images)
        return self.kp_detector(images.to(self.device, self.dtype))

    @torch.no_grad()
    def generate(self, source: Tensor, kp_source: Keypoints, kp_driving: Keypoints) -> dict[str, Tensor]:
        """Render the source moved to the driving keypoints, for a batch of driving frames.

        Returns ``prediction``, ``mask``, ``sparse_deformed``, ``occlusion_map`` (when the
        model has one), ``deformed``, ``deformation`` and, for a model whose generator blends
        the warped source, ``decoded`` and ``source_weight``. A batch-1 source (and its
        keypoints) is broadcast to the driving batch.
        """
        self.check_images(source, "source")
        self._check_keypoints(kp_source, "kp_source")
        self._check_keypoints(kp_driving, "kp_driving")
        if source.shape[0] not in (1, len(kp_driving)):
            raise ValueError(
                f"source has {source.shape[0]} images for {len(kp_driving)} driving frames; give one source or one per frame"
            )
        return self.generate_encoded(self.encode_source(source, kp_source), kp_driving, with_deformed=True)

    @torch.no_grad()
    def encode_source(self, source: Tensor, kp_source: Keypoints | None = None) -> EncodedSource:
        """Run the source-only work once: keypoints (unless given), encoder features and
        the dense motion network's downscaled copy. Feed the result to :meth:`generate_encoded`."""
        self.check_images(source, "source")
        image = source.to(self.device, self.dtype)
        if kp_source is None:
            kp_source = self.kp_detector(image)
        else:
            self._check_keypoints(kp_source, "kp_source")
            kp_source = kp_source.to(self.device, self.dtype)
        return EncodedSource(
            image=image,
            keypoints=kp_source,
            features=self.generator.encode(image),
            downscaled=self.generator.dense_motion_network.downscale(image),
        )

    @torch.no_grad()
    def generate_encoded(
        self,
        encoded: EncodedSource,
        kp_driving: Keypoints,
        *,
        precision: Precision = "fp32",
        with_deformed: bool = False,
    ) -> dict[str, Tensor]:
        """:meth:`generate` for a pre-encoded source: the fast path of every animation.

        ``precision`` "bf16"/"fp16" runs the decoder's convolutions in that format (see
        :mod:`fomm_model.precision`); the motion is always computed in float32. The
        full-resolution warped source ``deformed`` is only made with ``with_deformed``.
        """
        self._check_keypoints(kp_driving, "kp_driving")
        check_precision(precision)
        if len(encoded) not in (1, len(kp_driving)):
            raise ValueError(
                f"source has {len(encoded)} images for {len(kp_driving)} driving frames; give one source or one per frame"
            )
        kp_driving = kp_driving.to(self.device, self.dtype)
        # One source, inference: CPU batches run frame-parallel (fomm_model.threads). Not in
        # train mode, where batch norm would use each slice's statistics.
        if len(encoded) == 1 and not self.training:
            return map_frame_shards(
                self.device,
                len(kp_driving),
                lambda frames: self._generate_encoded(encoded, kp_driving[frames], precision, with_deformed),
            )
        return self._generate_encoded(encoded, kp_driving, precision, with_deformed)

    def _generate_encoded(
        self, encoded: EncodedSource, kp_driving: Keypoints, precision: Precision, with_deformed: bool
    ) -> dict[str, Tensor]:
        device, dtype = self.device, self.dtype
        generator = self.generator
        out = generator.dense_motion_network(
            encoded.image, kp_driving, encoded.keypoints.expand(len(kp_driving)), downscaled_source=encoded.downscaled
        )
        features = generator.warp_features(encoded.features, out["deformation"], out.get("occlusion_map"))
        if with_deformed:
            batch = len(kp_driving)
            image = encoded.image if len(encoded) == batch else encoded.image.expand(batch, -1, -1, -1)
            out["deformed"] = warp(image, out["deformation"], self.align_corners)
        warped = generator.warp_source(encoded.image, out["deformation"])
        with autocast(device, precision):
            decoded = generator.decode(features.contiguous(memory_format=_conv_layout(device)), warped)
        out.update({name: value.to(dtype).contiguous() for name, value in decoded.items()})
        return out

    @torch.no_grad()
    def dense_motion(self, source: Tensor, kp_source: Keypoints, kp_driving: Keypoints) -> dict[str, Tensor]:
        """The dense motion step alone: ``deformation`` (N, h, w, 2) backward flow,
        ``occlusion_map`` (N, 1, h, w) when the model has one, ``mask`` (N, K+1, h, w) and
        ``sparse_deformed``. Feed the result to :meth:`render`."""
        self.check_images(source, "source")
        self._check_keypoints(kp_source, "kp_source")
        self._check_keypoints(kp_driving, "kp_driving")
        device, dtype = self.device, self.dtype
        kp_source = kp_source.to(device, dtype).expand(len(kp_driving))
        return self.generator.dense_motion_network(source.to(device, dtype), kp_driving.to(device, dtype), kp_source)

    @torch.no_grad()
    def render(
        self, source: Tensor | EncodedSource, deformation: Tensor, occlusion_map: Tensor | None = None
    ) -> Tensor:
        """Generate frames from a dense flow: warp the source's features, mask what is
        occluded, decode. ``generate`` = ``dense_motion`` + ``render``.

        ``source`` is the image (N, C, H, W), or what :meth:`encode_source` made of it:
        rendering a long flow chunk by chunk then encodes the source once, not per chunk.
        """
        return self.render_outputs(source, deformation, occlusion_map)["prediction"]

    @torch.no_grad()
    def render_outputs(
        self, source: Tensor | EncodedSource, deformation: Tensor, occlusion_map: Tensor | None = None
    ) -> dict[str, Tensor]:
        """:meth:`render` with all the decoder makes: ``prediction`` and, for a model whose
        generator blends the warped source (``blend_warped_source``), ``decoded`` and
        ``source_weight``, which full-resolution rendering needs."""
        if deformation.ndim != 4 or deformation.shape[-1] != 2:
            raise ValueError(f"deformation must be (N, h, w, 2), got {tuple(deformation.shape)}")
        if self.config.generator.estimate_occlusion_map and occlusion_map is None:
            raise ValueError("this model was trained with an occlusion map: pass the one from dense_motion")
        device, dtype = self.device, self.dtype
        generator = self.generator
        if isinstance(source, EncodedSource):
            image, features = source.image.to(device, dtype), source.features.to(device, dtype)
        else:
            self.check_images(source, "source")
            image = source.to(device, dtype)
            features = generator.encode(image)
        deformation = deformation.to(device, dtype)
        occlusion = None if occlusion_map is None else occlusion_map.to(device, dtype)
        warped = generator.warp_source(image, deformation)
        return generator.decode(generator.warp_features(features, deformation, occlusion), warped)

    def animate(
        self,
        source: Tensor,
        driving: Tensor,
        *,
        relative: bool = True,
        relative_jacobian: bool = True,
        adapt_scale: bool = True,
        reference: Reference = "first",
        batch_size: int = 8,
        precision: Precision = "fp32",
    ) -> Tensor:
        """Animate one source image (1, C, H, W) with driving frames (T, C, H, W) -> (T, C, H, W).

        The reference driving frame (the first, a given index, or ``"best"``: the one whose
        pose matches the source's best) is where the motion starts: in relative mode the
        source keypoints move by the driving keypoints' displacement since that frame. The
        source is encoded once and the frames run in batches of ``batch_size``; see
        :func:`fomm_model.pipeline.animate_frames` for the streaming version.
        """
        self.check_images(source, "source")
        self.check_images(driving, "driving")
        if source.shape[0] != 1:
            raise ValueError(f"animate takes one source image (1, C, H, W), got {source.shape[0]}")
        frames = animate_frames(
            self,
            source,
            driving,
            relative=relative,
            relative_jacobian=relative_jacobian,
            adapt_scale=adapt_scale,
            reference=reference,
            batch_size=batch_size,
            precision=precision,
        )
        out = torch.empty(driving.shape[0], self.config.num_channels, *source.shape[-2:], device=self.device, dtype=self.dtype)
        for index, frame in enumerate(frames):
            out[index] = frame
        return out

    def _check_keypoints(self, kp: Keypoints, name: str) -> None:
        if not isinstance(kp, Keypoints):
            raise TypeError(f"{name} must be Keypoints (from detect_keypoints), got {type(kp).__name__}")
        if kp.num_kp != self.config.num_kp:
            raise ValueError(
                f"{name} has {kp.num_kp} keypoints but this model uses {self.config.num_kp}: "
                "the keypoints come from a different model"
            )
        if (kp.jacobian is None) == self.config.estimate_jacobian:
            expected = "with" if self.config.estimate_jacobian else "without"
            raise ValueError(f"{name} must come {expected} jacobians for this model: they come from a different model")


def build_model(config: ModelConfig | str | Path, align_corners: bool = True) -> FirstOrderModel:
    """A randomly initialised model from a preset name, a YAML path or a :class:`ModelConfig`."""
    model = FirstOrderModel(resolve_config(config), align_corners=align_corners)
    return model.eval()


def _conv_layout(device: torch.device) -> torch.memory_format:
    """Memory layout for the convolution stacks: channels-last where oneDNN/cuDNN run it faster."""
    return torch.channels_last if device.type in ("cpu", "cuda") else torch.contiguous_format
