"""The options `serve` and `gateway` share (cli/options.py): one flag, one variable, one
default, one help for both, as they were before they were declared once; a variable set
for both reaches both; a bad value is refused by both alike."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner

from llm_launch.cli import app

# Flag -> (variable, default, bounds), as `serve --help` showed them before the move.
SHARED: dict[str, tuple[str, Any, tuple[Any, Any]]] = {
    "--data-dir": ("LLM_LAUNCH_DATA_DIR", None, (None, None)),
    "--api-keys-file": ("LLM_LAUNCH_API_KEYS_FILE", None, (None, None)),
    "--inference-timeout": ("LLM_LAUNCH_INFERENCE_TIMEOUT_S", 600.0, (None, None)),
    "--max-request-bytes": ("LLM_LAUNCH_MAX_REQUEST_BYTES", 1024 * 1024, (1, None)),
    "--header-timeout": ("LLM_LAUNCH_HEADER_TIMEOUT_S", 10.0, (0.1, None)),
    "--keep-alive-timeout": ("LLM_LAUNCH_KEEP_ALIVE_TIMEOUT_S", 5, (1, None)),
    "--log-level": ("LLM_LAUNCH_LOG_LEVEL", "info", (None, None)),
}
COMMANDS = ("serve", "gateway")


def command(name: str) -> Any:
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)  # Typer vendors its own click
    found = group.commands[name]
    return found


def option(name: str, flag: str) -> TyperOption:
    (found,) = [p for p in command(name).params if isinstance(p, TyperOption) and flag in p.opts]
    return found


def bounds(opt: TyperOption) -> tuple[Any, Any]:
    return (opt.min, opt.max)


@pytest.mark.parametrize("flag", sorted(SHARED))
@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_the_shared_option_with_its_variable_default_and_bounds(
    name: str, flag: str
) -> None:
    variable, default, limits = SHARED[flag]
    opt = option(name, flag)
    assert opt.envvar == variable
    assert opt.default == default
    assert bounds(opt) == limits


@pytest.mark.parametrize("flag", sorted(SHARED))
def test_both_commands_describe_the_shared_option_alike(flag: str) -> None:
    serve, gateway = (option(name, flag) for name in COMMANDS)
    assert serve.help == gateway.help
    assert serve.type_descriptor.annotation == gateway.type_descriptor.annotation


@pytest.mark.parametrize("name", COMMANDS)
def test_a_variable_set_once_reaches_either_command(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_LAUNCH_MAX_REQUEST_BYTES", "2048")
    monkeypatch.setenv("LLM_LAUNCH_HEADER_TIMEOUT_S", "2.5")
    monkeypatch.setenv("LLM_LAUNCH_INFERENCE_TIMEOUT_S", "30")
    args = ["--port", "8001"] if name == "gateway" else []
    with command(name).make_context(name, args) as ctx:
        assert ctx.params["max_request_bytes"] == 2048
        assert ctx.params["header_timeout"] == 2.5
        assert ctx.params["inference_timeout"] == 30.0


@pytest.mark.parametrize("name", COMMANDS)
def test_a_value_under_the_bound_is_refused_naming_the_flag(name: str) -> None:
    args = [name, "--max-request-bytes", "0"] + (["--port", "8001"] if name == "gateway" else [])
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "--max-request-bytes" in result.output
    assert "greater than or equal to 1" in result.output
