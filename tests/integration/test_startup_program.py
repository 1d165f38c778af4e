"""The startup program as a process: --dry-run output, refusals, and exec of the engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

STARTUP = [sys.executable, "-m", "llm_launch.runtime.startup"]
SEED_ARGS = ["sglang", "--tp-size", "16", "--model", "deepseek-r1", "--resolve-timeout", "2"]


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LWS_", "POD_IP"))}
    return subprocess.run(
        [*STARTUP, *args], capture_output=True, text=True, timeout=60, env={**clean, **env}
    )


def test_dry_run_prints_the_worker_argv_and_env_from_lws_variables() -> None:
    result = run(
        [*SEED_ARGS, "--dry-run", "--", "--context-length", "8192"],
        POD_IP="fdab:1::2", LWS_LEADER_ADDRESS="fdab:1::1", LWS_WORKER_INDEX="1",
        LWS_GROUP_SIZE="2", NCCL_SOCKET_IFNAME="eth0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    argv = document["argv"]
    assert argv[argv.index("--dist-init-addr") + 1] == "[fdab:1::1]:5002"
    assert argv[argv.index("--node-rank") + 1] == "1"
    assert argv[-2:] == ["--context-length", "8192"]
    assert document["env"]["SGLANG_HOST_IP"] == "fdab:1::2"
    assert document["env"]["NCCL_SOCKET_IFNAME"] == "eth0"
    assert document["role"] == "worker"


def test_a_leader_whose_name_never_resolves_exits_1_with_one_line() -> None:
    leader = "llm-x-0.llm-x.nowhere.invalid"
    result = run(SEED_ARGS, LWS_LEADER_ADDRESS=leader, LWS_WORKER_INDEX="1", LWS_GROUP_SIZE="2")
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert leader in line and "did not resolve" in line


def test_a_role_that_contradicts_the_rank_is_refused() -> None:
    result = run([*SEED_ARGS, "--role", "leader", "--dry-run"], LWS_LEADER_ADDRESS="127.0.0.1",
                 LWS_WORKER_INDEX="1", LWS_GROUP_SIZE="2")  # fmt: skip
    assert result.returncode == 1
    assert "--role leader does not match node rank 1" in result.stderr


def test_equal_engine_and_rendezvous_ports_are_refused_before_anything_runs() -> None:
    result = run([*SEED_ARGS, "--engine-port", "5002", "--dry-run"], LWS_LEADER_ADDRESS="127.0.0.1",
                 LWS_WORKER_INDEX="0", LWS_GROUP_SIZE="2")  # fmt: skip
    assert result.returncode == 1
    assert "equals the rendezvous port" in result.stderr


def test_the_engine_is_execd_with_its_argv_and_its_exit_status_is_kept(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    out = tmp_path / "out.json"
    probe.write_text(
        "import json, os, sys\n"
        f"json.dump({{'argv': sys.argv[1:], 'pid': os.getpid(), "
        f"'host_ip': os.environ['SGLANG_HOST_IP']}}, open({str(out)!r}, 'w'))\n"
        "sys.exit(7)\n"
    )
    process = subprocess.Popen(
        [*STARTUP, "sglang", "--tp-size", "1", "--model", "m", "--bind-host", "127.0.0.1",
         "--engine-program", f"{sys.executable} {probe}", "--chat-template", "{{ x }}",
         "--weights-dir", str(tmp_path)],
        env={**os.environ, "POD_IP": "127.0.0.1"}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 7  # the engine's own status
    recorded = json.loads(out.read_text())
    assert recorded["pid"] == process.pid  # exec'd, not a child
    assert recorded["host_ip"] == "127.0.0.1"
    template = recorded["argv"][recorded["argv"].index("--chat-template") + 1]
    assert Path(template).read_text() == "{{ x }}"
    assert "exec [" in stderr


def test_the_engine_starts_with_the_report_saying_so(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    out = tmp_path / "seen.json"
    probe.write_text(
        "import os, shutil\n"
        f"shutil.copyfile(os.environ['LLM_LAUNCH_PROGRESS_FILE'], {str(out)!r})\n"
    )
    report_path = tmp_path / "run" / "progress.json"  # its folder is created as needed
    result = run(
        ["sglang", "--tp-size", "1", "--model", "m", "--bind-host", "127.0.0.1",
         "--engine-program", f"{sys.executable} {probe}", "--weights-dir", str(tmp_path)],
        POD_IP="127.0.0.1", LLM_LAUNCH_PROGRESS_FILE=str(report_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(out.read_text())
    assert (seen["phase"], seen["rank"]) == ("starting-engine", 0)


def test_a_simulated_engine_whose_checkpoint_is_missing_fails_with_a_failed_report(
    tmp_path: Path,
) -> None:
    report_path = tmp_path / "progress.json"
    missing = tmp_path / "nonexistent"
    result = run(
        ["vllm", "--tp-size", "1", "--model", "m", "--bind-host", "127.0.0.1",
         f"--checkpoint-path=file://{missing}", "--weights-dir", str(tmp_path)],
        POD_IP="127.0.0.1", LLM_LAUNCH_ENGINE_MODE="simulated",
        LLM_LAUNCH_CHECKPOINT_ROOTS=str(tmp_path), LLM_LAUNCH_PROGRESS_FILE=str(report_path),
    )  # fmt: skip
    assert result.returncode == 1
    report = json.loads(report_path.read_text())
    assert report["phase"] == "failed"
    assert report["detail"] == f"cannot fetch checkpoint file://{missing}: {missing} does not exist"
