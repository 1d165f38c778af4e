"""The simulated prefix cache: a repeated or extended prompt's prefill costs only its
uncached tokens, the answer reports the cached ones, and the cache stays bounded. The
numbers are read from the simulator (its computed prefill delay), never timed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from llm_launch.simulator.app import build_app
from llm_launch.simulator.args import ArgsError, parse_args
from llm_launch.simulator.engine import Engine, LatencyModel, Sampling
from llm_launch.simulator.metrics import Metrics
from llm_launch.simulator.prefix_cache import PrefixCache
from llm_launch.simulator.tokens import count_tokens, tokenize
from tests.unit.simulator.fakes import FakeGroup

SYSTEM = "You are a careful assistant; answer in one short sentence, citing sources. "


def an_engine(prefill_us: float, cache_tokens: int = 10_000) -> Engine:
    latency = LatencyModel(
        0.0, 0.0, prefill_us_per_token=prefill_us, prefix_cache_tokens=cache_tokens
    )
    return Engine(FakeGroup(), latency, Metrics("m"))


def test_a_repeated_prompts_second_prefill_costs_nothing_and_reports_every_token_cached() -> None:
    engine = an_engine(prefill_us=100)
    prompt = SYSTEM + "What is the capital of Peru?"
    first = engine.start(prompt, Sampling(max_tokens=1))
    second = engine.start(prompt, Sampling(max_tokens=1))
    tokens = count_tokens(prompt)
    assert (first.cached_tokens, first.prefill_s) == (0, pytest.approx(tokens * 100e-6))
    assert (second.cached_tokens, second.prefill_s) == (tokens, 0.0)


def test_a_later_turn_pays_only_for_what_it_adds_to_the_earlier_one() -> None:
    engine = an_engine(prefill_us=50)
    turn_one = SYSTEM + "Where is Lima?"
    turn_two = turn_one + " It is in Peru. And Quito?"
    engine.start(turn_one, Sampling(max_tokens=1))
    later = engine.start(turn_two, Sampling(max_tokens=1))
    added = count_tokens(turn_two) - count_tokens(turn_one)
    assert later.cached_tokens == count_tokens(turn_one)
    assert later.prefill_s == pytest.approx(added * 50e-6)


def test_without_a_prefill_cost_nothing_is_cached_or_delayed_as_before() -> None:
    engine = an_engine(prefill_us=0)
    prompt = SYSTEM + "Again?"
    engine.start(prompt, Sampling(max_tokens=1))
    again = engine.start(prompt, Sampling(max_tokens=1))
    assert (again.cached_tokens, again.prefill_s, len(engine.prefix_cache)) == (None, 0.0, 0)


def test_the_cache_holds_at_most_its_capacity_and_forgets_the_least_recently_used() -> None:
    cache = PrefixCache(capacity_tokens=12)
    old, kept, new = (tokenize(f"{w} " * 5) for w in ("old", "kept", "new"))
    cache.serve(old)
    cache.serve(kept)
    cache.serve(kept)  # used again
    cache.serve(new)  # 15 tokens held would be over 12: the oldest go
    assert len(cache) == 12
    assert cache.serve(kept) == 5
    assert cache.serve(old) < 5


def test_a_cache_of_no_capacity_holds_nothing() -> None:
    cache = PrefixCache(capacity_tokens=0)
    prompt = tokenize(SYSTEM)
    assert (cache.serve(prompt), cache.serve(prompt), len(cache)) == (0, 0, 0)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    argv = ["--model-path", "/m", "--served-model-name", "m", "--sim-ttft-ms", "0"]
    args = parse_args([*argv, "--sim-tpot-ms", "0", "--sim-prefill-us-per-token", "1"], env={})
    transport = httpx.ASGITransport(app=build_app(args, FakeGroup()))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as c:
        yield c


async def test_openai_usage_and_sglang_meta_info_report_the_cached_tokens(
    client: httpx.AsyncClient,
) -> None:
    body = {"messages": [{"role": "user", "content": SYSTEM}], "max_tokens": 2}
    first = (await client.post("/v1/chat/completions", json=body)).json()["usage"]
    second = (await client.post("/v1/chat/completions", json=body)).json()["usage"]
    assert first["prompt_tokens_details"] == {"cached_tokens": 0}
    assert second["prompt_tokens_details"] == {"cached_tokens": second["prompt_tokens"]}
    native = {"text": SYSTEM + "more", "sampling_params": {"max_new_tokens": 1}}
    meta = [(await client.post("/generate", json=native)).json()["meta_info"] for _ in range(2)]
    assert meta[0]["cached_tokens"] < meta[1]["cached_tokens"] == meta[1]["prompt_tokens"]


def test_the_prefill_cost_and_cache_size_come_from_the_environment_and_flags_win() -> None:
    env = {"LLM_LAUNCH_SIM_PREFILL_US_PER_TOKEN": "2.5", "LLM_LAUNCH_SIM_PREFIX_CACHE_TOKENS": "99"}
    from_env = parse_args(["--model-path", "m"], env=env)
    assert (from_env.prefill_us_per_token, from_env.prefix_cache_tokens) == (2.5, 99)
    flagged = parse_args(["--model-path", "m", "--sim-prefill-us-per-token", "4"], env=env)
    assert flagged.prefill_us_per_token == 4
    defaults = parse_args(["--model-path", "m"], env={})
    assert defaults.prefill_us_per_token == 0


def test_a_negative_prefill_cost_or_a_bad_environment_value_is_refused() -> None:
    with pytest.raises(ArgsError, match="--sim-prefill-us-per-token must be >= 0"):
        parse_args(["--model-path", "m", "--sim-prefill-us-per-token", "-1"], env={})
    with pytest.raises(ArgsError, match="LLM_LAUNCH_SIM_PREFIX_CACHE_TOKENS"):
        parse_args(["--model-path", "m"], env={"LLM_LAUNCH_SIM_PREFIX_CACHE_TOKENS": "many"})
