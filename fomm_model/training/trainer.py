"""The training loop: the original schedule, resumable at any checkpoint, one or many processes.

A run folder holds ``config.yaml`` (the original schema), ``checkpoint.pth.tar`` (the
original layout — networks, optimizers, epoch — plus the loop's position), ``log.csv``,
``train-vis/*.png`` and, at the end, ``model.safetensors`` for inference.
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import dataclasses
import inspect
import json
import logging
import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import yaml
from PIL import Image
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import MultiStepLR
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..checkpoint import (
    CHECKPOINT_NAME,
    CONFIG_KEY,
    MODEL_NAME,
    TRAINING_CONFIG_KEY,
    CheckpointError,
    atomic_path,
    leftover_temporaries,
    load_torch_mapping,
    read_checkpoint,
    write_safetensors,
)
from ..config import ModelConfig
from ..loading import resolve_checkpoint_path
from ..model import FirstOrderModel
from ..visualize import draw_keypoints, gray_to_rgb, masks_to_color, side_by_side
from . import distributed
from .config import RunConfig
from .data import DatasetRepeater, FramesDataset
from .objective import DiscriminatorObjective, GeneratorObjective
from .vgg import Vgg19Features

LOG_NAME = "log.csv"
# Global batches below this size get the freeze_batch_norm hint when fine-tuning: at 8 the
# default model's batch-norm statistics, recomputed, cost it 0.03 of held-out ratio.
SMALL_BATCH = 16
STATE_KEY = "fomm_training"


@dataclass(frozen=True)
class TrainingOptions:
    """How to run a training (what to train is the :class:`RunConfig`)."""

    out_dir: Path
    data_dir: Path | None = None  # overrides dataset_params.root_dir
    checkpoint: Path | None = None  # weights to fine-tune from
    resume: bool = False
    max_steps: int | None = None
    vgg_weights: Path | None = None
    device: str | None = None
    num_workers: int = 2
    seed: int | None = None  # None: 0 for a new run, the run's own seed with resume
    save_every: int = 250
    log_every: int = 10
    vis_every: int = 500
    progress: bool = True


@dataclass
class TrainingResult:
    steps: int
    epochs_completed: int
    checkpoint: Path
    model: Path | None
    last_logged: dict[str, float]  # the last step's losses, "total" and "kp_spread" (this process's values)
    steps_run: int  # steps trained by this call (0 when a resumed run had nothing left to train)


class Trainer:
    """Self-supervised FOMM training (``train.py`` of the original, made resumable)."""

    def __init__(self, run: RunConfig, options: TrainingOptions):
        self.run = run
        self.options = options
        self.out_dir = Path(options.out_dir)
        if not options.resume and (self.out_dir / CHECKPOINT_NAME).exists():
            raise ValueError(
                f"{self.out_dir} already holds a training run; continue it with --resume, or give another --out "
                "(a new run would overwrite its checkpoint and log)"
            )
        self.info = distributed.setup(options.device)
        self.step = 0
        self.epoch = 0
        self.epoch_items = 0  # items this process consumed in the current epoch
        self.saved_step: int | None = None  # the step the run's checkpoint holds
        self._saving_step: int | None = None  # the step being saved, until it is
        self.max_steps = options.max_steps  # a resumed run keeps its own unless given another
        self.trained_seconds = 0.0  # training time before this call (a resumed run's), so log.csv's clock runs on
        self._clock_start: float | None = None
        resumed = self._read_resume_checkpoint() if options.resume else None
        self.seed = self._choose_seed(resumed)

        torch.manual_seed(self.seed)  # the same initial weights in every process
        self.model = FirstOrderModel(run.model)
        self.uses_gan = run.train.loss_weights.generator_gan != 0
        # Whether the discriminator holds trained weights, so that the model file carries it:
        # trained here by the GAN loss, in the run this one continues, or loaded for fine-tuning.
        self.has_trained_discriminator = self.uses_gan
        if self.model.discriminator is None:
            raise ValueError("the config has no discriminator_params; training needs them")
        if options.checkpoint is not None and not options.resume:
            self._load_pretrained(resolve_checkpoint_path(options.checkpoint))
        if self.info.distributed:
            distributed.convert_sync_batchnorm(self.model)
        self.model.to(self.info.device).train()
        fine_tuning = options.checkpoint is not None and not options.resume
        if run.train.freeze_batch_norm:
            _freeze_batch_norm(self.model)
            if options.checkpoint is None and not options.resume:
                self._say(
                    "freeze_batch_norm without --checkpoint: batch norm keeps its initial statistics (mean 0, "
                    "variance 1); it is meant for fine-tuning trained weights"
                )
        elif fine_tuning and run.train.batch_size * self.info.world_size < SMALL_BATCH:
            self._say(
                f"fine-tuning at a batch of {run.train.batch_size * self.info.world_size}: batch norm will normalise "
                "with these small batches' own statistics, unlike those the weights were trained with, which can "
                "cost more than training wins; consider freeze_batch_norm: true under train_params"
            )

        params = run.train
        if options.data_dir is not None:
            # Recorded in the run's config.yaml, so that --resume finds the same data.
            data_dir = str(Path(options.data_dir).resolve())  # absolute: --resume may run from elsewhere
            self.run = run = dataclasses.replace(run, dataset=dataclasses.replace(run.dataset, root_dir=data_dir))
        with _data_warnings_from_the_main_process_only(self.info.is_main):  # every process probes the same videos
            frames = FramesDataset(run.dataset, is_train=True, random_seed=self.seed)
        self.dataset = DatasetRepeater(frames, params.num_repeats)
        self.sampler = distributed.ResumableSampler(
            len(self.dataset), seed=self.seed, rank=self.info.rank, world_size=self.info.world_size
        )
        self.steps_per_epoch = self.sampler.per_process() // params.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"batch_size {params.batch_size} is larger than the {self.sampler.per_process()} training items "
                f"per process (dataset of {len(self.dataset)} items with num_repeats); lower batch_size"
            )
        betas = (0.5, 0.999)
        self.optimizers = {
            "generator": torch.optim.Adam(self.model.generator.parameters(), lr=params.lr_generator, betas=betas),
            "kp_detector": torch.optim.Adam(self.model.kp_detector.parameters(), lr=params.lr_kp_detector, betas=betas),
            "discriminator": torch.optim.Adam(self.model.discriminator.parameters(), lr=params.lr_discriminator, betas=betas),
        }
        vgg = self._perceptual_network()
        generator_objective = GeneratorObjective(
            self.model.kp_detector, self.model.generator, self.model.discriminator, params, vgg
        ).to(self.info.device)
        discriminator_objective = DiscriminatorObjective(
            self.model.discriminator, params, run.model.num_channels
        ).to(self.info.device)
        if self.info.distributed:
            # The discriminator is trained by its own objective; its gradients from the
            # generator loss are discarded (as in the original), so the generator's
            # wrapper must not synchronise them.
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                generator_objective,
                [f"discriminator.{name}" for name, _ in self.model.discriminator.named_parameters()]
                + [f"discriminator.{name}" for name, _ in self.model.discriminator.named_buffers()],
            )
            ids = [self.info.device.index] if self.info.device.type == "cuda" else None
            generator_objective = _data_parallel(generator_objective, ids)
            discriminator_objective = _data_parallel(discriminator_objective, ids)
        self.generator_objective: nn.Module = generator_objective
        self.discriminator_objective: nn.Module = discriminator_objective

        if resumed is not None:
            self._resume(resumed)
        # Without the GAN loss the discriminator's optimizer never steps (it is kept for the
        # original checkpoint layout), so it gets no scheduler either.
        self.schedulers = {
            name: _multistep_at(optimizer, params.epoch_milestones, self.epoch)
            for name, optimizer in self.optimizers.items()
            if name != "discriminator" or self.uses_gan
        }
        self._seed_rngs()

    # ------------------------------------------------------------------ setup helpers
    def _perceptual_network(self) -> Vgg19Features | None:
        if not sum(self.run.train.loss_weights.perceptual):
            return None
        if self.options.vgg_weights is None:
            self._say(
                "no VGG19 weights given (--vgg): the perceptual loss falls back to an L1 loss on the "
                "image pyramid's pixels. Training works but results are blurrier, and this loss is so much "
                "smaller that the equivariance weights count some 60x more than in the original, which "
                "pulls the keypoints together (kp_spread falls; equivariance weights near 0.2 restore the "
                "balance). Pass torchvision's ImageNet vgg19 weights (vgg19-dcbb9e9d.pth) or a safetensors "
                "copy for the original loss."
            )
            return None
        return Vgg19Features.from_file(self.options.vgg_weights).to(self.info.device)

    def _load_pretrained(self, path: Path) -> None:
        """Fine-tune: generator and keypoint detector must fit; the discriminator if it does."""
        checkpoint = read_checkpoint(path)
        for name in ("generator", "kp_detector"):
            try:
                getattr(self.model, name).load_state_dict(checkpoint.state_dicts[name])
            except RuntimeError as exc:
                raise ValueError(f"{path}: its {name} does not fit the config: {_load_problems(exc)}") from None
        try:
            self.model.discriminator.load_state_dict(checkpoint.state_dicts["discriminator"])  # type: ignore[union-attr]
            self.has_trained_discriminator = True
        except (KeyError, RuntimeError):
            if self.uses_gan:  # else it is never used
                self._say(f"{path} has no discriminator matching the config: it starts from random weights")

    def _seed_rngs(self) -> None:
        if self.options.resume and self._restored_rng:
            return
        seed = self.seed * 1000 + self.info.rank
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)

    _restored_rng = False

    def _read_resume_checkpoint(self) -> dict[str, Any]:
        path = self.out_dir / CHECKPOINT_NAME
        if not path.is_file():
            raise ValueError(no_run_to_resume(self.out_dir))
        data = load_torch_mapping(path)
        if STATE_KEY not in data:
            raise CheckpointError(
                f"{path}: weights without a training state (from fomm convert, or another tool), which --resume cannot "
                "continue: start a new run from them with --checkpoint and another --out"
            )
        return dict(data)

    def _choose_seed(self, resumed: dict[str, Any] | None) -> int:
        """The seed decides the initial weights, the data order and every random draw, so a
        resumed run must keep its own (stored in the checkpoint; a checkpoint saved before it
        was stored takes --seed, default 0)."""
        given = 0 if self.options.seed is None else self.options.seed
        if resumed is None:
            return given
        stored = resumed[STATE_KEY].get("seed")
        if stored is None:
            self._say(f"the checkpoint does not record its seed; continuing with {given} (pass the --seed it trained with)")
            return given
        if self.options.seed is not None and self.options.seed != stored:
            raise ValueError(
                f"{self.out_dir} was trained with --seed {stored}; resume it with that seed or without --seed"
            )
        return stored

    def _resume(self, data: dict[str, Any]) -> None:
        path = self.out_dir / CHECKPOINT_NAME
        for name in ("generator", "kp_detector", "discriminator"):
            try:
                getattr(self.model, name).load_state_dict(data[name])
            except RuntimeError as exc:
                raise ValueError(
                    f"{path}: the run's {name} does not fit the config given ({_load_problems(exc)}); "
                    "resume without --config to use the run's own config.yaml"
                ) from None
        self.model.to(self.info.device)
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(data[f"optimizer_{name}"])
        state = data[STATE_KEY]
        self.step, self.epoch, self.epoch_items = state["step"], state["epoch"], state["epoch_items"]
        self.saved_step = self.step
        self.trained_seconds = float(state.get("seconds", 0.0))
        self.has_trained_discriminator = self.uses_gan or bool(state.get("has_trained_discriminator", False))
        if self.max_steps is None and state.get("max_steps") is not None:
            self.max_steps = int(state["max_steps"])
            self._say(
                f"continuing to step {self.max_steps}, the run's --max-steps (give --max-steps to change it; "
                f"its schedule ends at step {self._planned_steps()})"
            )
        rng = state.get("rng", [])
        if state.get("world_size") == self.info.world_size and len(rng) == self.info.world_size:
            torch.set_rng_state(rng[self.info.rank])
            self._restored_rng = True
        elif state.get("world_size") != self.info.world_size:
            self._say(
                f"resuming with {self.info.world_size} processes instead of {state.get('world_size')}: "
                "the data order of the current epoch restarts"
            )
            self.epoch_items = 0
        self._say(f"resumed {path} at step {self.step} (epoch {self.epoch})")
        if self.info.is_main:
            self._remove_stale_partials()

    def _remove_stale_partials(self) -> None:
        """A run killed while writing (SIGKILL, power loss) leaves its temporary file beside the
        intact previous checkpoint; the resumed run owns the folder, so it clears them."""
        stale = [p for name in (CHECKPOINT_NAME, MODEL_NAME) for p in leftover_temporaries(self.out_dir / name)]
        for partial in stale:
            partial.unlink(missing_ok=True)
        if stale:
            self._say(f"removed {len(stale)} half-written file(s) of the interrupted run: {', '.join(p.name for p in stale)}")

    def _say(self, message: str) -> None:
        if self.info.is_main:
            print(f"fomm train: {message}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ loop
    def _planned_steps(self) -> int:
        return self.run.train.num_epochs * self.steps_per_epoch

    def total_steps(self) -> int:
        planned = self._planned_steps()
        return min(planned, self.max_steps) if self.max_steps else planned

    def train(self) -> TrainingResult:
        if self.step >= self.total_steps():
            return self._nothing_to_train()
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.yaml").write_text(yaml.safe_dump(self.run.to_mapping(), sort_keys=False))
            self._trim_log()
        params = self.run.train
        total = self.total_steps()
        progress = tqdm(
            total=total, initial=self.step, disable=not (self.options.progress and self.info.is_main),
            unit="step", dynamic_ncols=True, desc="train",
        )
        last: dict[str, float] = {}
        started, first_step = time.monotonic() - self.trained_seconds, self.step
        self._clock_start = started
        stop = _StopAtStepEnd(announce=self.info.is_main)
        try:
            while self.epoch < params.num_epochs and self.step < total:
                self.sampler.set_position(self.epoch, self.epoch_items)
                self.dataset.set_epoch(self.epoch)  # item randomness depends on (seed, epoch, index)
                loader = DataLoader(
                    self.dataset, batch_size=params.batch_size, sampler=self.sampler, drop_last=True,
                    num_workers=self.options.num_workers,
                    # Its own generator: creating a loader mid-epoch (after a resume) must not
                    # shift the global random stream the equivariance transforms draw from.
                    generator=torch.Generator().manual_seed(self.seed + self.epoch),
                    persistent_workers=False, pin_memory=self.info.device.type == "cuda",
                    worker_init_fn=_ignore_interrupts,
                )
                for batch in loader:
                    last = self._train_step(batch)
                    self.step += 1
                    self.epoch_items += params.batch_size
                    progress.update(1)
                    progress.set_postfix({k: f"{v:.3f}" for k, v in last.items() if k != "total"}, refresh=False)
                    if self.step % self.options.log_every == 0 or self.step == total:
                        self._log(last, (time.monotonic() - started))
                    if self.info.is_main and self.options.vis_every and self.step % self.options.vis_every == 0:
                        self._visualise(batch)
                    if self.step % self.options.save_every == 0:
                        self.save()
                    if self.step >= total:
                        break
                    if distributed.any_process(stop.requested):
                        raise _Stopped
                else:
                    self._end_epoch()
                    continue
                break
        except _Stopped:
            try:
                self.save()
            except KeyboardInterrupt:  # the second interrupt came while saving: that save is abandoned
                self._say_unsaved()
                raise
            self._say(f"interrupted at step {self.step}; continue with --resume")
            raise KeyboardInterrupt from None
        except KeyboardInterrupt:
            self._say_unsaved()
            raise
        finally:
            stop.close()
            progress.close()
        self.save()
        model_path = self.export() if self.info.is_main else None
        distributed.barrier()
        return TrainingResult(self.step, self.epoch, self.out_dir / CHECKPOINT_NAME, model_path, last, self.step - first_step)

    def _nothing_to_train(self) -> TrainingResult:
        """A resumed run already at its end is left as it is; only a model file that is not of
        this step (a crash came between the last save and the export) is written again."""
        limit = self.max_steps
        if limit is not None and self.step >= limit:
            reason = (
                f"at step {self.step}, {'past' if self.step > limit else 'at'} --max-steps {limit}: raise it to train on "
                f"(to {self._planned_steps()} or more for the whole schedule)"
            )
        else:
            reason = f"at step {self.step}, the end of its schedule ({self.run.train.num_epochs} epochs)"
        model_path = self.out_dir / MODEL_NAME
        if self.info.is_main and _exported_step(model_path) != self.step:
            self.export()
            self._say(f"{self.out_dir} is already {reason}; nothing to train, only {MODEL_NAME} was written again (it was not of this step)")
        else:
            self._say(f"{self.out_dir} is already {reason}; nothing to train, its files are left as they are")
        distributed.barrier()
        return TrainingResult(self.step, self.epoch, self.out_dir / CHECKPOINT_NAME, model_path if self.info.is_main else None, {}, 0)

    def _say_unsaved(self) -> None:
        """What a stop without saving cost, said in the terms --resume works in."""
        when = "mid-step" if self._saving_step is None else f"while saving step {self._saving_step}"
        if self.saved_step is None:
            self._say(f"stopped at once {when}, before any checkpoint was saved: there is nothing to resume")
        else:
            self._say(
                f"stopped at once {when}: the steps after {self.saved_step} are lost; --resume continues "
                f"from the checkpoint of step {self.saved_step}"
            )

    def _end_epoch(self) -> None:
        self.epoch += 1
        self.epoch_items = 0
        for scheduler in self.schedulers.values():
            scheduler.step()

    def _train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        device = self.info.device
        source = batch["source"].to(device, non_blocking=True)
        driving = batch["driving"].to(device, non_blocking=True)
        losses, generated = self.generator_objective(source, driving)
        loss = sum(value.mean() for value in losses.values())
        loss.backward()
        self.optimizers["generator"].step()
        self.optimizers["generator"].zero_grad(set_to_none=True)
        self.optimizers["kp_detector"].step()
        self.optimizers["kp_detector"].zero_grad(set_to_none=True)
        if self.uses_gan:
            self.optimizers["discriminator"].zero_grad(set_to_none=True)
            disc_losses = self.discriminator_objective(driving, generated["prediction"], generated["kp_driving"])
            sum(value.mean() for value in disc_losses.values()).backward()
            self.optimizers["discriminator"].step()
            self.optimizers["discriminator"].zero_grad(set_to_none=True)
            losses.update(disc_losses)
        self._last_generated = generated
        values = {name: value.mean().item() for name, value in losses.items()}
        values["total"] = float(loss.item())
        values["kp_spread"] = generated["kp_driving"].spread().mean().item()
        for name, value in values.items():
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"loss {name} became {value} at step {self.step}; lower the learning rates or check the data"
                )
        return values

    # ------------------------------------------------------------------ outputs
    def save(self) -> Path:
        """Atomically write the resumable checkpoint (original layout + loop position)."""
        path = self.out_dir / CHECKPOINT_NAME
        self._saving_step = self.step
        rng = [torch.get_rng_state()]
        if self.info.distributed:
            gathered: list[Any] = [None] * self.info.world_size
            torch.distributed.all_gather_object(gathered, torch.get_rng_state())
            rng = gathered
        if self.info.is_main:
            payload = {
                "generator": _unwrapped_state(self.model.generator),
                "kp_detector": _unwrapped_state(self.model.kp_detector),
                "discriminator": _unwrapped_state(self.model.discriminator),
                **{f"optimizer_{name}": opt.state_dict() for name, opt in self.optimizers.items()},
                "epoch": self.epoch,
                CONFIG_KEY: self.trained_config().to_json(),
                TRAINING_CONFIG_KEY: json.dumps(self.run.to_mapping()),
                STATE_KEY: {
                    "step": self.step,
                    "epoch": self.epoch,
                    "epoch_items": self.epoch_items,
                    "world_size": self.info.world_size,
                    "seed": self.seed,
                    "max_steps": self.max_steps,
                    "has_trained_discriminator": self.has_trained_discriminator,
                    "seconds": self.trained_seconds if self._clock_start is None else time.monotonic() - self._clock_start,
                    "rng": rng,
                },
            }
            with atomic_path(path) as tmp:
                torch.save(payload, tmp)
        distributed.barrier()
        self.saved_step, self._saving_step = self.step, None
        return path

    def trained_config(self) -> ModelConfig:
        """The model's config with the frame size it is trained at."""
        return self.run.model.replace(frame_shape=tuple(self.run.dataset.frame_shape[:2]))

    def export(self) -> Path:
        """The trained networks as safetensors with the config (and trained frame size); the
        discriminator only where it holds trained weights (a random one means nothing: the
        resumable checkpoint keeps it, the model file would carry it as if trained). One
        trained before and not since (a GAN-less fine-tune of vox-adv) stays, for a later GAN
        fine-tune to start from."""
        path = self.out_dir / MODEL_NAME
        trained = self.has_trained_discriminator
        networks = ("kp_detector", "generator", "discriminator") if trained else ("kp_detector", "generator")
        config = self.trained_config()
        write_safetensors(
            path,
            {name: _unwrapped_state(getattr(self.model, name)) for name in networks},
            config if trained else config.replace(discriminator=None),
            {"training_steps": str(self.step), "seed": str(self.seed), TRAINING_CONFIG_KEY: json.dumps(self.run.to_mapping())},
        )
        return path

    def _log(self, values: dict[str, float], elapsed: float) -> None:
        values = distributed.mean_across_processes(values)
        if not self.info.is_main:
            return
        path = self.out_dir / LOG_NAME
        rate = float(f"{self.optimizers['generator'].param_groups[0]['lr']:.6g}")  # 2e-06, not 2.0000000000000003e-06
        row = {"step": self.step, "epoch": self.epoch, "lr_generator": rate,
               "seconds": round(elapsed, 1), **{k: round(v, 6) for k, v in values.items()}}
        new = not path.exists()
        fieldnames = list(row)
        if not new:  # keep the log's own columns: a run resumed by another version may log others
            with path.open(newline="") as handle:
                fieldnames = next(csv.reader(handle), None) or fieldnames
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fieldnames, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _trim_log(self) -> None:
        """After a resume, drop log rows written after the checkpoint (they will be redone)."""
        path = self.out_dir / LOG_NAME
        if not path.exists():
            return
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        kept = [row for row in rows if int(row["step"]) <= self.step]
        if len(kept) != len(rows) and rows:
            with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(kept)

    def _visualise(self, batch: dict[str, Any]) -> None:
        generated = self._last_generated
        image = training_visualisation(batch["source"], batch["driving"], generated)
        folder = self.out_dir / "train-vis"
        folder.mkdir(exist_ok=True)
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        with atomic_path(folder / f"step-{self.step:08d}.png") as tmp:
            Image.fromarray(pixels).save(tmp, format="PNG")


def training_visualisation(source: Tensor, driving: Tensor, generated: dict[str, Any], rows: int = 4) -> Tensor:
    """The original training picture: source, transformed, driving (with keypoints),
    deformed source, prediction, occlusion and the per-keypoint masks, one row per sample."""
    n = min(rows, source.shape[0])
    size = tuple(source.shape[-2:])
    cpu = {k: (v.detach().cpu()[:n] if isinstance(v, Tensor) else v) for k, v in generated.items()}
    columns = [draw_keypoints(source[:n].cpu(), generated["kp_source"].detach().to("cpu")[:n])]
    if "transformed_frame" in generated:
        columns.append(draw_keypoints(cpu["transformed_frame"], generated["transformed_kp"].detach().to("cpu")[:n]))
    columns += [draw_keypoints(driving[:n].cpu(), generated["kp_driving"].detach().to("cpu")[:n]), cpu["deformed"], cpu["prediction"]]
    if "occlusion_map" in cpu:
        columns.append(gray_to_rgb(cpu["occlusion_map"], size))
    columns.append(masks_to_color(cpu["mask"], size))
    grid = side_by_side(columns)
    return torch.cat(list(grid), dim=-2)


def no_run_to_resume(out_dir: Path) -> str:
    return f"--resume: no run to resume in {out_dir} (no {CHECKPOINT_NAME}); start it without --resume"


def _data_parallel(module: nn.Module, device_ids: list[int] | None) -> DistributedDataParallel:
    """DDP without a buffer broadcast before every forward pass: batch norm statistics are
    synchronised by the layer itself, and the processes start from the same buffers (one
    seed, or one checkpoint). torch 2.13 renamed the switch."""
    parameters = inspect.signature(DistributedDataParallel).parameters
    no_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in parameters else {"broadcast_buffers": False}
    return DistributedDataParallel(module, device_ids=device_ids, **no_sync)


@contextlib.contextmanager
def _data_warnings_from_the_main_process_only(is_main: bool) -> Iterator[None]:
    """Every process reads the dataset folder; its warnings (files skipped, frames resized)
    are said once."""
    logger = logging.getLogger(FramesDataset.__module__)
    level = logger.level
    if not is_main:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _load_problems(error: RuntimeError) -> str:
    """The first problems of a failed ``load_state_dict`` (its first line only names the network)."""
    lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
    shown = "; ".join(line if len(line) <= 200 else line[:197] + "..." for line in lines[:2])
    return (shown or str(error)) + (f"; and {len(lines) - 2} more" if len(lines) > 2 else "")


class _Stopped(Exception):
    """Raised between steps after Ctrl-C or SIGTERM, so the checkpoint holds whole steps."""


class _StopAtStepEnd:
    """Ctrl-C and SIGTERM during training ask it to stop after the current step.

    An interrupt in the middle of a step would save a state no uninterrupted run passes
    through (batch-norm statistics of a half-done forward pass, a random stream drawn
    from), and the resumed run would no longer match. A second interrupt stops at once,
    without saving. Handlers can only be installed from the main thread; elsewhere an
    interrupt stops at once, as before.
    """

    def __init__(self, announce: bool) -> None:
        self.requested = False
        self.announce = announce
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._ask) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _ask(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.announce:
            print("\nfomm train: stopping after this step (interrupt again to stop at once, unsaved)", file=sys.stderr, flush=True)

    def close(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _exported_step(path: Path) -> int | None:
    """The training step a run's model file was exported at, if it is there and readable."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return int((handle.metadata() or {}).get("training_steps", -1))
    except (OSError, ValueError, SafetensorError):
        return None


def _freeze_batch_norm(model: nn.Module) -> None:
    """Batch-norm layers normalise with their running statistics and keep them (their scale
    and shift still train): ``train_params.freeze_batch_norm``."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _ignore_interrupts(worker_id: int) -> None:
    """Data loading workers leave interrupts to the training process (a terminal's Ctrl-C
    reaches them too): they must still deliver the batch of the step being finished."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _multistep_at(optimizer: torch.optim.Optimizer, milestones: tuple[int, ...], epoch: int) -> MultiStepLR:
    """The original MultiStepLR (gamma 0.1, stepped per epoch), positioned at ``epoch``.

    Learning rates are set from the base rates, not from a resumed optimizer's current ones,
    so a run resumed right after a milestone is not decayed twice.
    """
    scheduler = MultiStepLR(optimizer, list(milestones), gamma=0.1)
    decay = 0.1 ** bisect.bisect_right(sorted(milestones), epoch)
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * decay
    scheduler.last_epoch = epoch
    # torch warns when a new scheduler steps before its optimizer has; a run resumed at the
    # very end of an epoch does exactly that, rightly (the optimizer stepped before the kill).
    scheduler._step_count = max(scheduler._step_count, 2)
    return scheduler


def _unwrapped_state(module: nn.Module | None) -> dict[str, Tensor]:
    """A plain state dict with ``nn.BatchNorm2d`` keys (SyncBatchNorm2d shares them)."""
    assert module is not None
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}
