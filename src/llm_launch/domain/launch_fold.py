"""Folding a request's Launch engine fields into the spec's fields, and Launch's common
fields that llm-launch stores or refuses.

Called by `domain.spec` (build_spec, apply_update) before the spec is built; the tables and
the rules they follow (null means absent, `trust_remote_code: false` too; flags, derived,
same_as and refused fields) are described in `domain.launch_fields`. The derived fields are
checked once the spec exists (`LaunchFold.check_derived`), and errors the spec's validation
finds in an `engine_args` entry a Launch field set are named by that field
(`LaunchFold.rename`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llm_launch.domain.engine_flags import (
    SGLANG_OPTIONS_VERSION,
    engine_arg_key_problem,
    engine_flag,
    sglang_options,
)
from llm_launch.domain.errors import FieldError
from llm_launch.domain.frameworks import InferenceFramework
from llm_launch.domain.inputs import clip
from llm_launch.domain.launch_fields import (
    ENGINE_FIELD_TYPES,
    FIELDS,
    FRAMEWORK_NAMES,
    Kind,
    LaunchField,
)

if TYPE_CHECKING:
    from llm_launch.domain.spec import EndpointSpec


@dataclass
class LaunchFold:
    """What folding a request's Launch engine fields gave, beyond the changed values."""

    errors: list[FieldError] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict)  # engine_args key -> Launch field
    derived: dict[str, object] = field(default_factory=dict)  # derived field -> value sent
    framework: InferenceFramework | None = None

    def rename(self, errors: Iterable[FieldError]) -> list[FieldError]:
        """Errors about an `engine_args` entry a Launch field set, named by that field."""
        renamed = []
        for error in errors:
            key = error.field.removeprefix("engine_args.")
            origin = self.origins.get(key) if error.field.startswith("engine_args.") else None
            if origin is None:
                renamed.append(error)
            else:
                message = error.message.replace(f"engine_args.{key}", origin)
                renamed.append(FieldError(origin, message))
        return renamed

    def check_derived(self, spec: EndpointSpec) -> list[FieldError]:
        """Each derived field sent must equal what llm-launch computes for `spec`."""
        if self.framework is None:
            return []
        errors = []
        for name, sent in self.derived.items():
            derivation = FIELDS[self.framework][name].derivation
            assert derivation is not None
            needed = derivation.compute(spec)
            if needed is None:
                errors.append(FieldError(name, f"{derivation.why}; leave it null"))
            elif not _same(sent, needed):
                errors.append(
                    FieldError(
                        name,
                        f"must be {clip(needed)}, what llm-launch computes "
                        f"({derivation.formula}), or null (got {clip(sent)})",
                    )
                )
        return errors


def fold_launch_fields(
    values: dict[str, Any],
    framework: object,
    *,
    stored_engine_args: Mapping[str, Any] | None = None,
) -> LaunchFold:
    """Take every Launch engine field out of `values` (a create's fields, or an update's
    changes) and fold the non-null ones in: flags into `values["engine_args"]`, same_as
    fields into their llm-launch field. On update `stored_engine_args` is the endpoint's
    current map, the base when the update sends no `engine_args` of its own. Derived
    fields are kept in the result, to be checked against the finished spec."""
    fold = LaunchFold()
    sent = {}
    for name in ENGINE_FIELD_TYPES:
        value = values.pop(name, None)
        if value is not None and not (value is False and _false_is_absent(name)):
            sent[name] = value
    try:
        fold.framework = InferenceFramework(str(framework))
    except ValueError:
        return fold  # an unknown framework is reported by validation, with the choices
    table = FIELDS[fold.framework]
    flags = {}
    for name, value in sent.items():
        f = table.get(name)
        if f is None:
            fold.errors.append(_other_framework(name, fold.framework))
        elif f.kind is Kind.FLAG:
            flags[name] = value
        elif f.kind is Kind.DERIVED:
            fold.derived[name] = value
        elif f.kind is Kind.SAME_AS:
            fold.errors += _fill_same_as(values, f, value, fold.framework)
        else:
            fold.errors.append(FieldError(name, f.why))
    if flags:
        _fold_flags(values, flags, fold, stored_engine_args)
    return fold


def _false_is_absent(name: str) -> bool:
    return any(t[name].false_is_absent for t in FIELDS.values() if name in t)


_ARTICLES = {InferenceFramework.VLLM: "a", InferenceFramework.SGLANG: "an"}


def _other_framework(name: str, framework: InferenceFramework) -> FieldError:
    other = next(fw for fw in FIELDS if fw is not framework)
    return FieldError(
        name,
        f"is {_ARTICLES[other]} {FRAMEWORK_NAMES[other]} field of Launch; this endpoint runs "
        f"{framework.value}",
    )


def _fill_same_as(
    values: dict[str, Any], f: LaunchField, value: Any, framework: InferenceFramework
) -> list[FieldError]:
    if (
        f.name == "chat_template"
        and framework is InferenceFramework.SGLANG
        and isinstance(value, str)
        and "{" not in value
    ):
        # SGLang reads a bare word or path as a built-in template's name or a file in the
        # image; llm-launch hands the engine a file holding the text it was sent.
        return [
            FieldError(
                f.name,
                "must be the template's Jinja text: SGLang would read this as a built-in "
                "template's name or a file path, which llm-launch does not pass on",
            )
        ]
    wanted = f"hf://{value}" if f.name == "huggingface_repo" else value
    current = values.get(f.same_as)
    if current is None:
        values[f.same_as] = wanted
        return []
    if _same(current, wanted):
        return []
    return [
        FieldError(
            f.name,
            f"is {clip(value)} but {f.same_as} is {clip(current)}, the same setting in "
            "llm-launch; remove one or make them agree",
        )
    ]


def _fold_flags(
    values: dict[str, Any],
    flags: dict[str, Any],
    fold: LaunchFold,
    stored: Mapping[str, Any] | None,
) -> None:
    """Set each Launch flag field in engine_args, after the checks only it needs."""
    framework = fold.framework
    assert framework is not None
    sent_args = values.get("engine_args")
    if sent_args is not None and not isinstance(sent_args, Mapping):
        return  # validation reports a malformed engine_args
    args = dict(sent_args if sent_args is not None else stored or {})
    chosen = set(args) if sent_args is not None else set()  # sent now: must agree
    resolved = {key: engine_flag(key, framework) for key in args}
    for name, value in flags.items():
        key = FIELDS[framework][name].engine_key
        if framework is InferenceFramework.SGLANG and (gone := _sglang_gone(key)):
            fold.errors.append(FieldError(name, gone))
            continue
        flag = engine_flag(key, framework)
        clash = [k for k, v in resolved.items() if v == flag]
        agreed = [k for k in clash if k in chosen]
        if disagreement := _disagreement(name, value, flag, agreed, args, fold.origins):
            fold.errors.append(disagreement)
            continue
        for k in set(clash) - set(agreed):  # a stored value: this update replaces it
            del args[k], resolved[k]
        if not agreed:
            args[key], resolved[key], fold.origins[key] = value, flag, name
            chosen.add(key)
    values["engine_args"] = args


def _disagreement(
    name: str,
    value: Any,
    flag: str,
    agreed: list[str],
    args: Mapping[str, Any],
    origins: Mapping[str, str],
) -> FieldError | None:
    for key in agreed:
        if not _same(args[key], value):
            source = origins.get(key, f"engine_args.{key}")
            return FieldError(
                name,
                f"is {clip(value)} but {source} is {clip(args[key])}; both set {flag}: "
                "remove one or make them agree",
            )
    return None


def _sglang_gone(key: str) -> str | None:
    """Why a Launch SGLang flag field cannot be passed to SGLang, or None if it can."""
    if engine_arg_key_problem(key, InferenceFramework.SGLANG) is None:
        return None
    flag = f"--{key}"
    successors = sorted(o for o in sglang_options() if o.startswith(flag))
    hint = (
        f" (it has {', '.join(successors)}: set the one you mean in engine_args)"
        if successors
        else ""
    )
    return (
        f"sets SGLang's {flag}, which SGLang {SGLANG_OPTIONS_VERSION} no longer has{hint}; "
        "leave it null"
    )


def _same(a: object, b: object) -> bool:
    """Equal as JSON: 1 and true differ, as they do on a command line."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# --- Launch's common fields ------------------------------------------------------------

UNSUPPORTED_COMMON = {
    "post_inference_hooks": "llm-launch does not support post-inference hooks (Launch runs "
    "them after each completion, e.g. its 'callback' hook); leave it null or []",
    "default_callback_url": "llm-launch does not support completion callbacks; leave it null",
    "default_callback_auth": "llm-launch does not support completion callbacks; leave it null",
}


def refuse_unsupported(values: dict[str, Any]) -> list[FieldError]:
    """Take out the common fields asking for what llm-launch does not have: a 422 for each
    value that asks for it, nothing for the null or empty values the client sends."""
    errors = []
    for name, why in UNSUPPORTED_COMMON.items():
        value = values.pop(name, None)
        if value is not None and value != []:
            errors.append(FieldError(name, why))
    return errors


def quantity_text(values: dict[str, Any]) -> None:
    """Launch takes memory and storage as a number of bytes too: write them as quantities."""
    for name in ("memory", "storage"):
        value = values.get(name)
        if isinstance(value, float) and value.is_integer():
            values[name] = str(int(value))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            values[name] = str(value)


__all__ = [
    "UNSUPPORTED_COMMON",
    "LaunchFold",
    "fold_launch_fields",
    "quantity_text",
    "refuse_unsupported",
]
