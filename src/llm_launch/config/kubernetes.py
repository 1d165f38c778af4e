"""The installation's configuration file: one YAML file for `serve --config` and
`render --config` (or LLM_LAUNCH_CONFIG), read into `KubernetesConfig` and
`KubernetesTiming`, refused at start with every problem named by its key path.

The file has two sections, each a mapping onto a dataclass's fields, read generically
(by the fields' type hints), so a field added to either dataclass is configurable without
touching this module; a nested dataclass (`plan_options`, `priority_classes`,
`timing.retry`, ...) is a nested mapping, and fields left out keep their defaults:

    kubernetes:   # KubernetesConfig (backends/kubernetes/config.py)
    timing:       # KubernetesTiming (backends/kubernetes/backend.py)

Precedence: a command-line flag (or its environment variable) wins over the file, the
file over the defaults. Flags come in as `overrides` keyed by dotted path
(`kubernetes.namespace`), merged into the file's mapping before it is read, so a flag's
value goes through the same checks as the file's. deploy/kubernetes/config.example.yaml
shows every key.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from llm_launch.backends.kubernetes.backend import KubernetesTiming
from llm_launch.backends.kubernetes.config import KubernetesConfig
from llm_launch.domain.errors import InvalidRequest

__all__ = ["ConfigFileError", "InstallationConfig", "load_installation_config"]

# Section -> the dataclass it is read into.
SECTIONS: Mapping[str, type] = {"kubernetes": KubernetesConfig, "timing": KubernetesTiming}
# Fields the file cannot set, and what sets them instead.
NOT_IN_FILE: Mapping[str, str] = {
    "kubernetes.catalog": "the hardware catalog has its own file: --hardware-catalog "
    "(LLM_LAUNCH_HARDWARE_CATALOG)",
}


class ConfigFileError(ValueError):
    """The configuration cannot be used; one line per problem, each naming its key path."""


@dataclasses.dataclass(frozen=True)
class InstallationConfig:
    kubernetes: KubernetesConfig
    timing: KubernetesTiming


class _Problems(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def read_config_file(path: Path) -> dict[str, Any]:
    """The file's top-level mapping (an empty file is an empty mapping)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigFileError(f"{path}: not valid YAML{line}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: must be a mapping with {', '.join(SECTIONS)} sections")
    return data


def load_installation_config(
    path: Path | None,
    overrides: Mapping[str, Any] | None = None,
    fixed: Mapping[str, Any] | None = None,
) -> InstallationConfig:
    """Read `path` (None: no file), apply `overrides` (dotted key -> value, from flags), and
    build the configuration; `fixed` are KubernetesConfig fields the file does not set
    (the catalog). Raise ConfigFileError listing every problem."""
    source = str(path) if path is not None else "configuration"
    raw = read_config_file(path) if path is not None else {}
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    problems = _unknown_keys(raw, SECTIONS, "")
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        extra = dict(fixed or {}) if cls is KubernetesConfig else {}
        try:
            sections[name] = _dataclass(cls, raw.get(name) or {}, name, extra)
        except _Problems as exc:
            problems += exc.problems
    if "kubernetes" in sections:
        problems += _plan_option_problems(sections["kubernetes"])
    if "timing" in sections:
        problems += _timing_problems(sections["timing"], "timing")
    if problems:
        raise ConfigFileError("\n".join(f"{source}: {p}" for p in problems))
    return InstallationConfig(kubernetes=sections["kubernetes"], timing=sections["timing"])


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = raw
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[last] = value


def _unknown_keys(raw: Mapping[Any, Any], known: Mapping[str, Any], prefix: str) -> list[str]:
    return [_unknown(key, known, prefix) for key in raw if key not in known]


def _unknown(key: Any, known: Mapping[str, Any] | list[str], prefix: str) -> str:
    path = f"{prefix}{key}"
    if path in NOT_IN_FILE:
        return f"{path}: not set in this file; {NOT_IN_FILE[path]}"
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    if close:
        return f"{path}: unknown key; did you mean {prefix}{close[0]}?"
    return f"{path}: unknown key (known: {', '.join(sorted(known))})"


def _dataclass(cls: type, value: Any, path: str, extra: Mapping[str, Any]) -> Any:
    """`value` (a mapping, or a string for a class with `parse`) as an instance of `cls`."""
    if isinstance(value, str) and callable(getattr(cls, "parse", None)):
        try:
            return cls.parse(value)  # type: ignore[attr-defined]
        except ValueError as exc:
            raise _Problems([f"{path}: {exc}"]) from exc
    if not isinstance(value, dict):
        raise _Problems([f"{path}: must be a mapping (got {_shown(value)})"])
    hints = typing.get_type_hints(cls)
    settable = {
        f.name: hints[f.name]
        for f in dataclasses.fields(cls)
        if f.init and _convertible(hints[f.name]) and f"{path}.{f.name}" not in NOT_IN_FILE
    }
    problems = [_unknown(key, settable, f"{path}.") for key in value if key not in settable]
    kwargs = dict(extra)
    for key, item in value.items():
        if key in settable:
            try:
                kwargs[key] = _convert(item, settable[key], f"{path}.{key}")
            except _Problems as exc:
                problems += exc.problems
    if problems:
        raise _Problems(problems)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # the dataclass's own checks name the field
        raise _Problems([f"{path}: {exc}"]) from exc


def _convertible(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return all(_convertible(a) for a in typing.get_args(hint))
    if origin in (tuple, dict, Mapping):
        return all(_convertible(a) for a in typing.get_args(hint) if a is not Ellipsis)
    if isinstance(hint, type) and (dataclasses.is_dataclass(hint) or issubclass(hint, enum.Enum)):
        return True
    return hint in (str, int, float, bool, type(None))


def _convert(value: Any, hint: Any, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, path)
            except _Problems:
                continue
        wanted = " or ".join(_type_name(a) for a in args)
        raise _Problems([f"{path}: must be {wanted} (got {_shown(value)})"])
    if origin is tuple:
        if not isinstance(value, list):
            raise _Problems([f"{path}: must be a list (got {_shown(value)})"])
        return tuple(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise _Problems([f"{path}: must be a mapping (got {_shown(value)})"])
        return {str(k): _convert(v, args[1], f"{path}.{k}") for k, v in value.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass(hint, value, path, {})
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        choices = [m.value for m in hint]
        if value not in choices:
            raise _Problems([f"{path}: must be one of {', '.join(map(str, choices))}"])
        return hint(value)
    return _scalar(value, hint, path)


def _scalar(value: Any, hint: Any, path: str) -> Any:
    if hint is bool and isinstance(value, bool):
        return value
    if isinstance(value, bool):  # YAML's yes/no/true are not numbers or names
        raise _Problems([f"{path}: must be {_type_name(hint)} (got {_shown(value)})"])
    if hint is int and isinstance(value, int):
        return value
    if hint is float and isinstance(value, int | float):
        return float(value)
    if hint is str and isinstance(value, str):
        return value
    if hint is str and isinstance(value, int | float):
        return str(value)  # `forwarder_cpu: 2`: YAML reads a bare quantity as a number
    raise _Problems([f"{path}: must be {_type_name(hint)} (got {_shown(value)})"])


def _type_name(hint: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return names.get(hint, "null" if hint is type(None) else getattr(hint, "__name__", str(hint)))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _plan_option_problems(config: KubernetesConfig) -> list[str]:
    try:
        config.plan_options.check()
    except InvalidRequest as exc:
        return [f"kubernetes.plan_options.{e.field}: {e.message}" for e in exc.errors]
    return []


def _timing_problems(timing: Any, path: str) -> list[str]:
    """Durations (`*_s`) are positive, counts never negative, and a jitter is below 1."""
    problems = []
    for f in dataclasses.fields(timing):
        value = getattr(timing, f.name)
        if dataclasses.is_dataclass(value):
            problems += _timing_problems(value, f"{path}.{f.name}")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if f.name == "jitter":
                bad, bound = not 0 <= value < 1, "in [0, 1)"
            elif f.name.endswith("_s"):
                bad, bound = value <= 0, "> 0 seconds"
            else:
                bad, bound = value < 0, ">= 0"
            if bad:
                problems.append(f"{path}.{f.name}: must be {bound} (got {value})")
    return problems
