"""The reconstruction score on the test videos of several unseen seeds, each and pooled.

    python bench/unseen_seeds.py                                  # default model, seeds 1 to 5
    python bench/unseen_seeds.py --checkpoint C --seeds 2 3

One seed's videos score the model on one draw of puppets, textures and motions, and seeds
differ by more than a fine-tune gains: the figure the embedded model is held to, at most 0.6
times the no-motion L1 on unseen seeds, is the pooled one printed last, every frame of every
seed counting once (the L1s summed against the baselines summed).

Seed N's 40 test videos are what ``fomm make-synthetic DIR --num-videos 41 --test-videos 40
--seed N`` writes, in ``data/synthetic-heldout`` for seed 1 (the held-out set of the other
benchmarks) and ``data/synthetic-seedN`` for the others; a missing folder is written first
(about a minute each on a 2-core CPU). Scored as ``fomm reconstruct --checkpoint C --data
DIR`` scores them: each video from its first frame, absolute keypoints.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import fomm_model as fm
from fomm_model.training.config import DatasetParams
from fomm_model.training.data import FramesDataset
from fomm_model.training.reconstruct import evaluate_reconstruction
from fomm_model.training.synthetic import SyntheticSpec, write_dataset

TEST_VIDEOS = 40


def seed_folder(root: Path, seed: int) -> Path:
    return root / ("synthetic-heldout" if seed == 1 else f"synthetic-seed{seed}")


def ensure_dataset(folder: Path, seed: int) -> None:
    """Write seed ``seed``'s test videos to ``folder`` unless it holds them; refuse a folder
    made with another seed or count (its score would be reported as this seed's)."""
    manifest = folder / "synthetic.json"
    if manifest.is_file():
        made = json.loads(manifest.read_text())
        if (made.get("seed"), made.get("num_test")) != (seed, TEST_VIDEOS):
            raise SystemExit(
                f"{folder} holds seed {made.get('seed')}'s {made.get('num_test')} test videos, not seed {seed}'s "
                f"{TEST_VIDEOS}: move it, or pass --root another folder"
            )
        return
    print(f"writing seed {seed}'s test videos to {folder}", flush=True)
    write_dataset(folder, SyntheticSpec(seed=seed, num_train=1, num_test=TEST_VIDEOS), workers=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--root", type=Path, default=Path("data"), help="where the seeds' folders are (default: data)")
    args = parser.parse_args()
    if 0 in args.seeds:
        raise SystemExit("seed 0 is the embedded model's training seed, not an unseen one")
    model = fm.load_model(args.checkpoint)
    params = DatasetParams(frame_shape=(*model.config.frame_shape, 3))
    l1_sum = baseline_sum = 0.0
    print(f"{args.checkpoint}, {TEST_VIDEOS} test videos a seed")
    for seed in args.seeds:
        folder = seed_folder(args.root, seed)
        ensure_dataset(folder, seed)
        start = time.perf_counter()
        report = evaluate_reconstruction(model, FramesDataset(replace(params, root_dir=str(folder)), is_train=False))
        l1_sum += report.l1 * report.frames
        baseline_sum += report.no_motion_l1 * report.frames
        print(
            f"  seed {seed}: L1 {report.l1:.5f}  no-motion {report.no_motion_l1:.5f}  ratio {report.ratio:.3f}"
            f"  ({report.frames} frames, {time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    print(f"  pooled over seeds {', '.join(map(str, args.seeds))}: ratio {l1_sum / baseline_sum:.3f}")


if __name__ == "__main__":
    main()
