"""How close full-resolution rendering comes to the real frames, by blend weight.

    python bench/full_resolution_l1.py                      # default model, data/synthetic-heldout
    python bench/full_resolution_l1.py --checkpoint C --data DIR --num-videos 10

Reconstruction as in ``fomm reconstruct`` (each test video from its first frame, absolute
keypoints), at the model's size, scored four ways: the generated frame; the source warped
by the flow alone; the full-resolution blend by the raw weight; and the blend by the weight
relative to the source's at rest (:func:`fomm_model.footage.relative_visibility`, what
``--full-resolution`` uses). The weight is the occlusion map, or for a model whose generator
blends the warped source itself (``blend_warped_source``, as the embedded default) its
source weight, mixing the warped source with the decoded frame, which is then scored alone
too (the raw blend is then the generated frame itself). Prints the mean L1 of each and its
ratio to the no-motion baseline. Make the held-out data with
``fomm make-synthetic data/synthetic-heldout --num-videos 41 --test-videos 40 --seed 1``.
"""

from __future__ import annotations

import torch
from heldout import model_and_videos

from fomm_model.footage import blend_inputs, render_full_resolution, rest_weight


def main() -> None:
    args, model, videos, count = model_and_videos(__doc__.split("\n\n")[0])
    if not (model.config.generator.estimate_occlusion_map or model.generator.blends_source):
        raise SystemExit("this model has no occlusion map: its full-resolution output is the warped source alone")
    blends = model.generator.blends_source
    ways = ("generated", *(("decoded alone",) if blends else ()), "warped source", "raw weight blend",
            "relative weight blend", "no motion")
    totals, frames = dict.fromkeys(ways, 0.0), 0
    with torch.no_grad():
        for index in range(count):
            video = videos[index]["video"].permute(1, 0, 2, 3).contiguous()
            source = video[:1]
            kp_source = model.detect_keypoints(source)
            rest = rest_weight(model, source, kp_source)
            for chunk in video.split(16):
                out = model.generate(source, kp_source, model.detect_keypoints(chunk))
                still = source.expand(len(chunk), -1, -1, -1)
                picture, weight = blend_inputs(out)
                blend = (still, picture, out["deformation"])
                results = {
                    "generated": out["prediction"],
                    **({"decoded alone": picture} if blends else {}),
                    "warped source": render_full_resolution(*blend, None, model.align_corners),
                    "raw weight blend": render_full_resolution(*blend, weight, model.align_corners),
                    "relative weight blend": render_full_resolution(*blend, weight, model.align_corners, rest),
                    "no motion": still,
                }
                for way, result in results.items():
                    totals[way] += (result.float() - chunk).abs().mean(dim=(1, 2, 3)).sum().item()
                frames += len(chunk)
    baseline = totals["no motion"]
    print(f"{args.checkpoint}: {frames} frames of {count} videos from {args.data}")
    for way in ways:
        print(f"  {way:26s} L1 {totals[way] / frames:.5f}  ratio {totals[way] / baseline:.3f}")


if __name__ == "__main__":
    main()
