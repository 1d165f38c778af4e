"""The shared generation path: admission, steps in order, pacing, group checks, metrics."""

from __future__ import annotations

import time
from typing import Any

import pytest

from llm_launch.simulator.engine import (
    BadGeneration,
    Engine,
    LatencyModel,
    Sampling,
    Unavailable,
)
from llm_launch.simulator.metrics import Metrics
from llm_launch.simulator.tokens import generate
from tests.unit.simulator.fakes import FakeGroup


def engine(
    group: FakeGroup | None = None, ttft_s: float = 0.0, tpot_s: float = 0.0, **kw: Any
) -> Engine:
    return Engine(group or FakeGroup(), LatencyModel(ttft_s, tpot_s), Metrics("m"), **kw)


def sample(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name, {"model_name": "m"})
    return 0.0 if value is None else value


async def test_steps_carry_cumulative_text_and_only_the_last_one_finishes() -> None:
    generation = engine().start("prompt words", Sampling(max_tokens=6, seed=9))
    steps = [step async for step in generation.steps()]
    expected = generate("prompt words", max_tokens=6, seed=9)
    assert [s.delta for s in steps] == list(expected.deltas)
    assert steps[-1].text == expected.text
    assert [s.completion_tokens for s in steps] == [1, 2, 3, 4, 5, 6]
    assert [s.finish for s in steps[:-1]] == [None] * 5
    assert steps[-1].finish == expected.finish
    assert generation.prompt_tokens == 2


async def test_zero_max_tokens_still_answers_once_with_no_text() -> None:
    final = await engine().start("p", Sampling(max_tokens=0)).final()
    assert (final.text, final.completion_tokens, final.finish and final.finish.reason) == (
        "",
        0,
        "length",
    )


async def test_temperature_zero_ignores_the_seed() -> None:
    e = engine()
    one = await e.start("p", Sampling(max_tokens=8, seed=1, temperature=0)).final()
    two = await e.start("p", Sampling(max_tokens=8, seed=2, temperature=0)).final()
    three = await e.start("p", Sampling(max_tokens=8, seed=2, temperature=0.7)).final()
    assert one.text == two.text
    assert three.text != two.text


async def test_a_group_problem_refuses_admission() -> None:
    with pytest.raises(Unavailable, match="waiting for rank 1"):
        engine(FakeGroup("waiting for rank 1")).start("p", Sampling())


async def test_a_group_problem_mid_generation_stops_it() -> None:
    group = FakeGroup()
    generation = engine(group).start("p", Sampling(max_tokens=5))
    seen = []
    with pytest.raises(Unavailable, match="rank 1 lost"):
        async for step in generation.steps():
            seen.append(step)
            group.current_problem = "rank 1 lost: connection closed"
    assert len(seen) == 1


async def test_the_context_length_bounds_prompt_plus_max_tokens() -> None:
    e = engine(context_length=10)
    e.start("one two three", Sampling(max_tokens=7))
    with pytest.raises(BadGeneration, match="exceed the context length"):
        e.start("one two three", Sampling(max_tokens=8))


async def test_pacing_follows_ttft_then_tpot() -> None:
    generation = engine(ttft_s=0.05, tpot_s=0.02).start("p", Sampling(max_tokens=6))
    started = time.monotonic()
    arrivals = [time.monotonic() - started async for _ in generation.steps()]
    # Lower bounds are guaranteed by the sleeps; the upper bound is generous.
    assert arrivals[0] >= 0.045
    assert arrivals[-1] >= 0.05 + 5 * 0.02 - 0.005
    assert arrivals[-1] < 5.0
    assert arrivals == sorted(arrivals)


async def test_metrics_count_requests_and_tokens() -> None:
    e = engine()
    await e.start("one two", Sampling(max_tokens=4)).final()
    await e.start("three", Sampling(max_tokens=3)).final()
    assert sample(e.metrics, "sglang:prompt_tokens_total") == 3
    assert sample(e.metrics, "sglang:generation_tokens_total") == 7
    assert sample(e.metrics, "sglang:num_requests_total") == 2
    assert sample(e.metrics, "sglang:num_running_reqs") == 0
    assert sample(e.metrics, "sglang:time_to_first_token_seconds_count") == 2


async def test_a_running_request_shows_in_the_running_gauge() -> None:
    e = engine()
    steps = e.start("p", Sampling(max_tokens=3)).steps()
    await anext(steps)
    assert sample(e.metrics, "sglang:num_running_reqs") == 1
    await steps.aclose()
    assert sample(e.metrics, "sglang:num_running_reqs") == 0
