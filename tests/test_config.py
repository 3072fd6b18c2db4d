"""Typed configs: presets, the original YAML schema, validation and inference."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import fomm_model as fm
from fomm_model.config import ConfigError, preset_path, read_yaml
from fomm_model.training.config import RunConfig


def test_all_presets_resolve() -> None:
    assert len(fm.PRESET_NAMES) == 8
    for name in fm.PRESET_NAMES:
        config = fm.resolve_config(name)
        assert config.frame_shape == (256, 256)
        assert config.num_kp == 10 and config.estimate_jacobian


def test_preset_variants() -> None:
    assert fm.resolve_config("mgif-256").kp_detector.single_jacobian_map
    assert fm.resolve_config("vox-256").discriminator.sn
    adv = fm.resolve_config("vox-adv-256").discriminator
    assert adv.use_kp and not adv.sn
    assert RunConfig.from_yaml("taichi-adv-256").train.lr_kp_detector == 0


def test_yaml_round_trip(tmp_path: Path) -> None:
    import yaml

    run = RunConfig.from_yaml("mgif-256")
    path = tmp_path / "copy.yaml"
    path.write_text(yaml.safe_dump(run.to_mapping()))
    assert RunConfig.from_yaml(path) == run


def test_original_style_scientific_notation(tmp_path: Path) -> None:
    """PyYAML reads ``2e-4`` (no dot) as a string; the typed config still gets a float."""
    text = Path(fm.config.preset_path("vox-256")).read_text().replace("2.0e-4", "2e-4")
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert RunConfig.from_yaml(path).train.lr_generator == pytest.approx(2e-4)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    text = Path(fm.config.preset_path("vox-256")).read_text().replace("num_blocks: 5}", "num_blocks: 5, colour: red}", 1)
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="colour"):
        fm.resolve_config(path)


def test_not_a_config(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("just: text\n")
    with pytest.raises(ConfigError, match="model_params"):
        fm.resolve_config(path)
    with pytest.raises(ConfigError, match="preset"):
        fm.resolve_config("vox-512")


def test_json_round_trip() -> None:
    config = fm.resolve_config("taichi-adv-256").replace(frame_shape=(384, 512))
    assert fm.ModelConfig.from_json(config.to_json()) == config
    # our extension is named only where it is used: an original config stays the original schema
    assert "blend_warped_source" not in config.to_model_params()["generator_params"]
    blends = config.replace(generator=dataclasses.replace(config.generator, blend_warped_source=True))
    assert blends.to_model_params()["generator_params"]["blend_warped_source"] is True
    assert fm.ModelConfig.from_json(blends.to_json()) == blends


def test_size_rules() -> None:
    config = fm.resolve_config("vox-256")
    config.check_image_size(256, 384)
    assert config.size_multiple() == 128
    with pytest.raises(ValueError, match="multiples of 128"):
        config.check_image_size(200, 256)


def test_a_stated_frame_shape_must_fit_the_networks() -> None:
    """A checkpoint or YAML that states a frame size its own networks cannot take is refused
    when it is read (not later, with advice to resize images the loader fits anyway)."""
    wrong = fm.resolve_config("vox-256").replace(frame_shape=(256, 320))
    with pytest.raises(ConfigError, match="frame_shape 256x320 does not fit these networks: its sides must be multiples of 128"):
        fm.ModelConfig.from_json(wrong.to_json())
    data = read_yaml(preset_path("vox-256"))
    data["dataset_params"]["frame_shape"] = [200, 256, 3]
    with pytest.raises(ConfigError, match="frame_shape 200x256 does not fit"):
        fm.config.model_config_from_yaml_data(data)


@pytest.mark.parametrize(
    "changes",
    [
        dict(num_kp=5, estimate_jacobian=False),
        dict(num_kp=15, kp_detector=fm.KeypointDetectorConfig(block_expansion=8, max_features=32, num_blocks=3, scale_factor=0.5, single_jacobian_map=True)),
        dict(generator=fm.GeneratorConfig(block_expansion=16, max_features=32, num_down_blocks=3, num_bottleneck_blocks=2, estimate_occlusion_map=False, dense_motion=fm.DenseMotionConfig(block_expansion=8, max_features=64, num_blocks=3, scale_factor=1))),
        dict(discriminator=fm.DiscriminatorConfig(scales=(1, 0.5), block_expansion=8, max_features=64, num_blocks=3, sn=False, use_kp=True)),
        dict(kp_detector=fm.KeypointDetectorConfig(block_expansion=8, max_features=64, num_blocks=4, scale_factor=1 / 3)),
        dict(generator=fm.GeneratorConfig(block_expansion=8, max_features=128, blend_warped_source=True,
                                          dense_motion=fm.DenseMotionConfig(block_expansion=8, max_features=64))),
    ],
)
def test_inference_of_unpublished_architectures(changes: dict) -> None:
    base = fm.ModelConfig(
        kp_detector=fm.KeypointDetectorConfig(block_expansion=8, max_features=64),
        generator=fm.GeneratorConfig(block_expansion=8, max_features=128, dense_motion=fm.DenseMotionConfig(block_expansion=8, max_features=64)),
        discriminator=fm.DiscriminatorConfig(block_expansion=8, max_features=128),
    )
    config = base.replace(**changes)
    model = fm.build_model(config)
    inferred = fm.infer_model_config(
        model.kp_detector.state_dict(), model.generator.state_dict(), model.discriminator.state_dict()
    )
    # The generator's cap is unobservable when the widths never reach it; it changes nothing.
    rebuilt = fm.build_model(inferred)
    for name in ("kp_detector", "generator", "discriminator"):
        expected = {k: v.shape for k, v in getattr(model, name).state_dict().items()}
        assert {k: v.shape for k, v in getattr(rebuilt, name).state_dict().items()} == expected
    assert inferred.kp_detector == config.kp_detector
    assert inferred.generator.dense_motion == config.generator.dense_motion
    assert inferred.generator.blend_warped_source == config.generator.blend_warped_source
    assert inferred.discriminator == config.discriminator
    assert (inferred.num_kp, inferred.estimate_jacobian) == (config.num_kp, config.estimate_jacobian)


def test_invalid_values_are_named() -> None:
    with pytest.raises(ConfigError, match="scale_factor"):
        fm.ModelConfig.from_model_params(
            {**fm.resolve_config("vox-256").to_model_params(), "kp_detector_params": {"scale_factor": 2}}
        )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["dataset_params"].update(frame_shape=[100, 100, 3]), r"vox\.yaml: frame_shape 100x100 does not fit these networks: its sides must be multiples of 128"),
        (lambda c: c["dataset_params"].update(frame_shape=64), r"frame_shape must be \[height, width, channels\]"),
        (lambda c: c["train_params"].update(epoch_milestones=15), r"epoch_milestones must be a list, e\.g\. \[15\]"),
        (lambda c: c["train_params"].update(batch_size=0), r"batch_size must be at least 1"),
        (lambda c: c.update(train_param=c.pop("train_params")), r"unknown sections \['train_param'\]"),
        (lambda c: c["dataset_params"]["augmentation_params"]["flip_param"].update(horizontal_flip="maybe"),
         r"horizontal_flip must be true or false, got 'maybe'"),
        # augmentations: the original's nesting, and frames that leave them at frame_shape
        (lambda c: c["dataset_params"]["augmentation_params"].update(rotation_param=15),
         r"rotation_param must be written rotation_param: \{degrees: 30\} \(the original schema\), got 15"),
        (lambda c: c["dataset_params"]["augmentation_params"].update(crop_param=[256, 256]),
         r"crop_param must be written crop_param: \{size: \[256, 256\]\}"),
        (lambda c: c["dataset_params"]["augmentation_params"].update(crop_param={"size": 256}),
         r"crop_param\.size must be two numbers, e\.g\. \[256, 256\]"),
        (lambda c: c["dataset_params"]["augmentation_params"].update(rotation_param=0), r"rotation_param must be written"),
        (lambda c: c["dataset_params"]["augmentation_params"].update(crop_param={"size": None}), r"crop_param must be written"),
        (lambda c: c["dataset_params"]["augmentation_params"].update(rotation_param={"degrees": -5}),
         r"vox\.yaml: dataset_params\.augmentation_params\.rotation_param\.degrees must be a number, 0 or more, got -5"),
        (lambda c: c["dataset_params"]["augmentation_params"].update(resize_param={"ratio": [0.9, 1.1]}),
         r"resize_param changes the frames' size.*add crop_param: \{size: \[256, 256\]\}"),
        (lambda c: c["dataset_params"]["augmentation_params"].update(crop_param={"size": [200, 200]}),
         r"crop_param size \[200, 200\] does not fit these networks: its sides must be multiples of 128"),
    ],
)
def test_training_config_mistakes_are_named(edit, message: str) -> None:
    """Mistakes that used to pass silently (a misspelt section: all defaults) or crash later
    (a frame size the hourglasses cannot take: at the first step)."""
    config = read_yaml(preset_path("vox-256"))
    edit(config)
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_mapping(config, "vox.yaml")


def test_the_original_augmentations_are_read() -> None:
    """mgif's resize then crop back to frame_shape, with a rotation beside them."""
    config = read_yaml(preset_path("mgif-256"))
    config["dataset_params"]["augmentation_params"]["rotation_param"] = {"degrees": 30}
    aug = RunConfig.from_mapping(config).dataset.augmentation_params
    assert (aug.resize_param, aug.crop_param, aug.rotation_param) == ((0.9, 1.1), (256, 256), 30.0)


def test_quoted_booleans_mean_what_they_say() -> None:
    config = read_yaml(preset_path("vox-256"))
    config["dataset_params"]["augmentation_params"]["flip_param"].update(horizontal_flip="false", time_flip="True")
    flips = RunConfig.from_mapping(config).dataset.augmentation_params.flip_param
    assert flips is not None and flips.horizontal_flip is False and flips.time_flip is True
