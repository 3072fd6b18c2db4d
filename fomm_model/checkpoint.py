"""Reading and writing FOMM checkpoints: original ``.pth.tar`` files and safetensors.

Original checkpoints are torch pickles (legacy or zip serialisation). They are only ever
read with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain
containers, so a malicious file cannot run code. Safetensors files hold the three state
dicts under ``kp_detector.``, ``generator.`` and ``discriminator.`` prefixes and the model
config as JSON in their metadata.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from .config import ConfigError, ModelConfig

NETWORKS = ("kp_detector", "generator", "discriminator")
CONFIG_KEY = "model_config"  # the config entry of our files (safetensors header, .pth.tar entry)
# The whole training config (original YAML schema, as JSON) in the checkpoints and models
# `fomm train` writes (a safetensors header entry, a .pth.tar entry), so fine-tuning them
# needs no --config.
TRAINING_CONFIG_KEY = "training_config"
# A training run folder holds these (``fomm train --out RUN``): the resumable state and the
# inference weights.
CHECKPOINT_NAME = "checkpoint.pth.tar"
MODEL_NAME = "model.safetensors"
FORMAT_NAME = "fomm"
FORMAT_VERSION = "1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


@dataclass
class Checkpoint:
    """The networks' state dicts of a checkpoint, plus what else it carried."""

    state_dicts: dict[str, dict[str, Tensor]]
    config: ModelConfig | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_discriminator(self) -> bool:
        return bool(self.state_dicts.get("discriminator"))


# What torch.load (weights_only) and safetensors raise on a damaged or foreign file.
CORRUPT_FILE_ERRORS = (EOFError, RuntimeError, OSError, ValueError, AttributeError, IndexError, KeyError, SafetensorError)


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a ``.pth.tar``/``.pth``/``.pt`` or ``.safetensors`` FOMM checkpoint safely."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    with path.open("rb") as handle:
        head = handle.read(16)
    if len(head) < 8:
        raise CheckpointError(f"{path}: file is empty or truncated ({path.stat().st_size} bytes)")
    if _looks_like_safetensors(head, path.stat().st_size):
        return _read_safetensors(path)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return _read_torch(path)
    raise CheckpointError(
        f"{path}: not a checkpoint (neither a torch .pth/.pth.tar file nor safetensors); "
        "FOMM checkpoints are the published *.pth.tar files or their safetensors conversion"
    )


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len <= size - 8 and head[8:9] == b"{"


def load_torch_mapping(path: Path) -> Mapping[str, Any]:
    """``torch.load(weights_only=True)`` of a dict, every failure a :class:`CheckpointError`
    naming the file (pickled code is refused, never run)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()
        detail = next((line for line in reason if "GLOBAL" in line or "Unsupported" in line), reason[0] if reason else "")
        raise CheckpointError(
            f"{path}: refused to load: the file contains Python objects other than tensors "
            f"({detail.strip()}). FOMM checkpoints hold only tensors; a file like this could run "
            "code when unpickled, so it is never executed. Use a checkpoint from a trusted source"
        ) from None
    except CORRUPT_FILE_ERRORS as exc:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path}: not a FOMM checkpoint (holds a {type(data).__name__}, expected a dict)")
    return data


def _read_torch(path: Path) -> Checkpoint:
    data = load_torch_mapping(path)
    if "kp_detector" not in data or "generator" not in data:
        flat = _split_prefixed(data)
        if flat is None:
            keys = ", ".join(list(map(str, data))[:8])
            raise CheckpointError(
                f"{path}: not a FOMM checkpoint: expected 'generator' and 'kp_detector' entries, found: {keys}"
            )
        return Checkpoint(flat)
    state_dicts = {}
    for name in NETWORKS:
        if name in data and data[name] is not None:
            state_dicts[name] = _tensor_dict(data[name], f"{path}: entry '{name}'")
    extra = {k: v for k, v in data.items() if k not in NETWORKS and k != CONFIG_KEY}
    return Checkpoint(state_dicts, config=_stored_config(data.get(CONFIG_KEY), path), extra=extra)


def _stored_config(text: Any, path: Path) -> ModelConfig | None:
    """The config a file of ours carries (the original code ignores the entry); an entry of
    that name that is not ours (not a string) is left alone, as the original would."""
    if not isinstance(text, str):
        return None
    try:
        return ModelConfig.from_json(text)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _tensor_dict(value: Any, where: str) -> dict[str, Tensor]:
    if not isinstance(value, Mapping):
        raise CheckpointError(f"{where} is a {type(value).__name__}, expected a state dict")
    bad = [k for k, v in value.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{where} holds non-tensor values (e.g. {bad[0]!r})")
    return dict(value)


def _split_prefixed(data: Mapping[str, Any]) -> dict[str, dict[str, Tensor]] | None:
    """Split a flat ``generator.x`` / ``kp_detector.y`` mapping into per-network dicts."""
    out: dict[str, dict[str, Tensor]] = {}
    for key, value in data.items():
        network, _, name = str(key).partition(".")
        if network not in NETWORKS or not name or not isinstance(value, Tensor):
            return None
        out.setdefault(network, {})[name] = value
    return out if "kp_detector" in out and "generator" in out else None


def _read_safetensors(path: Path) -> Checkpoint:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({exc})") from None
    state_dicts = _split_prefixed(tensors)
    if state_dicts is None:
        keys = ", ".join(list(tensors)[:6])
        raise CheckpointError(
            f"{path}: not a FOMM safetensors file: expected tensors named 'kp_detector.*' and "
            f"'generator.*', found: {keys}"
        )
    config = _stored_config(metadata.get(CONFIG_KEY), path)
    extra = {k: v for k, v in metadata.items() if k != CONFIG_KEY}
    return Checkpoint(state_dicts, config=config, extra=extra)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield an empty temporary file next to ``path``; when the block succeeds it gets the
    permissions of a plainly created file and is renamed onto ``path`` (replacing any file
    there), else it is removed. ``suffix`` ends the temporary name, for writers that choose
    the format by suffix (OpenCV, ffmpeg). The one write-to-temp-then-rename of the package:
    an interrupted write never leaves a half-written file under the final name."""
    path = Path(path)
    if path.is_dir():  # found now, not at the rename after all the work
        raise IsADirectoryError(errno.EISDIR, "a folder is there; give a file name", str(path))
    made = _make_parents(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{suffix}", dir=path.parent)
    except OSError as exc:  # named for the file asked for, not the temporary
        _remove_empty(made)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private (0600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        _remove_empty(made)
        raise


def leftover_temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporary files :func:`atomic_path` made for ``path`` that a killed process (SIGKILL,
    power loss) could not remove; the file at ``path`` itself is the last complete one."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.*.partial*"))


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """:func:`atomic_path` for a folder: yield an empty temporary folder next to ``path`` to
    fill; when the block succeeds it gets ordinary permissions and takes the place of
    ``path`` (a folder already there is moved aside first, and deleted once the new one is
    in place), else it is removed with its contents."""
    path = Path(path)
    made = _make_parents(path)
    try:
        temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    except OSError as exc:  # named for the folder asked for, not the temporary
        _remove_empty(made)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        yield temporary
        os.chmod(temporary, 0o777 & ~_umask())  # mkdtemp makes it private (0700)
        previous = None
        if path.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            path.rename(previous / path.name)
        try:
            temporary.rename(path)
        except BaseException:
            if previous is not None:
                (previous / path.name).rename(path)
            raise
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)  # the new folder is in place; old leftovers are harmless
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        _remove_empty(made)
        raise


def _make_parents(path: Path) -> list[Path]:
    """Create ``path``'s missing parent folders; the ones created, innermost first, so that a
    write that fails can take them away again (nothing is left behind, empty folders neither)."""
    missing = [folder for folder in path.parents if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # innermost first; one another write has since filled is kept
        try:
            folder.rmdir()
        except OSError:
            return


def _umask() -> int:
    """The process's file-creation mask (reading it means setting it, so it is set back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_safetensors(
    path: str | os.PathLike,
    state_dicts: Mapping[str, Mapping[str, Tensor]],
    config: ModelConfig,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write the networks' state dicts with the config in the header, atomically."""
    tensors = {
        f"{network}.{key}": value.detach().cpu().contiguous()
        for network in NETWORKS
        for key, value in (state_dicts.get(network) or {}).items()
    }
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, CONFIG_KEY: config.to_json()}
    header.update(metadata or {})
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)


def write_original(
    path: str | os.PathLike,
    state_dicts: Mapping[str, Mapping[str, Tensor]],
    extra: Mapping[str, Any] | None = None,
    config: ModelConfig | None = None,
) -> None:
    """Write the original ``.pth.tar`` layout (``generator``, ``kp_detector``, ...), atomically.

    ``config`` travels as one more entry (a JSON string, as in our safetensors header), so the
    frame size a model was trained at survives; the original code ignores the entry.
    """
    payload: dict[str, Any] = {name: dict(sd) for name, sd in state_dicts.items() if sd}
    payload.update(extra or {})
    if config is not None:
        payload[CONFIG_KEY] = config.to_json()
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def convert_checkpoint(
    source: str | os.PathLike,
    target: str | os.PathLike,
    config: ModelConfig | None = None,
    *,
    inference_only: bool = False,
    half: bool = False,
) -> Path:
    """Convert between ``.pth.tar`` and ``.safetensors`` (chosen by the target's suffix).

    By default tensors are copied bit for bit; optimizer entries are dropped; the config
    (given, stored, or inferred from the tensors) travels in the safetensors header.
    ``inference_only`` drops the discriminator (training only) and ``half`` stores
    floating-point weights as float16 (loaded back as float32): together they make the
    smallest file that animates.
    """
    from .config_inference import infer_model_config

    target = Path(target)
    checkpoint = read_checkpoint(source)
    sds = dict(checkpoint.state_dicts)
    if config is not None:  # stored with the weights, it must describe them: check before writing
        from .loading import check_weights_fit
        from .model import FirstOrderModel

        with torch.device("meta"):  # shapes only, no memory
            keeps_discriminator = "discriminator" in sds and not inference_only
            shell = FirstOrderModel(config if keeps_discriminator else config.replace(discriminator=None))
        check_weights_fit(shell, sds, Path(source), explicit_config=True)
    known = config is not None or checkpoint.config is not None  # an inferred frame size is only a guess
    config = config or checkpoint.config or infer_model_config(sds["kp_detector"], sds["generator"], sds.get("discriminator"))
    if inference_only:
        sds.pop("discriminator", None)
        config = config.replace(discriminator=None)
    if half:
        sds = {
            name: {k: v.half() if v.is_floating_point() else v for k, v in sd.items()} for name, sd in sds.items()
        }
    carried = checkpoint.extra.get(TRAINING_CONFIG_KEY)
    training = {TRAINING_CONFIG_KEY: carried} if isinstance(carried, str) else {}
    if target.suffix == ".safetensors":
        write_safetensors(target, sds, config, training)
    elif target.name.endswith((".pth.tar", ".pth", ".pt")):
        if config.generator.blend_warped_source:
            warnings.warn(
                f"{target}: this model's generator blends the warped source (blend_warped_source), which the "
                "original first-order-model code does not have: the file loads in this package only"
            )
        # The original's Logger.load_cpk returns checkpoint["epoch"] in every mode: always give one.
        write_original(target, sds, {"epoch": int(checkpoint.extra.get("epoch", 0)), **training}, config if known else None)
    else:
        raise CheckpointError(f"{target}: choose a .safetensors or .pth.tar output name")
    return target
