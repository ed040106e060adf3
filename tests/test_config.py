from __future__ import annotations

import dataclasses

import pytest

from anchorgen.config import BaseConfig, require
from anchorgen.errors import ConfigError
from anchorgen.prepare.pipeline import PrepareConfig


@dataclasses.dataclass
class Inner(BaseConfig):
    rate: float = 0.5
    """A rate in (0, 1]."""

    def __post_init__(self) -> None:
        require(0 < self.rate <= 1, f"rate must be in (0, 1], got {self.rate}")


@dataclasses.dataclass
class Outer(BaseConfig):
    name: str = "x"
    """The name."""
    sizes: tuple[int, ...] = (1, 2)
    """Some sizes."""
    inner: Inner = dataclasses.field(default_factory=Inner)
    """A nested section."""


def test_unknown_key_lists_valid_keys():
    with pytest.raises(
        ConfigError, match=r"unknown key\(s\) 'nmae'.*valid keys: inner, name, sizes"
    ):
        Outer.from_dict({"nmae": "y"})
    with pytest.raises(ConfigError, match=r"valid keys: rate"):
        Outer.from_dict({"inner": {"speed": 1}})


def test_validation_runs_on_load_and_override():
    with pytest.raises(ConfigError, match="rate must be in"):
        Outer.from_dict({"inner": {"rate": 2}})
    cfg = Outer().with_overrides(["inner.rate=0.25", "sizes=[3, 4]", "name=abc"])
    assert cfg.inner.rate == 0.25 and cfg.sizes == (3, 4) and cfg.name == "abc"
    with pytest.raises(ConfigError):
        Outer().with_overrides(["inner.rate=7"])
    with pytest.raises(ConfigError, match="key=value"):
        Outer().with_overrides(["inner.rate"])


def test_yaml_and_toml_round_trip(tmp_path):
    cfg = Outer(name="y", sizes=(5,), inner=Inner(rate=1.0))
    cfg.save(tmp_path / "c.yaml")
    assert Outer.load(tmp_path / "c.yaml") == cfg
    (tmp_path / "c.toml").write_text('name = "t"\nsizes = [7]\n[inner]\nrate = 1\n')
    assert Outer.load(tmp_path / "c.toml") == Outer(name="t", sizes=(7,), inner=Inner(rate=1.0))
    with pytest.raises(ConfigError, match="not found"):
        Outer.load(tmp_path / "missing.yaml")


def test_every_field_is_documented():
    for cls in (Outer, Inner, PrepareConfig):
        docs = cls.field_docs()
        missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
        assert not missing, f"{cls.__name__} fields without a docstring: {missing}"


def test_prepare_config_validation():
    with pytest.raises(ConfigError, match="size must be a multiple of 8"):
        PrepareConfig.from_dict({"size": 100})
    with pytest.raises(ConfigError, match="pad_mode"):
        PrepareConfig().with_overrides(["pad_mode=wrap"])


def test_exponent_without_a_dot_is_a_float_override():
    # YAML 1.1 reads 1e-4 (no dot) as the string "1e-4"
    cfg = Outer().with_overrides(["inner.rate=1e-4"])
    assert cfg.inner.rate == pytest.approx(1e-4) and isinstance(cfg.inner.rate, float)
    with pytest.raises(ConfigError):
        Outer().with_overrides(["inner.rate=fast"])


def test_numbers_and_switches_of_the_wrong_type_are_refused():
    from anchorgen.generate import GenerateConfig

    with pytest.raises(ConfigError, match=r"face_enhance: expected bool, got 'none'"):
        GenerateConfig().with_overrides(["face_enhance=none"])
    with pytest.raises(ConfigError, match=r"window_size: expected int, got 'abc'"):
        GenerateConfig().with_overrides(["window_size=abc"])
    with pytest.raises(ConfigError, match=r"seed: expected int, got True"):
        GenerateConfig().with_overrides(["seed=true"])
    with pytest.raises(ConfigError, match=r"inner.rate: expected float, got False"):
        Outer.from_dict({"inner": {"rate": False}})
    cfg = GenerateConfig().with_overrides(
        ["face_enhance=false", "window_size=8", "guidance_scale=2"]
    )
    assert cfg.face_enhance is False and cfg.window_size == 8 and cfg.guidance_scale == 2.0


def test_switch_words_stay_text_in_overrides():
    from anchorgen.generate import GenerateConfig

    # YAML 1.1 reads off / yes as booleans: compile=off must still mean the text "off"
    assert GenerateConfig().with_overrides(["compile=off"]).compile == "off"
    assert GenerateConfig().with_overrides(["face_enhance=no"]).face_enhance is False
    assert GenerateConfig().with_overrides(["face_enhance=On"]).face_enhance is True
    with pytest.raises(ConfigError, match=r"name: expected text, got False.*quote it"):
        Outer.from_dict({"name": False})  # a YAML file's unquoted `name: off`
