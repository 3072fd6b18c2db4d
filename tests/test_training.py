"""Training end to end on real (tiny) synthetic videos: single process, torchrun + gloo,
SIGKILL and resume, fine-tuning, and the reconstruction score."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from einops import rearrange
from PIL import Image

import fomm_model as fm
from fomm_model.cli import main as cli
from fomm_model.pipeline import animate_frames
from fomm_model.training.config import DatasetParams, RunConfig
from fomm_model.training.data import FramesDataset
from fomm_model.training.trainer import Trainer, TrainingOptions
from fomm_model.video import read_video

from conftest import TINY, parity_cases


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "synthetic"
    assert cli(["make-synthetic", str(out), "--num-videos", "7", "--test-videos", "2", "--seed", "3",
                "--frames", "6", "--size", "64", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def fomm(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "fomm_model", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def weights(path: Path) -> dict[str, torch.Tensor]:
    sds = fm.read_checkpoint(path).state_dicts
    return {f"{net}.{k}": v for net, sd in sds.items() for k, v in sd.items()}


def test_single_process_run(data: Path, config_path: Path, tmp_path: Path) -> None:
    run = RunConfig.from_yaml(config_path)
    trainer = Trainer(run, TrainingOptions(out_dir=tmp_path, data_dir=data, max_steps=4, num_workers=0,
                                           vis_every=2, save_every=2, log_every=1, progress=False))
    result = trainer.train()
    assert result.steps == 4
    assert set(result.last_logged) >= {"perceptual", "gen_gan", "feature_matching", "equivariance_value",
                                       "equivariance_jacobian", "disc_gan"}
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(0 < float(r["kp_spread"]) < 1 for r in rows)  # the collapse figure, a fraction of the frame
    assert sorted(p.name for p in (tmp_path / "train-vis").iterdir()) == ["step-00000002.png", "step-00000004.png"]
    # The run folder's checkpoint is in the original layout, optimizers included.
    raw = torch.load(tmp_path / "checkpoint.pth.tar", weights_only=True)
    assert {"generator", "kp_detector", "discriminator", "optimizer_generator", "optimizer_kp_detector",
            "optimizer_discriminator", "epoch"} <= set(raw)
    model = fm.load_model(tmp_path / "model.safetensors")
    assert model.config.frame_shape == (64, 64)
    # The run's checkpoint carries the config too, so it evaluates at the frame size it trained at.
    assert fm.load_model(tmp_path / "checkpoint.pth.tar").config == model.config
    assert model.config == run.model.replace(frame_shape=(64, 64))
    # config.yaml is the config used, with the data folder it was given
    assert RunConfig.from_yaml(tmp_path / "config.yaml") == dataclasses.replace(
        run, dataset=dataclasses.replace(run.dataset, root_dir=str(data))
    )


def test_frozen_batch_norm_keeps_its_statistics_and_trains_the_rest(data: Path, config_path: Path, tmp_path: Path, capsys) -> None:
    run = RunConfig.from_yaml(config_path)
    assert "freeze_batch_norm" not in run.to_mapping()["train_params"]  # the original schema unless used
    frozen = dataclasses.replace(run, train=dataclasses.replace(run.train, freeze_batch_norm=True))
    start = tmp_path / "start.safetensors"
    Trainer(run, TrainingOptions(out_dir=tmp_path / "start", data_dir=data, max_steps=2, num_workers=0, vis_every=0,
                                 progress=False)).train()
    (tmp_path / "start" / "model.safetensors").rename(start)

    def changed(out: Path, config: RunConfig) -> tuple[set[str], set[str]]:
        Trainer(config, TrainingOptions(out_dir=out, data_dir=data, checkpoint=start, max_steps=2, num_workers=0,
                                        vis_every=0, progress=False)).train()
        before, after = weights(start), weights(out / "model.safetensors")
        moved = {name for name in before if not torch.equal(before[name], after[name])}
        return {n for n in moved if "running_" in n}, {n for n in moved if n.endswith("norm.weight")}

    capsys.readouterr()
    statistics, scales = changed(tmp_path / "frozen", frozen)
    assert not statistics and scales  # the statistics are kept, the batch norms' scales still learn
    assert "freeze_batch_norm" not in capsys.readouterr().err
    statistics, scales = changed(tmp_path / "plain", run)
    assert statistics and scales
    # fine-tuning at a small batch without it gets a hint
    assert "fine-tuning at a batch of 2: batch norm will normalise" in capsys.readouterr().err
    assert RunConfig.from_yaml(tmp_path / "frozen" / "config.yaml").train.freeze_batch_norm  # --resume keeps it


def test_training_lowers_the_reconstruction_error(data: Path, config_path: Path, tmp_path: Path) -> None:
    run = RunConfig.from_yaml(config_path)
    fast = dataclasses.replace(run.train, lr_generator=1e-3, lr_kp_detector=1e-3, num_epochs=100)
    run = dataclasses.replace(run, train=fast)
    options = TrainingOptions(out_dir=tmp_path, data_dir=data, max_steps=24, num_workers=0, vis_every=0, progress=False)
    trainer = Trainer(run, options)
    batch = next(iter(torch.utils.data.DataLoader(trainer.dataset, batch_size=4)))

    def error() -> float:  # in train mode: batch statistics, as during training
        with torch.no_grad():
            kp_source = trainer.model.kp_detector(batch["source"])
            kp_driving = trainer.model.kp_detector(batch["driving"])
            out = trainer.model.generator(batch["source"], kp_source, kp_driving)
        return (out["prediction"] - batch["driving"]).abs().mean().item()

    before = error()
    trainer.train()
    assert error() < 0.85 * before


def test_killed_run_resumes_to_the_same_result(data: Path, tmp_path: Path) -> None:
    """SIGKILL mid-run, --resume, and end exactly where an uninterrupted run ends."""
    # 12 steps (two repeats an epoch): on a fast machine a 6-step run could end between two looks at its checkpoint
    longer = tmp_path / "longer.yaml"
    longer.write_text(yaml.safe_dump({**TINY, "train_params": {**TINY["train_params"], "num_repeats": 2}}))
    loop = ["--max-steps", "12", "--workers", "0", "--save-every", "2", "--vis-every", "0", "--no-progress"]
    common = ["train", "--config", str(longer), "--data", str(data), "--seed", "5", *loop]
    straight = tmp_path / "straight"
    finish(fomm(*common, "--out", str(straight)))

    killed = tmp_path / "killed"
    process = fomm(*common, "--out", str(killed))
    checkpoint = killed / "checkpoint.pth.tar"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if checkpoint.exists():
            step = torch.load(checkpoint, weights_only=True)["fomm_training"]["step"]
            if step >= 2:
                break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    state = torch.load(checkpoint, weights_only=True)["fomm_training"]
    assert 2 <= state["step"] < 12, "the run should have been killed mid-way"
    # A kill during a save leaves at most the temporary file; the final name holds the intact
    # previous checkpoint (loaded above). Plant one so the clean-up below is always exercised.
    (killed / ".checkpoint.pth.tar.planted.partial").write_bytes(b"half-written")

    # README's form: the run folder alone; its config.yaml names the data, its checkpoint the seed.
    output = finish(fomm("train", "--out", str(killed), "--resume", *loop))
    assert "resumed" in output and "half-written" in output
    assert not list(killed.glob(".*.partial"))  # the resumed run cleared what the killed one left
    a, b = weights(straight / "model.safetensors"), weights(killed / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "a resumed run must continue exactly"
    steps = [int(r["step"]) for r in csv.DictReader((killed / "log.csv").open())]
    assert steps == sorted(set(steps)) and steps[-1] == 12


@pytest.mark.filterwarnings("error::UserWarning")  # resuming at an epoch's end once warned about the scheduler
def test_resumed_run_keeps_the_log_columns_it_started_with(data: Path, config_path: Path, tmp_path: Path, capsys) -> None:
    """A run logged by a version without ``kp_spread`` and resumed by this one stays one table."""
    run = RunConfig.from_yaml(config_path)
    options = TrainingOptions(out_dir=tmp_path, data_dir=data, max_steps=2, num_workers=0, vis_every=0,
                              save_every=2, log_every=1, progress=False, seed=5)
    Trainer(run, options).train()
    # ... and by a version that did not record the seed either: --seed 5 is taken, not refused.
    checkpoint = torch.load(tmp_path / "checkpoint.pth.tar", weights_only=True)
    del checkpoint["fomm_training"]["seed"]
    torch.save(checkpoint, tmp_path / "checkpoint.pth.tar")
    log = tmp_path / "log.csv"
    rows = list(csv.DictReader(log.open()))
    old_columns = [c for c in rows[0] if c != "kp_spread"]
    with log.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=old_columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    resumed = Trainer(run, dataclasses.replace(options, max_steps=4, resume=True))
    assert resumed.seed == 5
    resumed.train()
    lines = list(csv.reader(log.open()))
    assert lines[0] == old_columns and [int(line[0]) for line in lines[1:]] == [1, 2, 3, 4]
    assert all(len(line) == len(old_columns) for line in lines)
    seconds = [float(line[old_columns.index("seconds")]) for line in lines[1:]]
    assert seconds == sorted(seconds) and seconds[2] > 0  # the run's clock goes on (it restarted at 0)
    # Another seed would redraw the data and the random warps: refused, naming the run's seed.
    assert cli(["train", "--out", str(tmp_path), "--resume", "--seed", "9"]) == 1
    assert "trained with --seed 5" in capsys.readouterr().err


def test_torchrun_two_processes_gloo(data: Path, config_path: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               "-m", "fomm_model", "train", "--config", str(config_path), "--data", str(data), "--out", str(tmp_path),
               "--max-steps", "3", "--workers", "0", "--device", "cpu", "--vis-every", "0", "--no-progress"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    said = result.stdout + result.stderr
    assert said.count("no VGG19 weights given") == 1 and "deprecated" not in said, said  # notes once, no torch noise
    state = torch.load(tmp_path / "checkpoint.pth.tar", weights_only=True)["fomm_training"]
    assert state["world_size"] == 2 and state["step"] == 3 and len(state["rng"]) == 2
    # batch norm statistics were synchronised: running stats changed from their initial values
    kp = fm.read_checkpoint(tmp_path / "model.safetensors").state_dicts["kp_detector"]
    assert kp["predictor.encoder.down_blocks.0.norm.num_batches_tracked"].item() > 0


def test_fine_tune_from_original_checkpoint(tmp_path: Path) -> None:
    case = parity_cases()[0]
    data = tmp_path / "data"
    assert cli(["make-synthetic", str(data), "--num-videos", "3", "--test-videos", "1", "--seed", "5",
                "--frames", "4", "--size", "128", "--quiet"]) == 0
    config = yaml.safe_load((case / "config.yaml").read_text())
    config["train_params"].update(batch_size=2, num_repeats=1)
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(config))
    run = RunConfig.from_yaml(path)
    trainer = Trainer(run, TrainingOptions(out_dir=tmp_path / "run", data_dir=data, checkpoint=case / "checkpoint.pth.tar",
                                           max_steps=1, num_workers=0, vis_every=0, progress=False))
    start = fm.read_checkpoint(case / "checkpoint.pth.tar").state_dicts["generator"]
    assert torch.equal(trainer.model.generator.state_dict()["final.weight"], start["final.weight"])
    trainer.train()


def test_reconstruct_reports_per_video_and_overall(data: Path, config_path: Path, tmp_path: Path, capsys) -> None:
    run = RunConfig.from_yaml(config_path)
    Trainer(run, TrainingOptions(out_dir=tmp_path, data_dir=data, max_steps=1, num_workers=0, vis_every=0, progress=False)).train()
    capsys.readouterr()
    assert cli(["reconstruct", "--checkpoint", str(tmp_path / "model.safetensors"), "--data", str(data),
                "--out", str(tmp_path / "rec")]) == 0
    out = capsys.readouterr().out
    assert out.count("\tL1 ") == 2 and "overall: L1" in out
    assert len(list((tmp_path / "rec" / "png").glob("*.png"))) == 2
    report = json.loads((tmp_path / "rec" / "report.json").read_text())
    # The keypoint spread of a video is that of its frames' keypoints, averaged.
    model = fm.load_model(tmp_path / "model.safetensors")
    first = FramesDataset(DatasetParams(root_dir=str(data), frame_shape=(64, 64, 3)), is_train=False)[0]
    with torch.no_grad():
        kp = model.detect_keypoints(first["video"].permute(1, 0, 2, 3))
    video = next(v for v in report["videos"] if v["name"] == first["name"])
    assert video["kp_spread"] == pytest.approx(kp.spread().mean().item(), rel=1e-4)
    assert report["kp_spread"] == pytest.approx(
        sum(v["kp_spread"] * v["frames"] for v in report["videos"]) / report["frames"]
    )
    assert f"keypoint spread {report['kp_spread']:.3f} of the frame" in out


def test_animate_pairs_writes_each_pairs_video_and_strip(data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "animation"
    assert cli(["animate-pairs", "--checkpoint", "default", "--data", str(data), "--out", str(out), "--num-pairs", "3"]) == 0
    assert "animated 3 pairs" in capsys.readouterr().out
    videos = FramesDataset(DatasetParams(root_dir=str(data), frame_shape=(128, 128, 3)), is_train=False)
    names = {f"{d}-{s}" for d in videos.names for s in videos.names}  # 2 test videos: 4 pairs to draw 3 from
    written = {path.stem for path in out.glob("*.mp4")}
    assert len(written) == 3 and written <= names
    assert {path.stem for path in (out / "png").glob("*.png")} == written
    # The strip is the relative-motion animation (the presets' animate_params) of the source's first frame.
    driving_name, source_name = sorted(written)[0].split("-")
    by_name = {videos[i]["name"]: videos[i]["video"].permute(1, 0, 2, 3) for i in range(len(videos))}
    model = fm.load_model("default")
    expected = torch.stack(list(animate_frames(model, by_name[source_name][0], by_name[driving_name], adapt_scale=False)))
    strip = torch.from_numpy(np.array(Image.open(out / "png" / f"{driving_name}-{source_name}.png"))).float() / 255
    assert strip.shape == (128, 6 * 128, 3)
    assert torch.allclose(strip, rearrange(expected, "t c h w -> h (t w) c"), atol=1 / 255 + 1e-6)
    # The video shows source | driving | deformed | occlusion | the generator's source weight |
    # prediction for every driving frame (the weight: the embedded generator blends the warped source).
    frames = list(read_video(out / f"{driving_name}-{source_name}.mp4"))
    assert len(frames) == 6 and frames[0].shape == (3, 128, 6 * 128)


def test_evaluations_leave_out_a_video_with_a_damaged_frame(data: Path, tmp_path: Path, capsys) -> None:
    """A dataset probes a video's first frame only; one damaged later frame used to stop
    the whole evaluation with a traceback. Now it is named and left out; all damaged is an error."""
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    (copy / "test" / "test00001" / "0003.png").write_bytes(b"not a picture")
    (copy / "test" / "broken.mp4").write_bytes(b"not a video")  # found unreadable when the dataset is made
    assert cli(["reconstruct", "--checkpoint", "default", "--data", str(copy), "--out", str(tmp_path / "rec")]) == 0
    captured = capsys.readouterr()
    assert "skipped test00001:" in captured.err and "0003.png" in captured.err
    assert "2 unreadable video(s) left out of the score" in captured.err
    assert "over 6 frames of 1 video" in captured.out
    report = json.loads((tmp_path / "rec" / "report.json").read_text())
    assert [v["name"] for v in report["videos"]] == ["test00000"]
    assert [v["name"] for v in report["skipped"]] == ["broken.mp4", "test00001"]  # the first was missing from it
    (copy / "test" / "broken.mp4").unlink()
    out = tmp_path / "pairs"
    assert cli(["animate-pairs", "--checkpoint", "default", "--data", str(copy), "--out", str(out), "--num-pairs", "4"]) == 0
    captured = capsys.readouterr()
    assert "animated 1 pairs" in captured.out and "3 pair(s) with an unreadable video left out" in captured.err
    assert [p.name for p in out.glob("*.mp4")] == ["test00000-test00000.mp4"]
    (copy / "test" / "test00000" / "0002.png").write_bytes(b"")
    shutil.copy(data / "test" / "test00001" / "0003.png", copy / "test" / "test00001" / "0003.png")
    assert cli(["reconstruct", "--checkpoint", "default", "--data", str(copy), "--num-videos", "1"]) == 0
    assert "over 6 frames of 1 video" in capsys.readouterr().out  # the next video takes the damaged one's place
    (copy / "test" / "test00001" / "0003.png").write_bytes(b"not a picture")
    assert cli(["reconstruct", "--checkpoint", "default", "--data", str(copy), "--out", str(tmp_path / "rec2")]) == 1
    assert "none of the 2 test videos could be read whole" in capsys.readouterr().err
    assert not (tmp_path / "rec2" / "report.json").exists()


def test_animate_pairs_reads_a_pairs_list_and_checks_its_inputs(data: Path, config_path: Path, tmp_path: Path, capsys, caplog) -> None:
    first, second = FramesDataset(DatasetParams(root_dir=str(data), frame_shape=(64, 64, 3)), is_train=False).names
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"source,driving\n{second},{first}\nmissing,{first}\n")
    out = tmp_path / "animation"
    base = ["animate-pairs", "--checkpoint", "default", "--data", str(data)]
    assert cli([*base, "--out", str(out), "--pairs-list", str(pairs)]) == 0
    assert [path.name for path in out.iterdir() if path.is_file()] == [f"{first}-{second}.mp4"]
    assert "1 pair(s) name a video that is not among the readable test videos (e.g. missing)" in caplog.text
    gif = dict(TINY, animate_params={"format": ".gif"})
    (tmp_path / "gif.yaml").write_text(yaml.safe_dump(gif))
    # a config naming a pairs list that is not there (as the presets do: data/vox256.csv...)
    absent = dict(TINY, dataset_params={**TINY["dataset_params"], "frame_shape": [128, 128, 3],
                                        "pairs_list": str(tmp_path / "absent.csv")})
    (tmp_path / "absent.yaml").write_text(yaml.safe_dump(absent))
    drawn = tmp_path / "drawn"
    assert cli([*base, "--out", str(drawn), "--config", str(tmp_path / "absent.yaml"), "--random-pairs", "--num-pairs", "1"]) == 0
    assert len(list(drawn.glob("*.mp4"))) == 1
    capsys.readouterr()
    for extra, message in (
        (["--out", str(out), "--num-pairs", "0"], "--num-pairs must be at least 1"),
        (["--out", str(out), "--fps", "0"], "--fps must be at least 0.01"),
        (["--out", str(out), "--pairs-list", str(tmp_path / "none.csv")], "none.csv not found"),
        (["--out", str(pairs)], "is a file: give a folder name"),
        (["--out", str(data / "animation")], "is inside the dataset"),
        (["--out", str(out), "--checkpoint", "default", "--config", str(tmp_path / "gif.yaml")], "animate_params.format '.gif'"),
        (["--out", str(out), "--config", str(tmp_path / "absent.yaml")], "absent.csv (dataset_params.pairs_list of"),
    ):
        assert cli([*base, *extra]) == 1
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, error


def test_clear_errors(config_path: Path, tmp_path: Path, capsys) -> None:
    assert cli(["train", "--config", str(config_path), "--out", str(tmp_path)]) == 1
    assert "pass --data" in capsys.readouterr().err
    assert cli(["train", "--out", str(tmp_path), "--resume"]) == 1
    assert f"no run to resume in {tmp_path} (no checkpoint.pth.tar); start it without --resume" in capsys.readouterr().err


def test_mistakes_found_before_any_training(data: Path, config_path: Path, tmp_path: Path, capsys) -> None:
    """Each refused in one line before a step runs: --checkpoint with --resume (one would be
    ignored), a run folder inside the dataset (it would join the videos and shift the split),
    equivariance weights without the transform that drives them, and --resume of a file
    that holds weights but no training state (a converted checkpoint)."""
    base = ["train", "--config", str(config_path), "--data", str(data)]
    assert cli([*base, "--out", str(tmp_path / "run"), "--resume", "--checkpoint", "default"]) == 1
    assert "give one of them" in capsys.readouterr().err
    assert cli([*base, "--out", str(data / "run"), "--max-steps", "1"]) == 1
    assert f"--out {data / 'run'} is inside the dataset" in capsys.readouterr().err and not (data / "run").exists()
    no_transform = yaml.safe_load(config_path.read_text())
    del no_transform["train_params"]["transform_params"]
    (tmp_path / "no_transform.yaml").write_text(yaml.safe_dump(no_transform))
    assert cli(["train", "--config", str(tmp_path / "no_transform.yaml"), "--data", str(data), "--out", str(tmp_path / "r2")]) == 1
    assert "transform_params is missing, but the equivariance losses it drives are weighted" in capsys.readouterr().err
    converted = tmp_path / "converted"
    converted.mkdir()
    fixture = parity_cases()[0] / "checkpoint.pth.tar"
    (converted / "checkpoint.pth.tar").write_bytes(fixture.read_bytes())
    assert cli(["train", "--out", str(converted), "--resume", "--config", str(config_path), "--data", str(data)]) == 1
    assert "weights without a training state" in capsys.readouterr().err


def test_an_affine_only_transform_has_no_radial_term() -> None:
    """transform_params without sigma_tps/points_tps (allowed by the original schema) is the
    affine map alone, its Jacobian the affine part everywhere (it used to be NaN)."""
    from fomm_model.training.config import TransformParams
    from fomm_model.training.transform import RandomTPS

    for params in (TransformParams(sigma_affine=0.05), TransformParams(sigma_affine=0.05, sigma_tps=0.005)):
        transform = RandomTPS(3, params, torch.Generator().manual_seed(0))
        points = torch.rand(1, 7, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
        theta = transform.theta
        expected = points @ theta[:, :, :2].transpose(1, 2) + theta[:, None, :, 2]
        assert torch.allclose(transform.warp_coordinates(points), expected)
        assert torch.equal(transform.jacobian(points), theta[:, None, :, :2].expand(3, 7, 2, 2))
        frame = torch.rand(3, 3, 16, 16)
        assert torch.isfinite(transform.transform_frame(frame)).all()


def test_a_run_is_never_overwritten_and_its_folder_names_its_model(data: Path, config_path: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    base = ["train", "--config", str(config_path), "--data", str(data), "--workers", "0", "--no-progress"]
    train = [*base, "--out", str(run)]
    assert cli([*train, "--max-steps", "1"]) == 0
    kept = (run / "checkpoint.pth.tar").read_bytes(), (run / "log.csv").read_text()
    capsys.readouterr()
    assert cli([*train, "--max-steps", "2"]) == 1  # forgot --resume
    assert "already holds a training run; continue it with --resume" in capsys.readouterr().err
    assert ((run / "checkpoint.pth.tar").read_bytes(), (run / "log.csv").read_text()) == kept
    # the run folder stands for its model wherever a checkpoint is asked for
    assert cli(["reconstruct", "--checkpoint", str(run), "--data", str(data)]) == 0
    assert cli(["convert", str(run), str(tmp_path / "model.pth.tar")]) == 0
    assert fm.load_model(run).config == fm.load_model(tmp_path / "model.pth.tar").config
    capsys.readouterr()
    (tmp_path / "log.csv").write_text("step,total\n1,0.5\n")  # not weights
    for options, message in (
        (["--save-every", "0"], "--save-every must be at least 1, got 0"),
        (["--max-steps", "-1"], "--max-steps must be at least 1, got -1"),
        (["--vgg", str(tmp_path / "log.csv")], "cannot be read as VGG19 weights"),
    ):
        assert cli([*base, "--out", str(tmp_path / "other"), *options]) == 1
        error = capsys.readouterr().err
        assert message in error and len(error.strip().splitlines()) <= 2, error  # the VGG note, then one line


def test_interrupted_run_saves_a_whole_step_and_resumes_exactly(data: Path, config_path: Path, tmp_path: Path) -> None:
    """Ctrl-C in a terminal reaches the whole process group, data workers included: the run
    finishes its step, saves and exits 130; resumed, it ends where an uninterrupted run ends."""
    loop = ["--max-steps", "40", "--workers", "1", "--save-every", "100", "--vis-every", "1", "--no-progress"]
    common = ["train", "--config", str(config_path), "--data", str(data), "--seed", "5", *loop]
    straight = tmp_path / "straight"
    finish(fomm(*common, "--out", str(straight)))

    stopped = tmp_path / "stopped"
    process = fomm(*common, "--out", str(stopped), start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (stopped / "train-vis" / "step-00000002.png").exists():
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    step = torch.load(stopped / "checkpoint.pth.tar", weights_only=True)["fomm_training"]["step"]
    assert 2 <= step < 40 and f"interrupted at step {step}" in output, "the run should have stopped mid-way"
    assert "stopping after this step" in output
    output = finish(fomm("train", "--out", str(stopped), "--resume", *loop))
    a, b = weights(straight / "model.safetensors"), weights(stopped / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a), "an interrupted run must resume exactly"


def test_a_second_interrupt_while_saving_says_which_steps_are_lost(
    data: Path, config_path: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """The first Ctrl-C asks for a save after the step; a second one during that save
    abandons it, and the run says which checkpoint --resume will continue from."""
    trainer = Trainer(RunConfig.from_yaml(config_path), TrainingOptions(
        out_dir=tmp_path, data_dir=data, max_steps=10, num_workers=0, vis_every=0, save_every=2, progress=False))
    train_step, write = trainer._train_step, torch.save

    def step_then_interrupt(batch):
        values = train_step(batch)
        if trainer.step == 2:  # during the third step
            os.kill(os.getpid(), signal.SIGINT)
        return values

    def interrupted_write(payload, path):
        if trainer.step == 3:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler raises here, in the middle of the save
        return write(payload, path)

    monkeypatch.setattr(trainer, "_train_step", step_then_interrupt)
    monkeypatch.setattr(torch, "save", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    err = capsys.readouterr().err
    assert "stopped at once while saving step 3: the steps after 2 are lost; --resume continues from the checkpoint of step 2" in err
    assert torch.load(tmp_path / "checkpoint.pth.tar", weights_only=True)["fomm_training"]["step"] == 2
    assert [p.name for p in tmp_path.iterdir() if "checkpoint" in p.name] == ["checkpoint.pth.tar"]  # no half-written one


def test_resuming_a_finished_run_leaves_its_files_alone(data: Path, config_path: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    base = ["train", "--data", str(data), "--workers", "0", "--no-progress", "--out", str(run)]
    assert cli([*base, "--config", str(config_path), "--max-steps", "2"]) == 0
    files = ("checkpoint.pth.tar", "model.safetensors", "log.csv", "config.yaml")
    before = {name: (run / name).read_bytes() for name in files}
    capsys.readouterr()
    assert cli([*base, "--resume", "--max-steps", "1"]) == 0
    captured = capsys.readouterr()
    assert "is already at step 2, past --max-steps 1: raise it to train on (to 6 or more for the whole schedule); nothing to train" in captured.err
    assert "trained" not in captured.out
    assert {name: (run / name).read_bytes() for name in files} == before
    # a model file lost (a crash after the last save) is exported again, nothing else rewritten
    (run / "model.safetensors").unlink()
    assert cli([*base, "--resume", "--max-steps", "2"]) == 0
    assert "is already at step 2, at --max-steps 2: raise it to train on (to 6 or more for the whole schedule); nothing to train, only model.safetensors was written again" in capsys.readouterr().err
    assert {name: (run / name).read_bytes() for name in files if name != "model.safetensors"} == {
        name: data for name, data in before.items() if name != "model.safetensors"
    }
    restored = weights(run / "model.safetensors")
    assert restored.keys() == (expected := weights(run / "checkpoint.pth.tar")).keys()
    assert all(torch.equal(restored[k], expected[k]) for k in restored)
    # without --max-steps it keeps the run's own (it trained the whole schedule, 6 steps here)
    assert cli([*base, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "continuing to step 2, the run's --max-steps (give --max-steps to change it; its schedule ends at step 6)" in err and "is already at step 2, at --max-steps 2" in err


def test_fine_tuning_without_a_config_uses_the_one_the_checkpoint_was_trained_with(data: Path, tmp_path: Path, capsys) -> None:
    """The embedded model and every model `fomm train` exports carry their training config,
    and a run folder has its config.yaml: `--checkpoint default --data DIR` is enough to
    fine-tune. A checkpoint without one (the published ones) still asks for --config."""
    base = ["train", "--data", str(data), "--workers", "0", "--no-progress", "--max-steps", "1"]
    assert cli([*base, "--checkpoint", "default", "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "no --config: fine-tuning with the settings default was trained with" in err
    # its config trains no GAN: the discriminator is neither worth a warning nor exported as if trained
    assert "starts from random weights" not in err and not fm.read_checkpoint(tmp_path / "a" / "model.safetensors").has_discriminator
    assert fm.load_model(tmp_path / "a" / "model.safetensors").discriminator is None
    recipe = RunConfig.from_yaml(Path(__file__).parents[1] / "recipes" / "default-model" / "finetune-18.yaml")
    first = RunConfig.from_yaml(tmp_path / "a" / "config.yaml")
    assert first == dataclasses.replace(recipe, dataset=dataclasses.replace(recipe.dataset, root_dir=str(data)))
    # what it exported carries it on, and so does a run folder
    assert cli([*base, "--checkpoint", str(tmp_path / "a" / "model.safetensors"), "--out", str(tmp_path / "b")]) == 0
    assert cli([*base, "--checkpoint", str(tmp_path / "a"), "--out", str(tmp_path / "c")]) == 0
    assert cli([*base, "--checkpoint", str(tmp_path / "c" / "checkpoint.pth.tar"), "--out", str(tmp_path / "e")]) == 0
    assert all(RunConfig.from_yaml(tmp_path / run / "config.yaml") == first for run in "bce")
    # fomm convert keeps it (train.sh's export of the embedded model goes through it)
    assert cli(["convert", str(tmp_path / "a" / "model.safetensors"), str(tmp_path / "half.safetensors"), "--inference-only", "--half"]) == 0
    assert cli(["convert", str(tmp_path / "e"), str(tmp_path / "e.pth.tar")]) == 0  # a run folder: its checkpoint
    from fomm_model.training.config import carried_training_config

    assert carried_training_config(tmp_path / "half.safetensors") == carried_training_config(tmp_path / "e.pth.tar") == first
    capsys.readouterr()
    fixture = parity_cases()[0] / "checkpoint.pth.tar"
    assert cli([*base, "--checkpoint", str(fixture), "--out", str(tmp_path / "d")]) == 1
    assert "--config is required: " in capsys.readouterr().err and not (tmp_path / "d").exists()


def test_videos_of_one_stem_get_outputs_of_their_own(data: Path, tmp_path: Path, capsys) -> None:
    """`clip` (a folder of frames) and `clip.png` (a strip) both wrote png/clip.png: one
    evaluation result silently replaced the other."""
    copy = tmp_path / "data"
    shutil.copytree(data / "train", copy / "train")
    shutil.copytree(data / "test" / "test00000", copy / "test" / "clip")
    frames = [Image.open(path) for path in sorted((data / "test" / "test00001").glob("*.png"))]
    strip = Image.new("RGB", (64 * len(frames), 64))
    for index, frame in enumerate(frames):
        strip.paste(frame, (64 * index, 0))
    strip.save(copy / "test" / "clip.png")
    assert cli(["reconstruct", "--checkpoint", "default", "--data", str(copy), "--out", str(tmp_path / "rec")]) == 0
    assert sorted(p.name for p in (tmp_path / "rec" / "png").iterdir()) == ["clip.png", "clip.png.png"]
    out = tmp_path / "pairs"
    assert cli(["animate-pairs", "--checkpoint", "default", "--data", str(copy), "--out", str(out), "--num-pairs", "4"]) == 0
    assert len(list(out.glob("*.mp4"))) == len(list((out / "png").glob("*.png"))) == 4


def test_evaluating_a_run_uses_the_split_of_its_seed(data: Path, config_path: Path, tmp_path: Path, capsys) -> None:
    """A flat dataset's 80/20 split is drawn by the run's --seed: evaluated with another, the
    score counted training videos as test ones, without a word."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for video in sorted((data / "train").iterdir()) + sorted((data / "test").iterdir()):
        shutil.copytree(video, flat / video.name)
    run = tmp_path / "run"
    assert cli(["train", "--config", str(config_path), "--data", str(flat), "--out", str(run), "--seed", "3",
                "--max-steps", "1", "--workers", "0", "--no-progress"]) == 0
    capsys.readouterr()
    assert cli(["reconstruct", "--checkpoint", str(run), "--data", str(flat), "--out", str(tmp_path / "rec")]) == 0
    assert "the 80/20 split of the run's --seed 3" in capsys.readouterr().err
    expected = FramesDataset(DatasetParams(root_dir=str(flat), frame_shape=(64, 64, 3)), is_train=False, random_seed=3).names
    assert expected != FramesDataset(DatasetParams(root_dir=str(flat), frame_shape=(64, 64, 3)), is_train=False, random_seed=0).names
    report = json.loads((tmp_path / "rec" / "report.json").read_text())
    assert sorted(v["name"] for v in report["videos"]) == sorted(expected)
    # the model file it exported knows the seed too
    assert cli(["reconstruct", "--checkpoint", str(run / "model.safetensors"), "--data", str(flat), "--out", str(tmp_path / "rec2")]) == 0
    assert sorted(v["name"] for v in json.loads((tmp_path / "rec2" / "report.json").read_text())["videos"]) == sorted(expected)


def test_a_trained_discriminator_stays_in_the_model_file_when_the_gan_loss_stops(data: Path, config_path: Path, tmp_path: Path) -> None:
    """A GAN-less fine-tune of a GAN model, or a GAN run resumed without the GAN loss, keeps the
    trained discriminator for a later GAN fine-tune; a run that never had one exports none."""
    gan_less = tmp_path / "gan-less.yaml"
    losses = {**TINY["train_params"]["loss_weights"], "generator_gan": 0}
    gan_less.write_text(yaml.safe_dump({**TINY, "train_params": {**TINY["train_params"], "loss_weights": losses}}))
    base = ["train", "--data", str(data), "--workers", "0", "--no-progress", "--vis-every", "0"]
    assert cli([*base, "--config", str(config_path), "--out", str(tmp_path / "gan"), "--max-steps", "1"]) == 0
    trained = {k: v for k, v in weights(tmp_path / "gan" / "model.safetensors").items() if k.startswith("discriminator.")}
    assert trained
    assert cli([*base, "--config", str(gan_less), "--out", str(tmp_path / "tune"), "--max-steps", "1",
                "--checkpoint", str(tmp_path / "gan" / "model.safetensors")]) == 0
    assert cli([*base, "--config", str(gan_less), "--out", str(tmp_path / "gan"), "--resume", "--max-steps", "2"]) == 0
    for run in ("tune", "gan"):
        exported = weights(tmp_path / run / "model.safetensors")
        assert all(torch.equal(exported[k], v) for k, v in trained.items()), run  # kept, and not trained since
        assert fm.load_model(tmp_path / run / "model.safetensors").discriminator is not None
    assert cli([*base, "--config", str(gan_less), "--out", str(tmp_path / "fresh"), "--max-steps", "1"]) == 0
    assert not fm.read_checkpoint(tmp_path / "fresh" / "model.safetensors").has_discriminator
