"""Launch's SGLang engine fields reach SGLang 0.5.23 as SGLang itself reads them (issue 11).

For every flag field of Launch's SGLang request model (`domain.launch_fields`), a single-node
SGLang endpoint is created with that field set; the real startup program prints its engine
command (`--dry-run`), and SGLang's own parser (`prepare_server_args`, in its own virtualenv) must
read the value back in the field's SGLang setting. Which fields SGLang still has is asked of
SGLang's parser, not of our option list: the ones it no longer has must be refused by
llm-launch (a 422 naming the Launch field), and every other one must reach SGLang.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.errors import InvalidRequest
from llm_launch.domain.launch_fields import SGLANG_FIELDS, Kind, LaunchField, ValueType
from llm_launch.domain.spec_builder import build_spec
from tests.builders import endpoint_body
from tests.support.sglang_parser import INSTALL_TIMEOUT_S, ParsedArgv, SglangParser
from tests.support.startup import Pod, dry_run, engine_container, plan_for

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT_S + 240)

CATALOG = load_hardware_catalog()
FLAG_FIELDS = [f for f in SGLANG_FIELDS.values() if f.kind is Kind.FLAG]
SAMPLES: dict[ValueType, Any] = {
    ValueType.INT: 7,
    ValueType.FLOAT: 0.37,
    ValueType.BOOL: True,
    ValueType.STR: "sample text",
    ValueType.STR_LIST: ["adapter=/lora/a", "/lora/b"],
    ValueType.INT_LIST: [1, 3],
}
# Values whose meaning SGLang's parsing itself checks: it sets its loggers' level from it.
SPECIFIC: dict[str, Any] = {"log_level": "warning"}

# Each action of SGLang's parser: its option strings, dest, choices and default.
_ACTIONS = """
import argparse, json
from sglang.srt.server_args import ServerArgs
parser = argparse.ArgumentParser()
ServerArgs.add_cli_args(parser)
print(json.dumps([
    {"options": a.option_strings, "dest": a.dest,
     "choices": [str(c) for c in a.choices] if a.choices else None, "default": repr(a.default)}
    for a in parser._actions if a.option_strings
]))
"""


@dataclass(frozen=True)
class Action:
    dest: str
    choices: list[str] | None
    default: str  # its repr


def sglang_action(actions: dict[str, Action], flag: str) -> Action | None:
    """The action SGLang's argparse (allow_abbrev) selects for `flag`, if exactly one."""
    if flag in actions:
        return actions[flag]
    candidates = {id(a): a for option, a in actions.items() if option.startswith(flag)}
    return next(iter(candidates.values())) if len(candidates) == 1 else None


@pytest.fixture(scope="module")
def actions(sglang: SglangParser) -> dict[str, Action]:
    result = subprocess.run(
        [str(sglang.python), "-c", _ACTIONS], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return {
        option: Action(item["dest"], item["choices"], item["default"])
        for item in json.loads(result.stdout)
        for option in item["options"]
    }


def sample(launch_field: LaunchField, action: Action) -> Any:
    """A value SGLang accepts for the field and that differs from its default."""
    if action.choices:
        return next(c for c in action.choices if repr(c) != action.default)
    return SPECIFIC.get(launch_field.name, SAMPLES[launch_field.type])


def body_with(name: str, value: Any) -> dict[str, Any]:
    return endpoint_body(
        inference_framework="sglang", gpus=1, gpu_type="nvidia-hopper-h100", **{name: value}
    )


def engine_argv(body: dict[str, Any]) -> list[str]:
    """The leader's engine argv after `python -m sglang.launch_server`."""
    document = dry_run(engine_container(plan_for(body), "leader"), Pod(ip="192.0.2.1"))
    argv: list[str] = document["argv"]
    assert argv[1:3] == ["-m", "sglang.launch_server"], argv
    return argv[3:]


@pytest.fixture(scope="module")
def readings(
    sglang: SglangParser, actions: dict[str, Action]
) -> dict[str, tuple[Any, Action, ParsedArgv]]:
    """For each field SGLang has: (the value sent, SGLang's action, SGLang's reading)."""
    sent = {}
    for f in FLAG_FIELDS:
        action = sglang_action(actions, f"--{f.engine_key}")
        if action is not None:
            sent[f.name] = (sample(f, action), action)
    with ThreadPoolExecutor(max_workers=8) as pool:
        argvs = list(pool.map(lambda n: engine_argv(body_with(n, sent[n][0])), sent))
    parsed = sglang.parse(argvs).argvs
    return {name: (*sent[name], p) for name, p in zip(sent, parsed, strict=True)}


@pytest.mark.parametrize("launch_field", FLAG_FIELDS, ids=lambda f: f.name)
def test_each_launch_sglang_field_reaches_sglang_or_is_refused_as_gone(
    launch_field: LaunchField,
    actions: dict[str, Action],
    readings: dict[str, tuple[Any, Action, ParsedArgv]],
) -> None:
    if launch_field.name not in readings:
        assert sglang_action(actions, f"--{launch_field.engine_key}") is None
        with pytest.raises(InvalidRequest) as error:
            build_spec(body_with(launch_field.name, SAMPLES[launch_field.type]), CATALOG)
        assert [e.field for e in error.value.errors] == [launch_field.name]
        return
    value, action, parsed = readings[launch_field.name]
    assert parsed.field(action.dest) == value


def test_most_of_launchs_sglang_fields_still_reach_sglang(
    readings: dict[str, tuple[Any, Action, ParsedArgv]],
) -> None:
    # A guard on the test itself: an empty reading would make every case above vacuous.
    assert {"mem_fraction_static", "context_length", "file_storage_pth"} <= set(readings)
    assert len(readings) >= 60
