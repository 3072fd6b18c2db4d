"""Checkpoint reading, writing and conversion, including hostile files."""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import fomm_model as fm
from fomm_model.checkpoint import CheckpointError, write_safetensors
from fomm_model.cli import main as cli

from conftest import parity_cases

CASE = parity_cases()[0]
ORIGINAL = CASE / "checkpoint.pth.tar"


def tensors_equal_bitwise(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k].view(-1).view(torch.uint8), b[k].view(-1).view(torch.uint8))
        for k in a
    )


def test_convert_round_trip_is_bit_exact(tmp_path: Path) -> None:
    st = tmp_path / "model.safetensors"
    back = tmp_path / "back.pth.tar"
    assert cli(["convert", str(ORIGINAL), str(st)]) == 0
    assert cli(["convert", str(st), str(back)]) == 0
    original = fm.read_checkpoint(ORIGINAL).state_dicts
    converted = fm.read_checkpoint(st).state_dicts
    returned = fm.read_checkpoint(back).state_dicts
    for name in ("kp_detector", "generator", "discriminator"):
        assert tensors_equal_bitwise(original[name], converted[name]), name
        assert tensors_equal_bitwise(original[name], returned[name]), name
    assert converted["kp_detector"]["predictor.encoder.down_blocks.0.norm.num_batches_tracked"].dtype == torch.int64


def test_safetensors_carries_config(tmp_path: Path) -> None:
    st = tmp_path / "model.safetensors"
    fm.convert_checkpoint(ORIGINAL, st, fm.resolve_config(CASE / "config.yaml"))
    with safe_open(str(st), "pt") as handle:
        meta = handle.metadata()
    assert meta["format"] == "fomm"
    model = fm.load_model(st)
    assert model.config == fm.resolve_config(CASE / "config.yaml")
    source = torch.rand(1, 3, 128, 128)
    reference = fm.load_model(ORIGINAL)
    assert torch.equal(model.detect_keypoints(source).value, reference.detect_keypoints(source).value)
    # Back to the original layout the config stays (one more entry the original code ignores);
    # a file without one still gets an inferred config, and is not given a guessed one.
    back = fm.convert_checkpoint(st, tmp_path / "back.pth.tar")
    assert fm.load_model(back).config == model.config
    assert torch.load(back, weights_only=True)["epoch"] == 0  # the original's load_cpk returns it in every mode
    assert fm.read_checkpoint(fm.convert_checkpoint(ORIGINAL, tmp_path / "plain.pth.tar")).config is None
    # Someone else's entry of that name (not our JSON string) is left alone, as the original code would.
    foreign = torch.load(ORIGINAL, weights_only=True)
    foreign["model_config"] = {"note": 1}
    torch.save(foreign, tmp_path / "foreign.pth.tar")
    assert fm.read_checkpoint(tmp_path / "foreign.pth.tar").config is None


def test_optimizer_entries_are_ignored() -> None:
    checkpoint = fm.read_checkpoint(ORIGINAL)
    assert "optimizer_generator" in checkpoint.extra
    assert set(checkpoint.state_dicts) == {"kp_detector", "generator", "discriminator"}


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_malicious_pickle_is_refused_without_running(tmp_path: Path, legacy: bool) -> None:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth.tar"
    state = fm.read_checkpoint(ORIGINAL).state_dicts
    torch.save({**state, "epoch": _Payload(marker)}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match="refused") as info:
        fm.load_model(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_plain_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"generator": _Payload(marker)}, protocol=2))
    with pytest.raises(CheckpointError):
        fm.load_model(path)
    assert not marker.exists()


def test_truncated_files(tmp_path: Path) -> None:
    data = ORIGINAL.read_bytes()
    cut = tmp_path / "cut.pth.tar"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        fm.load_model(cut)
    assert "cut.pth.tar" in str(info.value)

    st = tmp_path / "full.safetensors"
    fm.convert_checkpoint(ORIGINAL, st)
    cut_st = tmp_path / "cut.safetensors"
    cut_st.write_bytes(st.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        fm.load_model(cut_st)

    empty = tmp_path / "empty.pth.tar"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        fm.load_model(empty)


def test_foreign_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.pth.tar"
    text.write_text("this is not a checkpoint at all\n")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        fm.load_model(text)

    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(3), "fc.bias": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="'generator' and 'kp_detector'"):
        fm.load_model(other)

    archive = tmp_path / "archive.pth.tar"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(CheckpointError, match="archive.pth.tar"):
        fm.load_model(archive)

    with pytest.raises(CheckpointError, match="not found"):
        fm.load_model(tmp_path / "missing.pth.tar")


def test_wrong_config_is_explained() -> None:
    with pytest.raises(CheckpointError, match="omit it to use the one stored in the checkpoint or inferred"):
        fm.load_model(ORIGINAL, config="vox-256")


def test_cli_reports_errors_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"\x80\x02garbage")
    assert cli(["convert", str(bad), str(tmp_path / "x.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "bad.pth.tar" in err and "Traceback" not in err
    assert not (tmp_path / "x.safetensors").exists()


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.safetensors"

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("fomm_model.checkpoint.save_file", explode)
    with pytest.raises(OSError):
        fm.convert_checkpoint(ORIGINAL, target)
    assert list(tmp_path.iterdir()) == []


def test_inference_only_half_export(tmp_path: Path) -> None:
    small = tmp_path / "small.safetensors"
    assert cli(["convert", str(ORIGINAL), str(small), "--inference-only", "--half"]) == 0
    checkpoint = fm.read_checkpoint(small)
    assert set(checkpoint.state_dicts) == {"kp_detector", "generator"}
    assert checkpoint.state_dicts["generator"]["final.weight"].dtype == torch.float16
    model = fm.load_model(small)
    assert model.discriminator is None and model.dtype == torch.float32
    reference = fm.load_model(ORIGINAL)
    source = torch.rand(1, 3, 128, 128)
    error = (model.detect_keypoints(source).value - reference.detect_keypoints(source).value).abs().max()
    assert 0 < error < 1e-2
    assert small.stat().st_size < 0.6 * ORIGINAL.stat().st_size


def test_a_model_that_blends_the_warped_source_converts_with_a_warning_for_the_original_code(tmp_path: Path) -> None:
    config = fm.resolve_config(CASE / "config.yaml")
    config = config.replace(generator=dataclasses.replace(config.generator, blend_warped_source=True), discriminator=None)
    model = fm.build_model(config)
    st = tmp_path / "blend.safetensors"
    write_safetensors(st, {n: getattr(model, n).state_dict() for n in ("kp_detector", "generator")}, config)
    with pytest.warns(UserWarning, match="blend_warped_source.*original first-order-model code does not have"):
        back = fm.convert_checkpoint(st, tmp_path / "blend.pth.tar")
    assert fm.load_model(back).config == config
    weights = fm.read_checkpoint(back).state_dicts  # without the config entry, the weights say it too
    assert fm.infer_model_config(weights["kp_detector"], weights["generator"]).generator.blend_warped_source


def test_written_files_have_ordinary_permissions(tmp_path: Path) -> None:
    import os
    import stat

    out = fm.convert_checkpoint(ORIGINAL, tmp_path / "m.safetensors")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


def test_atomic_path_keeps_a_suffix_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    from fomm_model.checkpoint import atomic_path

    (tmp_path / "clip.mp4").write_text("old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(tmp_path / "clip.mp4", suffix=".mp4") as temporary:
            assert temporary.name.endswith(".partial.mp4") and temporary.parent == tmp_path
            temporary.write_text("half")
            raise OSError("disk full")
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"] and (tmp_path / "clip.mp4").read_text() == "old"


def test_atomic_dir_replaces_a_folder_whole_with_ordinary_permissions(tmp_path: Path) -> None:
    import os
    import stat

    from fomm_model.checkpoint import atomic_dir

    target = tmp_path / "frames"
    target.mkdir()
    (target / "old.png").write_text("old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_dir(target) as temporary:
            (temporary / "new.png").write_text("new")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"] and [p.name for p in target.iterdir()] == ["old.png"]
    with atomic_dir(target) as temporary:
        assert temporary.parent == tmp_path and not (temporary / "old.png").exists()
        (temporary / "new.png").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"] and [p.name for p in target.iterdir()] == ["new.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~umask
