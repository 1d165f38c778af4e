"""Whether an `engine_args` key is a flag the engine may be given, read as its parser reads it.

Called by `domain.validation` for every `engine_args` key; the renderer
(`engines/args.py`) writes each key as `--` + `flag_name(key)`, exactly the spelling
checked here. SGLang's and vLLM's parsers are argparse with `allow_abbrev`: an unambiguous
prefix selects a flag (`--hos` is `--host`) and short options map to long ones (`-p`). So
a key is refused when it is, or could be read as, a flag llm-launch sets itself: spelt in
another case or with `_`/`-` moved (`HOST`, `ho_st`), a prefix of it (`hos`), an alias
(`nccl-init-addr` is SGLang's `--dist-init-addr`), or a short option. For SGLang the
resolution runs against its real option list (`sglang_options.txt`, SGLang 0.5.23), so a
key that is no SGLang flag at all is refused too, naming the closest one: the simulated
engine would ignore it silently and the real one would exit.
"""

from __future__ import annotations

import difflib
import re
from functools import cache
from importlib import resources

from llm_launch.domain.frameworks import RESERVED_ENGINE_ARGS, InferenceFramework, flag_name
from llm_launch.domain.limits import MAX_ENGINE_ARG_KEY_CHARS

SGLANG_OPTIONS_VERSION = "0.5.23"
_KEY = re.compile(r"(--)?[a-z][a-z0-9]*([-_][a-z0-9]+)*")


@cache
def sglang_options() -> dict[str, str]:
    """Each long option of SGLang's parser -> the main option of its action."""
    text = resources.files(__package__).joinpath("sglang_options.txt").read_text("utf-8")
    options: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names = line.split()
            options.update({name: names[0] for name in names})
    return options


def engine_arg_key_problem(key: str, framework: InferenceFramework | None) -> str | None:
    """Why `key` may not be an `engine_args` key for `framework`, or None if it may."""
    if len(key) > MAX_ENGINE_ARG_KEY_CHARS:
        return f"a flag name has at most {MAX_ENGINE_ARG_KEY_CHARS} characters"
    if (key.startswith("-") and not key.startswith("--")) or len(key.strip("-_")) == 1:
        return (
            "short options such as '-p' are not accepted (the engine maps them to long "
            "flags); write the long flag name"
        )
    if framework is not None and (reserved := _near_reserved(key, framework)):
        return _reserved_message(reserved, framework)
    if not _KEY.fullmatch(key):
        return (
            "must be a flag name such as 'context-length' or 'mem_fraction_static': lowercase "
            "letters and digits separated by single '-' or '_'"
        )
    if framework is InferenceFramework.SGLANG:
        return _sglang_problem(f"--{flag_name(key)}")
    return None


def engine_flag(key: str, framework: InferenceFramework | None) -> str:
    """The long flag the engine reads for a valid `engine_args` key: for SGLang the main
    option its parser resolves the key to (`nccl_po` is `--nccl-port`), else `--key`."""
    flag = f"--{flag_name(key)}"
    if framework is not InferenceFramework.SGLANG:
        return flag
    options = sglang_options()
    candidates = [flag] if flag in options else [o for o in options if o.startswith(flag)]
    return options[candidates[0]] if len(candidates) == 1 else flag


# Words that make a flag choose a port to bind (`--nccl-port`, `--...-ports`, `--...-reuseport`).
_PORT_WORDS = frozenset({"port", "ports", "reuseport"})


def binds_a_port(flag: str) -> bool:
    """Whether `flag` (a long flag) sets a port the engine binds; matched on whole words,
    so `--enable-cache-report` or `--mm-feature-transport` are not taken for one."""
    return not _PORT_WORDS.isdisjoint(re.split(r"[-_]+", flag.strip("-").lower()))


def _squash(name: str) -> str:
    """A flag with case, dashes and underscores removed: what near-misses have in common."""
    return re.sub(r"[-_]", "", name.lower())


def _near_reserved(key: str, framework: InferenceFramework) -> str | None:
    """The reserved flag `key` spells, abbreviates or could be taken for, if any."""
    squashed = _squash(key)
    for reserved in sorted(RESERVED_ENGINE_ARGS[framework]):
        if squashed and _squash(reserved).startswith(squashed):
            return reserved
    return None


def _reserved_message(flag: str, framework: InferenceFramework) -> str:
    main = flag
    if framework is InferenceFramework.SGLANG:
        main = sglang_options().get(f"--{flag}", f"--{flag}").removeprefix("--")
    alias = f" (--{flag})" if main != flag else ""
    return (
        f"the engine would read this as --{main}{alias}, which is set by llm-launch from "
        "the request and cannot be overridden"
    )


def _sglang_problem(flag: str) -> str | None:
    """Resolve `flag` as argparse with allow_abbrev does against SGLang's options."""
    options = sglang_options()
    if flag in options:
        return None
    candidates = sorted(name for name in options if name.startswith(flag))
    if len(candidates) == 1:
        return None
    if candidates:
        listed = ", ".join(candidates[:5]) + (", ..." if len(candidates) > 5 else "")
        return (
            f"{flag} is ambiguous in SGLang {SGLANG_OPTIONS_VERSION} ({listed}); write it in full"
        )
    close = difflib.get_close_matches(flag, options, n=1)
    hint = f"; did you mean {close[0].removeprefix('--')!r}?" if close else ""
    return f"{flag} is not a flag of SGLang {SGLANG_OPTIONS_VERSION}{hint}"
