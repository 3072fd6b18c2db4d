"""Reconstruction evaluation (the original ``run.py --mode reconstruction``).

Each test video is reconstructed from its first frame with the keypoints of every frame in
absolute mode; the score is the mean L1 between predicted and real frames. The no-motion
baseline (predicting the first frame everywhere) is reported next to it, because a score
only means something relative to how much the video moves. The keypoint spread
is reported too: keypoints that collapsed together score well on easy motion but model
each part badly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..checkpoint import atomic_path
from ..model import FirstOrderModel
from ..video import MediaError


@dataclass
class VideoScore:
    name: str
    frames: int
    l1: float
    no_motion_l1: float
    kp_spread: float  # mean Keypoints.spread over the video's frames


@dataclass(frozen=True)
class SkippedVideo:
    name: str
    reason: str


@dataclass
class ReconstructionReport:
    videos: list[VideoScore] = field(default_factory=list)
    skipped: list[SkippedVideo] = field(default_factory=list)  # unreadable: not in any figure

    @property
    def frames(self) -> int:
        return sum(v.frames for v in self.videos)

    @property
    def l1(self) -> float:
        """Mean over all frames of all videos (the original's figure)."""
        return sum(v.l1 * v.frames for v in self.videos) / max(self.frames, 1)

    @property
    def no_motion_l1(self) -> float:
        return sum(v.no_motion_l1 * v.frames for v in self.videos) / max(self.frames, 1)

    @property
    def kp_spread(self) -> float:
        return sum(v.kp_spread * v.frames for v in self.videos) / max(self.frames, 1)

    @property
    def ratio(self) -> float:
        """Reconstruction L1 relative to the no-motion baseline (lower is better; 1 = no better)."""
        return self.l1 / self.no_motion_l1 if self.no_motion_l1 > 0 else float("nan")

    def to_json(self) -> str:
        return json.dumps(
            {
                "l1": self.l1,
                "no_motion_l1": self.no_motion_l1,
                "ratio_to_no_motion": self.ratio,
                "kp_spread": self.kp_spread,
                "frames": self.frames,
                "videos": [asdict(v) for v in self.videos],
                "skipped": [asdict(v) for v in self.skipped],
            },
            indent=2,
        )


@torch.no_grad()
def reconstruct_video(
    model: FirstOrderModel, video: torch.Tensor, batch_size: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruct (T, 3, H, W) frames from frame 0 with absolute keypoints.

    Returns the predicted frames and each frame's keypoint spread (T,).
    """
    source = video[:1]
    kp_source = model.detect_keypoints(source)
    outputs, spreads = [], []
    for start in range(0, video.shape[0], batch_size):
        chunk = video[start : start + batch_size]
        kp_driving = model.detect_keypoints(chunk)
        outputs.append(model.generate(source, kp_source, kp_driving)["prediction"].float().cpu())
        spreads.append(kp_driving.spread().float().cpu())
    return torch.cat(outputs), torch.cat(spreads)


def evaluate_reconstruction(
    model: FirstOrderModel,
    videos,
    num_videos: int | None = None,
    out_dir: Path | None = None,
    batch_size: int = 16,
    on_video: Callable[[VideoScore], None] | None = None,
    on_skip: Callable[[SkippedVideo], None] | None = None,
) -> ReconstructionReport:
    """Score ``videos`` (items ``{"video": (3, T, H, W), "name"}``, e.g. a test FramesDataset).

    A video that cannot be read whole (a damaged frame past the first, which is all a dataset
    probes) is left out of the figures and listed in ``report.skipped``, so one bad file does
    not cost the whole evaluation."""
    # videos a dataset could not open at all: reported when it was made, listed here too
    report = ReconstructionReport(skipped=[SkippedVideo(*entry) for entry in getattr(videos, "unreadable", [])])
    names = getattr(videos, "names", None)
    for index in range(len(videos)):
        if num_videos is not None and len(report.videos) >= num_videos:  # videos scored: a skipped one frees its slot
            break
        try:
            item = videos[index]
        except (MediaError, OSError) as exc:
            skipped = SkippedVideo(names[index] if names else str(index), str(exc))
            report.skipped.append(skipped)
            if on_skip:
                on_skip(skipped)
            continue
        video = item["video"].permute(1, 0, 2, 3).contiguous()  # (T, 3, H, W)
        prediction, spread = reconstruct_video(model, video, batch_size)
        per_frame = (prediction - video).abs().mean(dim=(1, 2, 3))
        still = (video - video[:1]).abs().mean(dim=(1, 2, 3))
        score = VideoScore(
            item["name"], video.shape[0], per_frame.mean().item(), still.mean().item(), spread.mean().item()
        )
        report.videos.append(score)
        if on_video:
            on_video(score)
        if out_dir is not None:
            stem = videos.output_stem(item["name"]) if hasattr(videos, "output_stem") else Path(item["name"]).stem
            write_strip(Path(out_dir) / "png" / f"{stem}.png", prediction)
    if report.skipped and not report.videos:
        raise MediaError(f"none of the {len(report.skipped)} test videos could be read whole; the first: {report.skipped[0].reason}")
    if out_dir is not None:
        with atomic_path(Path(out_dir) / "report.json") as tmp:
            tmp.write_text(report.to_json())
    return report


def write_strip(path: Path, frames: torch.Tensor, max_frames: int = 32) -> None:
    """The original's PNG strip: predicted frames side by side."""
    strip = torch.cat(list(frames[:max_frames]), dim=-1)
    pixels = (strip.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
