"""Start a model of another config from a trained model's weights.

    python recipes/default-model/transplant.py FROM.safetensors CONFIG.yaml OUT.safetensors

Every tensor whose name and shape match is copied; the generator's up blocks are matched
from the end (with one down block fewer, the old last up block, which makes full-resolution
features, is the new last one). The rest keeps its fresh initialisation. Prints what was
copied and what starts fresh, so a run can say which of its weights it learns anew.
"""

from __future__ import annotations

import sys

import torch

from fomm_model.checkpoint import read_checkpoint, write_safetensors
from fomm_model.model import FirstOrderModel
from fomm_model.training.config import RunConfig


def _source_name(name: str, old_ups: int, new_ups: int) -> str:
    parts = name.split(".")
    if parts[0] == "up_blocks":
        parts[1] = str(int(parts[1]) + old_ups - new_ups)
    return ".".join(parts)


def main(source: str, config: str, out: str) -> None:
    torch.manual_seed(0)
    run = RunConfig.from_yaml(config)
    model_config = run.model.replace(frame_shape=tuple(run.dataset.frame_shape[:2]), discriminator=None)
    model = FirstOrderModel(model_config)
    old = read_checkpoint(source).state_dicts
    old_ups = 1 + max(int(k.split(".")[1]) for k in old["generator"] if k.startswith("up_blocks."))
    new_ups = len(model.generator.up_blocks)
    copied = fresh = 0
    states = {}
    for network in ("kp_detector", "generator"):
        state = getattr(model, network).state_dict()
        for name, value in state.items():
            key = _source_name(name, old_ups, new_ups) if network == "generator" else name
            trained = old[network].get(key)
            if trained is not None and trained.shape == value.shape:
                state[name] = trained.to(value.dtype)
                copied += value.numel()
            else:
                fresh += value.numel()
                if network == "generator" and name.startswith("bottleneck.") and ".conv2." in name:
                    state[name] = torch.zeros_like(value)
                if value.dtype.is_floating_point:
                    print(f"fresh: {network}.{name} {tuple(value.shape)}")
        states[network] = state
    write_safetensors(out, states, model_config, {"transplanted_from": source})
    print(f"{out}: {copied} values copied, {fresh} fresh")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
