"""``fomm convert`` and ``fomm info``: checkpoint conversion and inspection."""

from __future__ import annotations

import argparse
import json

from ..checkpoint import convert_checkpoint, read_checkpoint
from ..config import resolve_config
from ..loading import resolve_checkpoint_path


def register(subparsers: argparse._SubParsersAction) -> None:
    convert = subparsers.add_parser(
        "convert",
        help="convert a checkpoint between .pth.tar and .safetensors",
        description="Convert a FOMM checkpoint. The output format follows OUT's suffix "
        "(.safetensors, or .pth.tar for the original layout). Tensors are copied bit for bit; "
        "the config (given, stored, or inferred from the tensors) is stored in safetensors headers.",
    )
    convert.add_argument("input", help='checkpoint to read (.pth.tar, .pth or .safetensors), a training run folder, or "default"')
    convert.add_argument("output", help="file to write (.safetensors or .pth.tar)")
    convert.add_argument("--config", help="preset name or YAML config (default: the one stored in the checkpoint, else inferred from the tensors)")
    convert.add_argument("--inference-only", action="store_true", help="leave out the discriminator (only training uses it)")
    convert.add_argument("--half", action="store_true", help="store weights as float16 (half the size; loaded as float32)")
    convert.set_defaults(func=run_convert)

    info = subparsers.add_parser("info", help="print a checkpoint's model config as JSON")
    info.add_argument("checkpoint", help='checkpoint path, or "default" for the embedded model')
    info.set_defaults(func=run_info)


def run_convert(args: argparse.Namespace) -> int:
    config = resolve_config(args.config) if args.config else None
    source = resolve_checkpoint_path(args.input)
    out = convert_checkpoint(source, args.output, config, inference_only=args.inference_only, half=args.half)
    print(f"wrote {out}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from ..config_inference import infer_model_config

    path = resolve_checkpoint_path(args.checkpoint)
    checkpoint = read_checkpoint(path)
    sds = checkpoint.state_dicts
    config = checkpoint.config or infer_model_config(sds["kp_detector"], sds["generator"], sds.get("discriminator"))
    summary = {
        "file": str(path),
        "config_source": "stored" if checkpoint.config else "inferred from tensors",
        "networks": {name: sum(t.numel() for t in sd.values()) for name, sd in sds.items()},
        **json.loads(config.to_json()),
    }
    print(json.dumps(summary, indent=2))
    return 0
