"""The generation path every route shares: admit, generate, pace in time, count.

Called by the HTTP routes (`simulator.native`, `simulator.openai_api`) and by
`/health_generate`, so the health check exercises exactly what requests do. Next hop:
`simulator.tokens.generate` for the text, `simulator.metrics` for the counters.

Latency model: the first token is due `ttft` after the request starts, and each further
token `tpot` after the one before (due times are absolute, so pacing does not drift):
a request of n tokens takes about ttft + (n-1)*tpot, streamed or not. With
max_tokens = 0 the request still takes ttft (the prefill). When prefill has a cost per
token (`prefill_us_per_token` > 0), the first token comes that much later for each prompt
token the group's prefix cache (`simulator.prefix_cache`) does not hold, and the answer
reports the others as cached. Requests do not queue or slow each other down. Generation
refuses to start, and stops mid-way, while the group has a problem (not yet formed, or a
rank lost).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from llm_launch.simulator.group import GroupStatus
from llm_launch.simulator.metrics import Metrics
from llm_launch.simulator.prefix_cache import PrefixCache
from llm_launch.simulator.tokens import Finish, Generated, count_tokens, generate, tokenize

DEFAULT_MAX_TOKENS = 16


class Unavailable(Exception):
    """The group cannot generate (503); the message says why."""


class BadGeneration(ValueError):
    """The request cannot be generated as asked (400); the message says why."""


@dataclass(frozen=True)
class LatencyModel:
    ttft_s: float
    tpot_s: float
    prefill_us_per_token: float = 0.0  # for each prompt token not in the prefix cache
    prefix_cache_tokens: int = 0  # what the cache holds at most; 0: no cache

    def prefill_s(self, uncached_tokens: int) -> float:
        """The prefill time on top of `ttft_s`, for the prompt tokens not cached."""
        return uncached_tokens * self.prefill_us_per_token / 1_000_000

    def due_s(self, token_index: int) -> float:
        """When token `token_index` (0-based) is due, in seconds after the request starts."""
        return self.ttft_s + token_index * self.tpot_s


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = DEFAULT_MAX_TOKENS
    seed: int = 0
    temperature: float = 1.0
    stop: tuple[str, ...] = ()

    @property
    def effective_seed(self) -> int:
        """Temperature 0 is greedy decoding: the seed does not matter."""
        return 0 if self.temperature == 0 else self.seed


@dataclass(frozen=True)
class Step:
    """What one generated token adds; `finish` is set on the last step only."""

    delta: str
    text: str  # cumulative
    completion_tokens: int  # so far
    finish: Finish | None
    elapsed_s: float


class Generation:
    """One admitted request. Iterate `steps()` once to produce it in time."""

    def __init__(
        self,
        engine: Engine,
        prompt_tokens: int,
        generated: Generated,
        cached_tokens: int | None = None,
    ) -> None:
        """`cached_tokens`: of the prompt, found in the prefix cache (None: not modelled)."""
        self.id = uuid.uuid4().hex
        self.prompt_tokens = prompt_tokens
        self.cached_tokens = cached_tokens
        self.prefill_s = engine.latency.prefill_s(prompt_tokens - (cached_tokens or 0))
        self.completion_tokens = generated.completion_tokens
        self._engine = engine
        self._generated = generated

    async def steps(self) -> AsyncGenerator[Step, None]:
        engine = self._engine
        loop = asyncio.get_running_loop()
        start = loop.time()
        deltas = self._generated.deltas or ("",)  # max_tokens=0: one empty step after ttft
        engine.metrics.request_started(self.prompt_tokens)
        try:
            text = ""
            for index, delta in enumerate(deltas):
                due = start + self.prefill_s + engine.latency.due_s(index)
                await asyncio.sleep(max(0.0, due - loop.time()))
                problem = engine.group.problem()
                if problem is not None:
                    raise Unavailable(problem)
                text += delta
                last = index == len(deltas) - 1
                produced = min(index + 1, self.completion_tokens)
                if self.completion_tokens:
                    engine.metrics.token_generated(loop.time() - start if index == 0 else None)
                yield Step(
                    delta=delta,
                    text=text,
                    completion_tokens=produced,
                    finish=self._generated.finish if last else None,
                    elapsed_s=loop.time() - start,
                )
        finally:
            engine.metrics.request_ended(loop.time() - start)

    async def final(self) -> Step:
        """Run to the end without streaming; the last step carries the whole text."""
        last: Step | None = None
        async for step in self.steps():
            last = step
        assert last is not None  # steps() always yields at least once
        return last


class Engine:
    def __init__(
        self,
        group: GroupStatus,
        latency: LatencyModel,
        metrics: Metrics,
        context_length: int | None = None,
    ) -> None:
        self.group = group
        self.latency = latency
        self.metrics = metrics
        self.context_length = context_length
        self.prefix_cache = PrefixCache(latency.prefix_cache_tokens)

    def start(self, prompt: str, sampling: Sampling) -> Generation:
        """Admit a request or raise `Unavailable` / `BadGeneration` before anything is sent."""
        problem = self.group.problem()
        if problem is not None:
            raise Unavailable(problem)
        if sampling.max_tokens < 0:
            raise BadGeneration(f"max tokens must be >= 0 (got {sampling.max_tokens})")
        modelled = self.latency.prefill_us_per_token > 0  # else prompts cost nothing: skip it
        tokens = tokenize(prompt) if modelled else None
        prompt_tokens = len(tokens) if tokens is not None else count_tokens(prompt)
        if self.context_length is not None:
            wanted = prompt_tokens + sampling.max_tokens
            if wanted > self.context_length:
                raise BadGeneration(
                    f"prompt ({prompt_tokens} tokens) plus max tokens ({sampling.max_tokens}) "
                    f"exceed the context length ({self.context_length})"
                )
        generated = generate(
            prompt, max_tokens=sampling.max_tokens, seed=sampling.effective_seed, stop=sampling.stop
        )
        cached = self.prefix_cache.serve(tokens) if tokens is not None else None
        return Generation(self, prompt_tokens, generated, cached)
