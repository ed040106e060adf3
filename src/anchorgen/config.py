"""Dataclass configs: one documented, validated home for every setting.

Every config is a ``@dataclass`` whose fields carry a docstring (the string literal right
after the field, read from the source), validated in ``__post_init__``. Configs load from
YAML or TOML, take ``dotted.key=value`` overrides from the command line, and refuse unknown
keys with a message listing the valid ones. Named presets live in ``PRESETS`` below.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import json
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import tomllib
import yaml

from anchorgen.errors import ConfigError

C = TypeVar("C", bound="BaseConfig")


class BaseConfig:
    """Mixin for dataclass configs: dict/YAML/TOML round-trips, overrides, field docs."""

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], *, where: str = "") -> C:
        """Build from a nested dict; unknown keys raise ``ConfigError`` listing valid keys."""
        if not isinstance(data, dict):
            raise ConfigError(
                f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}"
            )
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(repr(k) for k in unknown)} in {where or cls.__name__}; "
                f"valid keys: {', '.join(sorted(fields))}"
            )
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for name, value in data.items():
            kwargs[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name)
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where or cls.__name__}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def with_overrides(self: C, overrides: list[str] | None) -> C:
        """Apply ``a.b=value`` strings (value parsed as YAML) and re-validate."""
        data = self.to_dict()
        for item in overrides or []:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form key=value")
            key, raw = item.split("=", 1)
            parts = key.strip().split(".")
            node = data
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"override {key!r}: {part!r} is not a config section")
                node = node[part]
            node[parts[-1]] = _override_value(raw)
        return type(self).from_dict(data)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        from anchorgen.io.atomic import atomic_write_text

        atomic_write_text(path, text)

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        """Load YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        text = path.read_text()
        try:
            if path.suffix == ".toml":
                data = tomllib.loads(text)
            elif path.suffix == ".json":
                data = json.loads(text)
            else:
                data = yaml.safe_load(text) or {}
        except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot parse {path}: {exc}") from exc
        return cls.from_dict(data, where=path.name)

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Field name -> the docstring written under it in the class body."""
        return _field_docs(cls)


YAML11_SWITCHES = {"on": True, "yes": True, "y": True, "off": False, "no": False, "n": False}
"""Words YAML 1.1 reads as booleans; an override keeps them as text (``compile=off``), and a
boolean setting accepts them."""


def _override_value(raw: str) -> Any:
    """An override's value: YAML, except that YAML 1.1's switch words stay text."""
    if not raw.strip():
        return ""
    if raw.strip().lower() in YAML11_SWITCHES:
        return raw.strip()
    return yaml.safe_load(raw)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Convert YAML/TOML values into the annotated type (nested configs, tuples, paths)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(non_none[0], value, where) if len(non_none) == 1 else value
    if inspect.isclass(hint) and issubclass(hint, BaseConfig):
        return value if isinstance(value, hint) else hint.from_dict(value, where=where)
    if origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        return tuple(value)
    if origin is list and isinstance(value, (list, tuple)):
        return [_coerce(args[0], v, where) for v in value] if args else list(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            return value
    if hint is Path and isinstance(value, str):
        return Path(value)
    if hint is bool and isinstance(value, str) and value.lower() in YAML11_SWITCHES:
        return YAML11_SWITCHES[value.lower()]
    if hint is str and isinstance(value, bool):
        raise ConfigError(
            f"{where}: expected text, got {value!r} (YAML reads unquoted on/off/yes/no as a "
            "boolean: quote it)"
        )
    # a bool is an int to Python, never to a config: steps=true and face_enhance=none are errors
    if (hint is bool and not isinstance(value, bool)) or (
        hint in (int, float) and (isinstance(value, bool) or not isinstance(value, hint))
    ):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _field_docs(cls: type) -> dict[str, str]:
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def require(condition: bool, message: str) -> None:
    """Validation helper for ``__post_init__``: raise ``ValueError(message)`` if false."""
    if not condition:
        raise ValueError(message)
