"""VGG19 features for the perceptual loss, built without torchvision.

The layer indices match torchvision's ``vgg19().features``, so its ImageNet weights file
(``vgg19-dcbb9e9d.pth``, a plain state dict) or a safetensors copy of it loads directly.
Nothing is downloaded: the user names the file.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from ..checkpoint import CORRUPT_FILE_ERRORS

# (in, out) per conv, "M" for max-pooling: torchvision's configuration "E", up to relu5_1.
_LAYOUT: tuple[tuple[int, int] | str, ...] = (
    (3, 64), (64, 64), "M",
    (64, 128), (128, 128), "M",
    (128, 256), (256, 256), (256, 256), (256, 256), "M",
    (256, 512), (512, 512), (512, 512), (512, 512), "M",
    (512, 512),
)  # fmt: skip
# Feature indices after which relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 are read.
_TAPS = (2, 7, 12, 21, 30)


class Vgg19Features(nn.Module):
    """Returns the five activations relu1_1 .. relu5_1 of ImageNet-normalised input."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for entry in _LAYOUT:
            if entry == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(entry[0], entry[1], kernel_size=3, padding=1), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path) -> "Vgg19Features":
        """Load torchvision VGG19 ImageNet weights (``.pth`` state dict or safetensors)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"VGG19 weights not found: {path}")
        try:
            if path.suffix == ".safetensors":
                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, *CORRUPT_FILE_ERRORS) as exc:
            if isinstance(exc, pickle.UnpicklingError):  # torch's text would suggest weights_only=False
                reason = "not a torch weights file, or one holding Python objects besides tensors"
            else:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
            raise ValueError(
                f"{path}: cannot be read as VGG19 weights ({reason}); pass torchvision's vgg19-dcbb9e9d.pth "
                "or a safetensors copy of it (only tensors are loaded, never code)"
            ) from None
        if not isinstance(state, Mapping):
            raise ValueError(f"{path} is not a VGG19 weights file: it holds a {type(state).__name__}, not a state dict")
        features = {
            key.removeprefix("features."): value
            for key, value in state.items()
            if key.startswith("features.") or key[0].isdigit()
        }
        model = cls()
        wanted = model.features.state_dict()
        missing = [k for k in wanted if k not in features]
        if missing:
            raise ValueError(f"{path} is not a VGG19 weights file: missing {missing[:3]}")
        model.features.load_state_dict({k: features[k] for k in wanted})
        return model.eval()

    def forward(self, x: Tensor) -> list[Tensor]:
        out = (x - self.mean) / self.std
        taps = []
        start = 0
        for stop in _TAPS:
            out = self.features[start:stop](out)
            taps.append(out)
            start = stop
        return taps
