"""Presets and shipped configs: every one validates, documents its fields, refuses unknown keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from anchorgen.errors import ConfigError
from anchorgen.presets import PRESETS, ModelConfig, TrainConfig, get_preset

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "anchorgen" / "configs"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_shipped_config_validates_and_matches_its_preset(name):
    path = CONFIGS / f"{name}.yaml"
    assert path.is_file(), f"regenerate: get_preset({name!r}).save({path})"
    assert TrainConfig.load(path).to_dict() == get_preset(name).to_dict()


def test_every_field_is_documented():
    for cls in (ModelConfig, TrainConfig):
        import dataclasses

        names = {f.name for f in dataclasses.fields(cls)}
        assert names == set(cls.field_docs()), (
            f"{cls.__name__}: undocumented {names - set(cls.field_docs())}"
        )


def test_unknown_keys_error_lists_valid_keys():
    with pytest.raises(
        ConfigError, match=r"unknown key\(s\) 'lerning_rate'.*valid keys:.*learning_rate"
    ):
        get_preset("tiny").with_overrides(["lerning_rate=1e-4"])
    with pytest.raises(ConfigError, match=r"'tempral'.*valid keys:.*temporal"):
        get_preset("tiny").with_overrides(["model.tempral=true"])
    with pytest.raises(
        ConfigError, match=f"unknown preset 'sd21'; valid presets: {', '.join(PRESETS)}"
    ):
        get_preset("sd21")


def test_invalid_values_are_refused_with_the_reason():
    with pytest.raises(ConfigError, match="clip_length must be in"):
        get_preset("scratch-256").with_overrides(["clip_length=1"])
    with pytest.raises(ConfigError, match="conditioning_channels has 3 entries"):
        get_preset("scratch-256").with_overrides(["model.codec_factor=8"])
    with pytest.raises(ConfigError, match="stage must be one of"):
        get_preset("tiny").with_overrides(["stage=pre"])


def test_overrides_round_trip_through_yaml(tmp_path):
    config = get_preset("face").with_overrides(
        ["datasets=[a, b]", "model.temporal=false", "steps=7"]
    )
    config.save(tmp_path / "c.yaml")
    loaded = TrainConfig.load(tmp_path / "c.yaml")
    assert (
        loaded == config and loaded.datasets == [Path("a"), Path("b")] and loaded.model.inpainting
    )


def test_cli_train_dry_run_reports_a_missing_dataset(tmp_path):
    from typer.testing import CliRunner

    from anchorgen.cli import app
    from anchorgen.errors import InputError

    args = [
        "train",
        "--preset",
        "tiny",
        "--dry-run",
        f"datasets=[{tmp_path / 'nope'}]",
        f"output_dir={tmp_path / 'run'}",
    ]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, InputError) and "dataset not found" in str(result.exception)
    result = CliRunner().invoke(app, ["train", "--preset", "tiny", "--config", "x.yaml"])
    assert isinstance(result.exception, ConfigError) and "exactly one of" in str(result.exception)
    help_text = CliRunner().invoke(app, ["train", "--help"]).output
    assert "--dry-run" in help_text and "scratch-256" in help_text


def test_presets_train_the_motion_modules_they_start_without():
    """`anchorgen train --preset scratch-256` trains its temporal layers (they start random);
    sd15 keeps the AnimateDiff adapter it loads, as IV-C1 does in identity fine-tuning."""
    assert not get_preset("scratch-256").temporal_frozen
    assert get_preset("scratch-256").replace(init_from="runs/stage1").temporal_frozen
    assert get_preset("sd15").temporal_frozen
    assert not get_preset("sd15").replace(stage="pretrain").temporal_frozen
