"""YAML mapping -> dataclass, strictly: unknown keys and wrong types are errors naming the key path.

``dataclass_from_dict(Recipe, data, where="recipe.yaml")`` builds nested dataclasses (fields typed as
a dataclass, ``list[Dataclass]`` or ``dict[str, Dataclass]``), accepts ints for floats (YAML writes
``1`` for ``1.0``), and reports problems as ``ConfigError("<where>.<key>: ...")`` with a did-you-mean.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from embedforge.errors import ConfigError, did_you_mean


def dataclass_from_dict(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, checking keys and types (nested dataclasses too)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise ConfigError(f"{where}.{key}: unknown key.{did_you_mean(str(key), fields)}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        required = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        if name not in data:
            if required:
                raise ConfigError(f"{where}: missing required key {name!r}")
            continue
        values[name] = _convert(data[name], hints[name], f"{where}.{name}")
    try:
        return cls(**values)
    except ConfigError as error:
        message = str(error)
        raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None


def convert_value(value: Any, hint: Any, where: str) -> Any:
    """Check one value against a type hint (building dataclasses; ints become floats where floats are expected).

    Raises:
        ConfigError: ``"<where>: expected <type>, got ..."``.
    """
    return _convert(value, hint, where)


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against ``hint``; build dataclasses; ints become floats where floats are expected."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        arguments = typing.get_args(hint)
        if value is None and type(None) in arguments:
            return None
        for argument in arguments:
            if argument is type(None):
                continue
            if _dataclass(argument) and isinstance(value, Mapping):
                return dataclass_from_dict(argument, value, where)
            if _type_ok(value, argument):
                return _convert(value, argument, where)
        raise ConfigError(f"{where}: expected {type_name(hint)}, got {type(value).__name__} {value!r}")
    if _dataclass(hint):
        return dataclass_from_dict(hint, value, where)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_type, value_type = typing.get_args(hint) or (Any, Any)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return {_convert(k, key_type, f"{where}"): _convert(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if not _type_ok(value, hint):
        raise ConfigError(f"{where}: expected {type_name(hint)}, got {type(value).__name__} {value!r}")
    if hint is float and isinstance(value, int):
        return float(value)
    return value


def _dataclass(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _type_ok(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if _dataclass(hint):
        return isinstance(value, Mapping | hint)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if origin is dict:
        key_type, value_type = typing.get_args(hint) or (Any, Any)
        return isinstance(value, Mapping) and all(
            _type_ok(k, key_type) and _type_ok(v, value_type) for k, v in value.items()
        )
    return isinstance(value, hint) if isinstance(hint, type) else True


def type_name(hint: Any) -> str:
    """Readable name of a type hint for error messages."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def to_plain(obj: Any) -> Any:
    """Dataclasses (nested) -> plain dicts/lists, for YAML dumps of resolved configs."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    return obj
