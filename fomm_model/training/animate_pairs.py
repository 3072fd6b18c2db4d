"""Animation evaluation (the original ``run.py --mode animate``).

Pairs of test videos are chosen (a seeded random draw, or the config's ``pairs_list``) and
the first frame of each pair's source video is animated with the whole driving video, with
the config's ``animate_params.normalization_params`` (relative motion in the presets). No
ground truth exists for a transfer between two videos, so the result is pictures to look
at, written like the original's: ``png/<driving>-<source>.png``, the predicted frames (the
first 32) side by side, and ``<driving>-<source><format>``, the visualisation video
(source and driving with keypoints, deformed source, occlusion, prediction).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..model import FirstOrderModel
from ..pipeline import MotionOptions, animate_batches
from ..video import MediaError, VideoWriter
from ..visualize import visualize_generation
from .config import NormalizationParams
from .data import PairedDataset
from .reconstruct import write_strip


@dataclass(frozen=True)
class AnimatedPair:
    driving: str
    source: str
    frames: int
    strip: Path
    video: Path


def animate_pairs(
    model: FirstOrderModel,
    pairs: PairedDataset,
    out_dir: Path,
    normalization: NormalizationParams = NormalizationParams(),
    *,
    video_format: str = ".mp4",
    fps: float = 25.0,
    batch_size: int = 16,
    on_pair: Callable[[AnimatedPair], None] | None = None,
    on_skip: Callable[[str], None] | None = None,
) -> list[AnimatedPair]:
    """Animate every pair of ``pairs`` and write its strip and visualisation under ``out_dir``.

    A pair whose videos cannot be read whole is left out (``on_skip`` gets the reason), so one
    damaged file does not stop the evaluation; none readable at all is an error."""
    motion = MotionOptions(
        relative=normalization.use_relative_movement,
        relative_jacobian=normalization.use_relative_jacobian,
        adapt_scale=normalization.adapt_movement_scale,
    )
    done, skipped = [], []
    for index in range(len(pairs)):
        try:
            item = pairs[index]
        except (MediaError, OSError) as exc:
            skipped.append(str(exc))
            if on_skip is not None:
                on_skip(str(exc))
            continue
        source = item["source_video"][:, 0][None]  # (1, 3, H, W): the source video's first frame
        driving = item["driving_video"].permute(1, 0, 2, 3)  # (T, 3, H, W)
        stem = pairs.initial_dataset.output_stem
        name = f"{stem(item['driving_name'])}-{stem(item['source_name'])}"
        video = out_dir / f"{name}{video_format}"
        predictions = []
        with VideoWriter(video, fps) as writer:
            for batch in animate_batches(model, source, driving, motion, batch_size=batch_size, with_deformed=True):
                predictions.append(batch.prediction.float().cpu())
                shown = visualize_generation(batch.source, batch.driving, batch.kp_source, batch.kp_driving, batch.outputs)
                writer.write(shown.float().cpu())
        strip = out_dir / "png" / f"{name}.png"
        write_strip(strip, torch.cat(predictions))
        pair = AnimatedPair(item["driving_name"], item["source_name"], len(driving), strip, video)
        done.append(pair)
        if on_pair is not None:
            on_pair(pair)
    if skipped and not done:
        raise MediaError(f"none of the {len(skipped)} pairs could be read whole; the first: {skipped[0]}")
    return done
