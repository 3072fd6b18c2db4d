"""Start a model from trained weights: another generator shape, or another model's motion networks.

    python recipes/default-model/transplant.py FROM.safetensors CONFIG.yaml OUT.safetensors [MOTION.safetensors]

CONFIG is a training config in the original schema whose keypoint detector is FROM's, or
MOTION's when given (the keypoints are what the new generator is trained around; a detector
that does not fit is refused). Every generator tensor whose name and shape match is copied, the up blocks matched
from the end (with one down block fewer, FROM's last up block, which makes full-resolution
features, is the new last one). The rest keeps its fresh initialisation, except that a
fresh residual block starts as the identity (its last convolution zero), so the copied
layers around it see their input from the first step instead of noise, and a fresh
``blend`` head (``blend_warped_source``) starts at zero: every pixel half the warped source,
half the decoded frame, the decoded one being FROM's frame. The fixed
anti-aliasing kernels are made for CONFIG's scales (FROM's copy is kept only where it is the
same kernel, as rounded in an fp16 file), so a dense motion network at another
``scale_factor`` keeps every trained weight with a kernel for its new scale. Prints what was
copied, zeroed, started fresh and left unused, by module (the fixed kernels are none of these).

With MOTION, the motion networks (keypoint detector and dense motion network) come from that
model instead, whole (one that does not fit CONFIG is refused), and the rest of the generator
from FROM: how phase 12 put phase 11's keypoints, which sit further apart, under phase 8's
sharper decoder.
"""

from __future__ import annotations

import sys
from collections import Counter

import torch

from fomm_model.checkpoint import read_checkpoint, write_safetensors
from fomm_model.model import FirstOrderModel
from fomm_model.networks.antialias import AntiAliasInterpolation2d
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


def _antialias_kernels(network: torch.nn.Module) -> set[str]:
    """The state-dict names of ``network``'s anti-aliasing kernels (fixed by their scale)."""
    return {f"{name}.weight" for name, module in network.named_modules() if isinstance(module, AntiAliasInterpolation2d)}


def _networks(path: str) -> dict[str, dict[str, torch.Tensor]]:
    state = read_checkpoint(path).state_dicts
    missing = [network for network in ("kp_detector", "generator") if not state.get(network)]
    if missing:
        sys.exit(f"{path} has no {' or '.join(missing)}: give a FOMM model file")
    return state


def _dense_motion(generator: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key.removeprefix(DENSE_MOTION): value for key, value in generator.items() if key.startswith(DENSE_MOTION)}


def _take_motion(model: FirstOrderModel, old: dict[str, dict[str, torch.Tensor]], motion: str, config: str) -> None:
    """Give ``old`` the keypoint detector and dense motion network of the model file ``motion``,
    refusing networks that do not fit ``model`` whole (a half-copied one would train from a mix)."""
    networks = _networks(motion)
    dense_motion = _dense_motion(networks["generator"])
    try:
        model.generator.dense_motion_network.load_state_dict(dense_motion)
    except RuntimeError:
        sys.exit(f"{motion}: its dense motion network does not fit {config}'s")
    old["kp_detector"] = networks["kp_detector"]
    rest = {key: value for key, value in old["generator"].items() if not key.startswith(DENSE_MOTION)}
    old["generator"] = rest | {DENSE_MOTION + key: value for key, value in dense_motion.items()}


def main(source: str, config: str, out: str, motion: str | None = None) -> None:
    torch.manual_seed(0)
    run = RunConfig.from_yaml(config)
    old = _networks(source)
    model = FirstOrderModel(run.model.replace(frame_shape=tuple(run.dataset.frame_shape[:2]), discriminator=None))
    if motion is not None:
        _take_motion(model, old, motion, config)
    try:
        model.kp_detector.load_state_dict(old["kp_detector"])
    except RuntimeError:
        hint = "" if motion else "; transplant changes the generator only"
        sys.exit(f"{motion or source}: its keypoint detector does not fit {config}'s{hint}")
    state = model.generator.state_dict()
    shift = _up_block_count(old["generator"]) - len(model.generator.up_blocks)
    kinds: dict[str, Counter] = {
        "copied": Counter(), "zeroed (identity)": Counter(), "zeroed (even blend)": Counter(), "fresh": Counter()
    }
    fixed = _antialias_kernels(model.generator)
    used = set()
    for name, value in state.items():
        key = _source_name(name, shift)
        trained = old["generator"].get(key)
        if name in fixed:  # not learned: CONFIG's own, or FROM's where it is that kernel (rounded as FROM stores it)
            if trained is not None and trained.shape == value.shape and torch.allclose(trained.float(), value, rtol=1e-3, atol=1e-7):
                state[name] = trained.to(value.dtype)
            continue
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
        elif name.startswith("blend."):
            state[name] = torch.zeros_like(value)
            kinds["zeroed (even blend)"][_module(name)] += value.numel()
        else:
            kinds["fresh"][_module(name)] += value.numel()
    unused = Counter(_module(key) for key, value in old["generator"].items()
                     if key not in used and key not in fixed and value.dtype.is_floating_point)
    write_safetensors(out, {"kp_detector": model.kp_detector.state_dict(), "generator": state}, model.config,
                      {"transplanted_from": source} | ({"motion_from": motion} if motion is not None else {}))
    print(f"keypoint detector: copied whole{'' if motion is None else f' from {motion}, with its dense motion network'}")
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
