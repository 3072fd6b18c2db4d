"""The perceptual network loads torchvision-layout VGG19 weights from .pth or safetensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from fomm_model.training.objective import PerceptualLoss
from fomm_model.training.vgg import Vgg19Features


def torchvision_layout(model: Vgg19Features) -> dict[str, torch.Tensor]:
    """Keys as in torchvision's vgg19 state dict, classifier included (it is ignored)."""
    state = {f"features.{k}": v.clone() for k, v in model.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)
    return state


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_loads_torchvision_weights(tmp_path: Path, suffix: str) -> None:
    reference = Vgg19Features()
    for parameter in reference.parameters():
        parameter.data.normal_(0, 0.05)
    path = tmp_path / f"vgg19{suffix}"
    if suffix == ".pth":
        torch.save(torchvision_layout(reference), path)
    else:
        save_file(torchvision_layout(reference), str(path))
    loaded = Vgg19Features.from_file(path)
    image = torch.rand(1, 3, 64, 64)
    outputs = loaded(image)
    assert [o.shape[1] for o in outputs] == [64, 128, 256, 512, 512]
    assert all(torch.equal(a, b) for a, b in zip(outputs, reference(image)))
    assert not any(p.requires_grad for p in loaded.parameters())


def test_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "not_vgg.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a VGG19 weights file"):
        Vgg19Features.from_file(path)
    with pytest.raises(FileNotFoundError):
        Vgg19Features.from_file(tmp_path / "missing.pth")


def test_perceptual_loss_uses_vgg_when_given() -> None:
    vgg = Vgg19Features()
    loss = PerceptualLoss((1, 1, 1, 1, 1), vgg)
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    expected = sum((x - y).abs().mean() for x, y in zip(vgg(a), vgg(b)))
    assert torch.allclose(loss(a, b), expected)
    assert PerceptualLoss((10, 0, 0, 0, 0), None)(a, b) == pytest.approx(10 * (a - b).abs().mean().item())
