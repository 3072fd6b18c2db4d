"""Where a model's reconstruction error comes from, on test videos (the default model's figures in README).

    python bench/reconstruction_errors.py                      # default model, data/synthetic-heldout
    python bench/reconstruction_errors.py --checkpoint C --data DIR --num-videos 10

Reconstruction as in ``fomm reconstruct`` (each test video from its first frame, absolute
keypoints), its L1 split between the pixels that never change in a video (the static
background, which the no-motion baseline gets exactly) and those that do at some frame (the
object and what it uncovers), each as its share of the overall L1. Two figures show what the
generator costs with no motion at all: the L1 of each video's first frame animated with its
own keypoints, and the mean occlusion map there (1 would mean the source is used as it is
everywhere; below 1, the generator paints), and for a generator that blends the warped
source the mean of its source weight there. Make the held-out data with
``fomm make-synthetic data/synthetic-heldout --num-videos 41 --test-videos 40 --seed 1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from heldout import model_and_videos

from fomm_model.geometry import upsample
from fomm_model.training.reconstruct import reconstruct_video

# A pixel "moves" when some frame differs from the first by more than this (of 1) in a channel:
# two 8-bit levels, above the PNG frames' rounding.
MOVING = 2 / 255


def main() -> None:
    args, model, videos, count = model_and_videos(__doc__.split("\n\n")[0])
    sums = {"static": torch.zeros(3, dtype=torch.float64), "moving": torch.zeros(3, dtype=torch.float64)}
    identity = torch.zeros(2, dtype=torch.float64)  # first frames' L1 on static, on moving pixels
    blurred = torch.zeros(2, dtype=torch.float64)  # the same for a 5x5 box blur of the first frame
    occlusion = torch.zeros(3, dtype=torch.float64)  # rest occlusion's mean: over the frame, static, moving
    weight = torch.zeros(3, dtype=torch.float64)  # the same for the generator's source weight
    with torch.no_grad():
        for index in range(count):
            video = videos[index]["video"].permute(1, 0, 2, 3).contiguous()  # (T, 3, H, W)
            source = video[:1]
            prediction, _ = reconstruct_video(model, video)
            moving = (video - source).abs().amax(dim=(0, 1)) > MOVING  # (H, W)
            error = (prediction - video).abs().mean(dim=1)  # (T, H, W)
            still = (source - video).abs().mean(dim=1)
            for region, mask in (("static", ~moving), ("moving", moving)):
                sums[region] += torch.tensor([error[:, mask].sum(), still[:, mask].sum(), mask.sum() * len(video)])
            kp_source = model.detect_keypoints(source)
            itself = model.generate(source, kp_source, kp_source)  # its occlusion map is the rest one
            wrong = (itself["prediction"].float() - source).abs().mean(dim=1)[0]
            identity += torch.stack([wrong[~moving].sum(), wrong[moving].sum()]) / moving.numel() / count
            box = F.avg_pool2d(F.pad(source, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
            lost = (box - source).abs().mean(dim=1)[0]
            blurred += torch.stack([lost[~moving].sum(), lost[moving].sum()]) / moving.numel() / count
            rest = itself.get("occlusion_map")
            if rest is not None:
                rest = upsample(rest, tuple(source.shape[2:]), model.align_corners)[0, 0]
                occlusion += torch.stack([rest.mean(), rest[~moving].mean(), rest[moving].mean()]) / count
            if "source_weight" in itself:
                kept = itself["source_weight"][0, 0]
                weight += torch.stack([kept.mean(), kept[~moving].mean(), kept[moving].mean()]) / count
    pixels = sum(total[2] for total in sums.values()).item()
    overall = sum(total[0] for total in sums.values()).item() / pixels
    baseline = sum(total[1] for total in sums.values()).item() / pixels
    print(f"{args.checkpoint}: {count} videos from {args.data}")
    print(f"  reconstruction L1 {overall:.5f}, no-motion {baseline:.5f}, ratio {overall / baseline:.3f}")
    for region, (error, still, size) in sums.items():
        print(
            f"  {region:6s} pixels {size / pixels:6.1%}: adds L1 {error / pixels:.5f} of it"
            f" (no-motion {still / pixels:.5f}); mean error there {error / size:.4f}"
        )
    print(
        f"  first frame animated with its own keypoints: L1 {identity.sum():.4f}"
        f" (static pixels add {identity[0]:.4f}, moving {identity[1]:.4f})"
    )
    print(
        f"  a 5x5 box blur of it instead: L1 {blurred.sum():.4f}"
        f" (static {blurred[0]:.4f}, moving {blurred[1]:.4f}: where the fine detail is)"
    )
    if model.config.generator.estimate_occlusion_map:
        print(
            f"  its occlusion map (at rest): mean {occlusion[0]:.3f} over the frame,"
            f" {occlusion[1]:.3f} on static pixels, {occlusion[2]:.3f} on moving ones"
        )
    if model.generator.blends_source:
        print(
            f"  its generator's source weight (at rest): mean {weight[0]:.3f} over the frame,"
            f" {weight[1]:.3f} on static pixels, {weight[2]:.3f} on moving ones"
        )


if __name__ == "__main__":
    main()
