"""Start a model with another generator from a trained model's weights.

    python recipes/default-model/transplant.py FROM.safetensors CONFIG.yaml OUT.safetensors [MOTION.safetensors]

CONFIG is a training config in the original schema whose keypoint detector is FROM's (the
keypoints are what the new generator is trained around; a detector that does not fit is
refused). Every generator tensor whose name and shape match is copied, the up blocks matched
from the end (with one down block fewer, FROM's last up block, which makes full-resolution
features, is the new last one). The rest keeps its fresh initialisation, except that a
fresh residual block starts as the identity (its last convolution zero), so the copied
layers around it see their input from the first step instead of noise. Prints what was
copied, zeroed, started fresh and left unused, by module.

With MOTION, the motion networks (keypoint detector and dense motion network) come from that
model instead, and the rest of the generator from FROM: how phase 12 put phase 11's keypoints,
which sit further apart, under phase 8's sharper decoder.
"""

from __future__ import annotations

import sys
from collections import Counter

import torch

from fomm_model.checkpoint import read_checkpoint, write_safetensors
from fomm_model.model import FirstOrderModel
from fomm_model.training.config import RunConfig

DENSE_MOTION = "dense_motion_network."


def _up_block_count(state: dict[str, torch.Tensor]) -> int:
    return 1 + max((int(key.split(".")[1]) for key in state if key.startswith("up_blocks.")), default=-1)


def _source_name(name: str, shift: int) -> str:
    """The FROM generator's name for a tensor of the new one (up blocks counted from the end)."""
    parts = name.split(".")
    if parts[0] == "up_blocks":
        parts[1] = str(int(parts[1]) + shift)
    return ".".join(parts)


def _module(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] in ("down_blocks", "up_blocks", "bottleneck") else parts[0]


def _networks(path: str) -> dict[str, dict[str, torch.Tensor]]:
    state = read_checkpoint(path).state_dicts
    missing = [network for network in ("kp_detector", "generator") if not state.get(network)]
    if missing:
        sys.exit(f"{path} has no {' or '.join(missing)}: give a FOMM model file")
    return state


def _with_motion_of(old: dict[str, dict[str, torch.Tensor]], motion: dict[str, dict[str, torch.Tensor]]) -> None:
    """Replace ``old``'s keypoint detector and dense motion network with ``motion``'s."""
    old["kp_detector"] = motion["kp_detector"]
    generator = {key: value for key, value in old["generator"].items() if not key.startswith(DENSE_MOTION)}
    generator.update((key, value) for key, value in motion["generator"].items() if key.startswith(DENSE_MOTION))
    old["generator"] = generator


def main(source: str, config: str, out: str, motion: str | None = None) -> None:
    torch.manual_seed(0)
    run = RunConfig.from_yaml(config)
    old = _networks(source)
    if motion is not None:
        _with_motion_of(old, _networks(motion))
    model = FirstOrderModel(run.model.replace(frame_shape=tuple(run.dataset.frame_shape[:2]), discriminator=None))
    try:
        model.kp_detector.load_state_dict(old["kp_detector"])
    except RuntimeError:
        sys.exit(f"{motion or source}: its keypoint detector does not fit {config}'s; transplant changes the generator only")
    state = model.generator.state_dict()
    shift = _up_block_count(old["generator"]) - len(model.generator.up_blocks)
    kinds: dict[str, Counter] = {"copied": Counter(), "zeroed (identity)": Counter(), "fresh": Counter()}
    used = set()
    for name, value in state.items():
        key = _source_name(name, shift)
        trained = old["generator"].get(key)
        if not value.dtype.is_floating_point:  # batch norm's step counters: kept where they fit, not reported
            if trained is not None and trained.shape == value.shape:
                state[name] = trained
            continue
        if trained is not None and trained.shape == value.shape:
            state[name] = trained.to(value.dtype)
            used.add(key)
            kinds["copied"][_module(name)] += value.numel()
        elif name.startswith("bottleneck.") and ".conv2." in name:
            state[name] = torch.zeros_like(value)
            kinds["zeroed (identity)"][_module(name)] += value.numel()
        else:
            kinds["fresh"][_module(name)] += value.numel()
    unused = Counter(_module(key) for key, value in old["generator"].items() if key not in used and value.dtype.is_floating_point)
    write_safetensors(out, {"kp_detector": model.kp_detector.state_dict(), "generator": state}, model.config,
                      {"transplanted_from": source} | ({"motion_from": motion} if motion else {}))
    print(f"keypoint detector: copied whole{f' from {motion}, with its dense motion network' if motion else ''}")
    for kind, modules in kinds.items():
        if modules:
            print(f"generator, {kind}: " + ", ".join(f"{module} ({count})" for module, count in modules.items()))
    if unused:
        print(f"unused from {source}: " + ", ".join(f"{module} ({count} tensors)" for module, count in unused.items()))
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    main(*sys.argv[1:])
