"""The SGLang option list vendored in domain/sglang_options.txt is SGLang 0.5.23's own.

`domain.engine_flags` resolves `engine_args` keys against that list as SGLang's argparse
does (prefixes, aliases); this holds the list to the real parser, and checks that every
alias of a flag llm-launch reserves is reserved too and no real flag is refused by accident.
"""

from __future__ import annotations

import subprocess

import pytest

from llm_launch.domain.engine_flags import (
    SGLANG_OPTIONS_VERSION,
    engine_arg_key_problem,
    sglang_options,
)
from llm_launch.domain.frameworks import RESERVED_ENGINE_ARGS, InferenceFramework
from tests.support.sglang_parser import INSTALL_TIMEOUT_S, SglangParser

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT_S + 120)

_LIST_OPTIONS = """
import argparse
from sglang.srt.server_args import ServerArgs
from sglang.version import __version__
parser = argparse.ArgumentParser()
ServerArgs.add_cli_args(parser)
print(__version__, parser.allow_abbrev)
for action in parser._actions:
    if action.dest != "help":
        print(" ".join(action.option_strings))
"""


def sglang_actions(sglang: SglangParser) -> tuple[str, list[str]]:
    result = subprocess.run(
        [str(sglang.python), "-c", _LIST_OPTIONS],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    header, *actions = result.stdout.splitlines()
    return header, actions


def test_the_vendored_option_list_is_sglangs_own(sglang: SglangParser) -> None:
    header, actions = sglang_actions(sglang)
    assert header == f"{SGLANG_OPTIONS_VERSION} True"  # allow_abbrev: prefixes select flags
    expected = {name: line.split()[0] for line in actions for name in line.split()}
    assert sglang_options() == expected


def test_every_alias_of_a_reserved_flag_is_reserved_and_no_other_flag_is_refused() -> None:
    options = sglang_options()
    reserved = RESERVED_ENGINE_ARGS[InferenceFramework.SGLANG]
    reserved_actions = {options[f"--{flag}"] for flag in reserved if f"--{flag}" in options}
    for option, main in options.items():
        name = option.removeprefix("--")
        problem = engine_arg_key_problem(name, InferenceFramework.SGLANG)
        if main in reserved_actions:
            assert name in reserved and problem is not None, option
        else:
            assert problem is None, (option, problem)
