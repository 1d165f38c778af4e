"""One simulated SGLang process over real HTTP: every route, and streams that really stream."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.simulator.conftest import Launch
from tests.integration.simulator.processes import Sim

MODEL = "deepseek-r1"
TTFT_MS = 50
TPOT_MS = 200


@pytest.fixture(scope="module")
def sim(launch_for_module: Launch) -> Iterator[Sim]:
    yield launch_for_module(
        "--model-path", "/models/deepseek-r1",
        "--served-model-name", MODEL,
        "--tp-size", "8",
        "--trust-remote-code",
        "--context-length", "8192",
        "--json-model-override-args", '{"rope_scaling": null}',
        "--sim-ttft-ms", str(TTFT_MS),
        "--sim-tpot-ms", str(TPOT_MS),
    ).wait_serving()  # fmt: skip


def running_requests(sim: Sim) -> float:
    for line in sim.get("/metrics").text.splitlines():
        if line.startswith("sglang:num_running_reqs{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no sglang:num_running_reqs in /metrics")


def test_it_announces_itself_as_simulated_and_logs_the_ignored_flags(sim: Sim) -> None:
    log = sim.log()
    assert "SIMULATED ENGINE" in log
    assert "--json-model-override-args" in log


def test_health_and_the_generation_check_pass(sim: Sim) -> None:
    assert sim.get("/health").status_code == 200
    check = sim.get("/health_generate")
    assert check.status_code == 200
    assert check.json()["simulated"] is True


def test_info_routes_say_simulated(sim: Sim) -> None:
    info = sim.get("/get_server_info").json()
    assert info["simulated"] is True
    assert (info["tp_size"], info["served_model_name"]) == (8, MODEL)
    assert info["group"]["state"] == "formed"
    models = sim.get("/v1/models").json()
    assert models["data"][0]["id"] == MODEL
    assert models["data"][0]["owned_by"] == "llm-launch-simulator"
    assert sim.get("/get_model_info").json()["model_path"] == "/models/deepseek-r1"


def test_generate_is_deterministic_and_respects_max_tokens(sim: Sim) -> None:
    body = {"text": "Say something", "sampling_params": {"max_new_tokens": 3, "seed": 11}}
    first = httpx.post(f"{sim.url}/generate", json=body, timeout=10).json()
    again = httpx.post(f"{sim.url}/generate", json=body, timeout=10).json()
    assert first["text"] == again["text"]
    assert first["meta_info"]["completion_tokens"] == 3
    assert first["meta_info"]["finish_reason"]["type"] == "length"
    # ttft + 2 * tpot, by the latency model (a lower bound the server guarantees)
    assert first["meta_info"]["e2e_latency"] >= (TTFT_MS + 2 * TPOT_MS) / 1000 - 0.01


def test_a_stream_sends_each_token_as_its_own_event_as_it_is_produced(sim: Sim) -> None:
    tokens = 6
    body = {"text": "Stream please", "stream": True, "sampling_params": {"max_new_tokens": tokens}}
    datas: list[str] = []
    running_at_first_event = None
    started = time.monotonic()
    arrivals = []
    with httpx.stream("POST", f"{sim.url}/generate", json=body, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                continue
            datas.append(line.removeprefix("data: "))
            arrivals.append(time.monotonic() - started)
            if running_at_first_event is None:
                # The first token arrives while the others are still being produced.
                running_at_first_event = running_requests(sim)
    assert datas[-1] == "[DONE]"
    events = [json.loads(d) for d in datas[:-1]]
    assert len(events) == tokens
    assert running_at_first_event == 1
    assert [e["meta_info"]["completion_tokens"] for e in events] == list(range(1, tokens + 1))
    # Event i is due ttft + i * tpot after the request started; the server never sends it early.
    for index, arrival in enumerate(arrivals[:-1]):
        assert arrival >= (TTFT_MS + index * TPOT_MS) / 1000 - 0.01
    assert running_requests(sim) == 0


def test_openai_routes_answer_over_http(sim: Sim) -> None:
    chat = httpx.post(
        f"{sim.url}/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
        timeout=10,
    ).json()
    assert chat["usage"]["completion_tokens"] == 2
    wrong = httpx.post(
        f"{sim.url}/v1/completions", json={"model": "other", "prompt": "x"}, timeout=10
    )
    assert wrong.status_code == 404


def test_metrics_count_the_tokens_served(sim: Sim) -> None:
    def generation_tokens() -> float:
        for line in sim.get("/metrics").text.splitlines():
            if line.startswith("sglang:generation_tokens_total{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = generation_tokens()
    body = {"text": "count", "sampling_params": {"max_new_tokens": 4}}
    httpx.post(f"{sim.url}/generate", json=body, timeout=10)
    assert generation_tokens() == before + 4


def test_bad_flags_exit_2_with_one_line() -> None:
    argv = ["--model-path", "m", "--nnodes", "2", "--dist-init-addr", "fd00::1:5002"]
    done = subprocess.run(
        [sys.executable, "-m", "llm_launch.simulator", *argv],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "must be bracketed" in done.stderr
