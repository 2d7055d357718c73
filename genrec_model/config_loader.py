"""Typed config loading: nested frozen dataclasses from YAML plus `key=value` overrides.

Generic over any dataclass tree, so each component declares its own config
dataclass and the top-level config just nests them. Errors name the full dotted
key and say what was expected.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

REQUIRED = "???"  # marks a value the config file or the command line must supply


class ConfigError(ValueError):
    """A config file or override that does not fit the declared config types."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against type `tp`, converting only where lossless (int -> float, list -> tuple)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        present = [opt for opt in options if opt is not type(None)]
        if len(present) == 1:  # `X | None`: X's own error names the exact key (e.g. a list element)
            return _coerce(value, present[0], key)
        for opt in present:
            try:
                return _coerce(value, opt, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{key}: expected one of {list(get_args(tp))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for section {tp.__name__}, got {value!r}")
        return _build(tp, value, key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        k_tp, v_tp = get_args(tp) or (Any, Any)
        return {_coerce(k, k_tp, key): _coerce(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        # YAML reads 2024-01-01 as a date and 8g as a string; dates arrive as str below.
        return str(value)
    if tp is str and hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(tp, type):
        if tp is int and isinstance(value, bool) or tp is float and isinstance(value, bool):
            raise ConfigError(f"{key}: expected {tp.__name__}, got bool {value!r}")
        if not isinstance(value, tp):
            raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp!r}")


_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = prefix or "top level"
        raise ConfigError(f"unknown config key(s) {', '.join(_join(prefix, k) for k in unknown)} "
                          f"(known at {where}: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], key)
        elif dataclasses.is_dataclass(hints[name]) and f.default is dataclasses.MISSING \
                and f.default_factory is dataclasses.MISSING:
            kwargs[name] = _build(hints[name], {}, key)
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as e:  # a dataclass __post_init__ validation
        raise ConfigError(f"{prefix or 'config'}: {e}") from e
    except TypeError as e:
        missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        raise ConfigError(f"missing required config key(s): {', '.join(_join(prefix, m) for m in missing)}") from e
    for name in fields:
        if getattr(obj, name) == REQUIRED:
            raise ConfigError(f"config key {_join(prefix, name)} is required (set it in the YAML or as "
                              f"{_join(prefix, name)}=...)")
    return obj


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a","b","c"], value) with the value parsed as YAML (3 -> int, true -> bool)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError):  # e.g. 2024-13-01 is no date: keep the text, let the type check speak
        value = raw
    return key.split("."), value


def _deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml_tree(path: str | Path) -> dict:
    """Read a YAML config; a top-level `extends: other.yaml` (relative to this file) is merged under it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    parent = data.pop("extends", None)
    if parent:
        data = _deep_merge(read_yaml_tree(path.parent / parent), data)
    return data


def load_dataclass(cls: type, path: str | Path | None, overrides: list[str] = ()) -> Any:
    data = read_yaml_tree(path) if path else {}
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {k} is not a section")
            node = child
        node[keys[-1]] = value
    return _build(cls, data)


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def stable_hash(obj: Any, length: int | None = 12) -> str:
    """The project's one content hash (configs, manifests, artifact versions): sha256 hex of `obj`'s
    bytes, or of its canonical JSON (sorted keys) for anything else; `length=None` keeps all 64 digits."""
    blob = obj if isinstance(obj, bytes) else json.dumps(to_dict(obj), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


