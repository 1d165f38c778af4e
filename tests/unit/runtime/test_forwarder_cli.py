"""The forwarder's command line (as the launch plan writes it), and readiness caching."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.spec_builder import build_spec
from llm_launch.engines.options import PlanOptions
from llm_launch.engines.plan import IpFamily
from llm_launch.engines.planner import plan_launch
from llm_launch.runtime import launch_api
from llm_launch.runtime.forwarder import app as forwarder_app
from llm_launch.runtime.forwarder import asgi as forwarder_http
from llm_launch.runtime.forwarder import cli as forwarder
from llm_launch.runtime.forwarder import client as forwarder_client
from llm_launch.runtime.forwarder import engines as forwarder_engines
from llm_launch.runtime.forwarder import ready as forwarder_ready
from llm_launch.runtime.forwarder import stream as forwarder_stream
from llm_launch.runtime.forwarder import transport as forwarder_transport
from llm_launch.runtime.forwarder.cli import parse_args
from llm_launch.runtime.forwarder.client import HttpxEngineClient
from llm_launch.runtime.forwarder.engines import EngineCall
from llm_launch.runtime.forwarder.ready import ReadinessCheck
from tests.builders import endpoint_body, seed_body


def forwarder_argv(body: dict[str, Any], **options: Any) -> list[str]:
    plan = plan_launch(build_spec(body, load_hardware_catalog()), PlanOptions(**options))
    command = plan.leader.container("forwarder").command
    assert command[0] == "llm-launch-forwarder"
    return list(command[1:])


class TestCommandLine:
    def test_the_sglang_plans_command_line_parses(self) -> None:
        config, args = parse_args(forwarder_argv(seed_body()))
        assert config.engine_api == "sglang"
        assert config.engine_url == "http://127.0.0.1:5005"
        assert config.ready_check_path == "/health_generate"
        assert (args.host, args.port) == ("auto", 5000)  # resolved from POD_IP at start

    def test_the_vllm_plans_command_line_parses_with_readiness_by_generation(self) -> None:
        body = endpoint_body()
        config, _ = parse_args(forwarder_argv(body))
        assert config.engine_api == "openai"
        assert config.served_model_name == body["name"]  # the engine serves the endpoint's name
        assert config.ready_check_path is None

    def test_an_ipv6_plans_engine_url_makes_a_pool_for_the_ipv6_loopback(self) -> None:
        config, args = parse_args(forwarder_argv(seed_body(), ip_family=IpFamily.IPV6))
        assert args.host == "::"
        pool = forwarder_app.engine_pool(config)
        assert (pool._host, pool._port) == ("::1", 5005)

    def test_defaults(self) -> None:
        config, args = parse_args(["--engine-url", "http://127.0.0.1:5005"])
        assert (args.host, args.port) == ("127.0.0.1", 5000)
        assert config.max_concurrency == 256 and config.ready_cache_s == 1.0

    @pytest.mark.parametrize(
        "argv",
        [
            [],
            ["--engine-url", "http://x:1", "--engine-api", "tgi"],
            ["--engine-url", "http://x:1", "--max-concurrency", "0"],
            ["--engine-url", "http://x:1", "--ready-check-path", "health"],
        ],
    )
    def test_bad_arguments_exit_with_a_usage_error(self, argv: list[str]) -> None:
        with pytest.raises(SystemExit) as caught:
            parse_args(argv)
        assert caught.value.code == 2

    @pytest.mark.parametrize("url", ["https://x:1", "x:1", "http://x:1/prefix"])
    def test_an_engine_url_the_pool_cannot_serve_is_refused(self, url: str) -> None:
        config, _ = parse_args(["--engine-url", url])
        with pytest.raises(ValueError, match="--engine-url"):
            forwarder_app.engine_pool(config)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestReadinessCache:
    async def test_a_result_expires_after_the_cache_time(self) -> None:
        calls: list[httpx.Request] = []

        def engine(request: httpx.Request) -> httpx.Response:
            calls.append(request)
            return httpx.Response(200 if len(calls) == 1 else 503)

        clock = FakeClock()
        client = HttpxEngineClient(httpx.MockTransport(engine), "http://engine")
        check = ReadinessCheck(
            client, lambda: EngineCall("GET", "/health_generate", [], b""), cache_s=1.0, clock=clock
        )
        assert (await check.check()).ready
        clock.now += 0.9
        assert (await check.check()).ready and len(calls) == 1
        clock.now += 0.2
        assert not (await check.check()).ready and len(calls) == 2

    async def test_concurrent_checks_share_one_engine_call(self) -> None:
        release, calls = asyncio.Event(), []

        async def engine(request: httpx.Request) -> httpx.Response:
            calls.append(request)
            await release.wait()
            return httpx.Response(200)

        client = HttpxEngineClient(httpx.MockTransport(engine), "http://engine")
        check = ReadinessCheck(client, lambda: EngineCall("GET", "/h", [], b""), cache_s=0)
        probes = [asyncio.create_task(check.check()) for _ in range(5)]
        await asyncio.sleep(0)
        release.set()
        assert all(result.ready for result in await asyncio.gather(*probes))
        assert len(calls) == 1

    async def test_a_cancelled_probe_does_not_cancel_the_shared_check(self) -> None:
        release = asyncio.Event()

        async def engine(request: httpx.Request) -> httpx.Response:
            await release.wait()
            return httpx.Response(200)

        client = HttpxEngineClient(httpx.MockTransport(engine), "http://engine")
        check = ReadinessCheck(client, lambda: EngineCall("GET", "/h", [], b""), cache_s=0)
        impatient = asyncio.create_task(check.check())
        patient = asyncio.create_task(check.check())
        await asyncio.sleep(0)
        impatient.cancel()
        release.set()
        assert (await patient).ready


PUBLIC = {
    forwarder: ["TOKEN_ENV", "main", "parse_args"],
    forwarder_app: ["ForwarderApp", "ForwarderConfig", "create_app"],
    forwarder_client: ["EngineClient", "EngineResponse", "Headers", "HttpxEngineClient"],
    forwarder_engines: [
        "ENGINE_APIS", "EngineApi", "EngineApiName", "EngineCall", "OpenAIApi", "SglangApi",
        "StreamMapper", "engine_api",
    ],
    forwarder_http: [
        "HOP_BY_HOP", "SSE_HEADERS", "ForwarderError", "Message", "Receive", "Scope", "Send",
        "as_http_error", "engine_answered", "is_event_stream", "not_allowed", "not_found",
        "read_body", "relay_launch_stream", "relay_raw_stream", "respond", "respond_error",
        "respond_json", "respond_unauthorized", "saturated",
    ],
    forwarder_ready: ["Readiness", "ReadinessCheck"],
    forwarder_stream: [
        "DONE", "EngineStreamError", "OpenAIStream", "SglangStream", "SseDecoder",
        "encode_event", "stream_chunk", "stream_error_chunk",
    ],
    forwarder_transport: ["EnginePool"],
    launch_api: [
        "CompletionRequest", "EngineBodyError", "FieldError", "InvalidRequest", "compact_json",
        "launch_output_from_openai", "launch_output_from_sglang", "loads", "openai_completion_body",
        "parse_completion_request", "sglang_generate_body", "sync_response", "token_output",
    ],
}  # fmt: skip


@pytest.mark.parametrize("module", PUBLIC, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_the_public_surface_is_pinned(module: Any) -> None:
    assert sorted(module.__all__) == sorted(PUBLIC[module])
    assert all(hasattr(module, name) for name in module.__all__)
