"""Cache-aware routing: time to first token on multi-turn chats, in one run, of
llm-launch's `cache_aware` against its `least_in_flight` against sglang-router's
`cache_aware`.

One real `llm-launch serve` (local backend, simulated SGLang, an API key) runs three
2-group endpoints with the same simulated engines: a prefill cost of `PREFILL_US` per
prompt token the group's prefix cache does not hold (so prefill dominates time to first
token), a prefix cache of `CACHE_TOKENS` (every conversation of the run fits), TTFT and
TPOT small. Columns:

- "llm-launch cache_aware": `/v2/chat/completions` of the endpoint with
  `routing_policy: cache_aware`;
- "llm-launch least_in_flight": the same route, the endpoint with the default policy;
- "sglang-router cache_aware": `sglang-router --policy cache_aware` (its thresholds at
  their defaults) over the two engines of the third endpoint, at its `/v1/chat/completions`.

Each column has its own two engines, hence its own caches; the engines do not queue or
slow each other down (the simulator's latency model), so what differs is only where each
column sends each turn. The router's column skips llm-launch's API hop and forwarders
(a few ms per request, against prefills of hundreds of ms; printed as CPU per request).

Workload: `--users` concurrent users (starts spread over `--stagger-s`), each a chat of
`--turns` turns with its own system prompt of `--system-tokens` tokens; each turn adds a
user message of `--user-tokens` tokens and resends the whole conversation with the
previous answers (`--reply-tokens` each), streamed; the time to first token is the time to
the first chunk with content. The usage event (`stream_options.include_usage`) gives the
prompt tokens and `cached_tokens`. Every column and round gets fresh texts (a seed per
column, round and user), so no column finds another's prefixes cached; the think times
between turns are the same for every column within a round. Rounds measure each column in
turn, the column order alternating. Requests per engine come from the engines' own
`/metrics`: its generated tokens over a round divided by `--reply-tokens` (every turn
generates exactly that many; the groups' health checks, also counted in
`sglang:num_requests_total`, generate one token each, fewer than a turn's in a round).

    .venv/bin/python bench/cache_aware.py [--rounds 4] [--users 16] [--turns 8]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gateway import (
    ROOT,
    ROUTER_PACKAGE,
    Endpoint,
    _pid,
    closed_port,
    cpu_s,
    descendants,
    router,
)
from tests.builders import endpoint_body
from tests.support.deletes import wait_until_deleted
from tests.support.local_groups import group_records, wait_for
from tests.support.server import RunningServer, simulated_local_server

OWNER, KEY = "bench", "bench-cache-aware-key-0123456789"
PREFILL_US = 200  # per uncached prompt token: a 2,000-token prompt costs 0.4 s uncached
CACHE_TOKENS = 1_000_000  # per group; the default run sends one group < 0.2 M distinct prefixes
TTFT_MS, TPOT_MS = 5, 2
CA, LIF = "llm-launch cache_aware", "llm-launch least_in_flight"
ROUTER = "sglang-router cache_aware"
# column -> (endpoint name, its routing_policy); the router's endpoint only lends its
# engines (the router calls them directly), so its policy plays no part.
ENDPOINTS = {CA: ("cab-cache-aware", "cache_aware"), LIF: ("cab-least", "least_in_flight"),
             ROUTER: ("cab-router", "least_in_flight")}  # fmt: skip
# Words of the synthetic texts: one simulated token each (the simulator counts a run of
# word characters as one token): two syllables each, 4,900 of them.
SYLLABLES = [c + v for c, v in itertools.product("bdfgklmnprstvz", "aeiou")]
WORDS = [a + b for a, b in itertools.product(SYLLABLES, SYLLABLES)]
NUMBER = re.compile(r"^([a-z:_]+)_total\{[^}]*\} ([0-9.e+]+)$", re.M)


# --- the endpoints and the router -----------------------------------------------------


def serve(tmp: Path) -> RunningServer:
    env = {
        "LLM_LAUNCH_API_KEYS": f"{OWNER}:{KEY}",
        "LLM_LAUNCH_SIM_TTFT_MS": str(TTFT_MS),
        "LLM_LAUNCH_SIM_TPOT_MS": str(TPOT_MS),
        "LLM_LAUNCH_SIM_PREFILL_US_PER_TOKEN": str(PREFILL_US),
        "LLM_LAUNCH_SIM_PREFIX_CACHE_TOKENS": str(CACHE_TOKENS),
        "LLM_LAUNCH_LOG_LEVEL": "warning",
    }
    return simulated_local_server(tmp, env).start()


@contextmanager
def endpoints(server: RunningServer, tmp: Path) -> Iterator[dict[str, Endpoint]]:
    """The three READY 2-group SGLang endpoints, by column; deleted on the way out."""
    with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=30) as client:
        try:
            for name, policy in ENDPOINTS.values():
                body = endpoint_body(name=name, inference_framework="sglang", min_workers=2,
                                     max_workers=2, routing_policy=policy)  # fmt: skip
                client.post("/v1/llm/model-endpoints", json=body).raise_for_status()
            found = {}
            for column, (name, _) in ENDPOINTS.items():
                ready = wait_for(client, name, lambda e: e["status"] == "READY", timeout=180)
                records = group_records(tmp, str(ready["id"]))
                found[column] = Endpoint(
                    engines=[f"http://127.0.0.1:{g['ports']['engines'][0]}" for g in records],
                    engine_pids=[_pid(g, "rank-0") for g in records],
                    forwarder_pids=[_pid(g, "forwarder") for g in records],
                )
            yield found
        finally:
            for name, _ in ENDPOINTS.values():
                client.delete(f"/v1/llm/model-endpoints/{name}")
            for name, _ in ENDPOINTS.values():
                wait_until_deleted(client, name)


# --- one chat turn and one conversation -----------------------------------------------


@dataclass
class Turn:
    number: int  # 1 for a conversation's first turn
    ttft_s: float | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    previous_prompt_tokens: int = 0  # the conversation's last prompt (0 on turn 1)
    error: str | None = None


@dataclass
class Column:
    name: str
    url: str  # the chat route, query included
    headers: dict[str, str]
    model: str
    engines: list[str]
    pids: dict[str, list[int]]  # "hop" (router, or API and forwarders) and "engines"
    turns: list[Turn] = field(default_factory=list)
    rounds: list[list[Turn]] = field(default_factory=list)
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)  # by kind of process
    engine_requests: list[float] = field(init=False)  # answers, by engine
    engine_prompt_tokens: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.engine_requests = [0.0] * len(self.engines)
        self.engine_prompt_tokens = [0.0] * len(self.engines)


async def ask(client: httpx.AsyncClient, column: Column, messages: list[dict[str, str]],
              turn: Turn, reply_tokens: int) -> str:  # fmt: skip
    """Send one streamed chat turn; fill `turn` (time to first content, usage, error) and
    return the answer's text. The events are split from the raw bytes (httpx's line
    iterator costs the client more CPU than the rest of a turn)."""
    body = {"model": column.model, "messages": messages, "max_tokens": reply_tokens,
            "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    parts: list[str] = []
    start = time.perf_counter()
    try:
        async with client.stream("POST", column.url, content=orjson.dumps(body),
                                 headers=column.headers) as response:  # fmt: skip
            if response.status_code != 200:
                turn.error = f"{response.status_code} {(await response.aread())[:200]!r}"
                return ""
            pending = b""
            async for chunk in response.aiter_raw():
                *events, pending = (pending + chunk).split(b"\n\n")
                for event in events:
                    if event.startswith(b"data: {"):
                        read_event(orjson.loads(event[6:]), turn, parts, start)
    except httpx.HTTPError as exc:
        turn.error = f"{type(exc).__name__}: {exc}"
    if turn.error is None and (turn.ttft_s is None or not turn.prompt_tokens):
        turn.error = "no content or no usage in the stream"
    return "".join(parts)


def read_event(event: dict[str, Any], turn: Turn, parts: list[str], start: float) -> None:
    """One server-sent chunk: content (the first one's time is the TTFT), usage, error."""
    if "error" in event:
        turn.error = str(event["error"])[:200]
    for choice in event.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        if content:
            if turn.ttft_s is None:
                turn.ttft_s = time.perf_counter() - start
            parts.append(content)
    usage = event.get("usage")
    if usage:
        turn.prompt_tokens = usage["prompt_tokens"]
        turn.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0


def words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choices(WORDS, k=count))


async def converse(client: httpx.AsyncClient, column: Column, tag: str, shape: random.Random,
                   args: argparse.Namespace) -> list[Turn]:  # fmt: skip
    """One user's chat: `args.turns` turns, each resending the whole conversation. `tag`
    seeds the texts (fresh per column, round and user); `shape` draws the start and the
    think times (the same for every column in a round)."""
    text = random.Random(tag)
    await asyncio.sleep(shape.uniform(0, args.stagger_s))
    system = f"You are assistant {tag}. " + words(text, args.system_tokens)
    messages = [{"role": "system", "content": system}]
    turns: list[Turn] = []
    previous = 0
    for number in range(1, args.turns + 1):
        messages.append({"role": "user", "content": words(text, args.user_tokens)})
        turn = Turn(number, previous_prompt_tokens=previous)
        turns.append(turn)
        reply = await ask(client, column, messages, turn, args.reply_tokens)
        if turn.error is not None:
            break  # the conversation's later turns would not be what it sent
        messages.append({"role": "assistant", "content": reply})
        previous = turn.prompt_tokens
        await asyncio.sleep(shape.uniform(0, 2 * args.think_ms / 1000))
    return turns


# --- rounds ---------------------------------------------------------------------------


async def engine_counters(client: httpx.AsyncClient, engines: list[str]) -> list[dict[str, float]]:
    """Each engine's `*_total` counters from its /metrics."""
    found = []
    for engine in engines:
        text = (await client.get(f"{engine}/metrics")).text
        found.append({name: float(value) for name, value in NUMBER.findall(text)})
    return found


async def run_column(client: httpx.AsyncClient, column: Column, index: int, number: int,
                     args: argparse.Namespace) -> None:  # fmt: skip
    before = await engine_counters(client, column.engines)
    processes = {kind: sum(cpu_s(p) for p in pids) for kind, pids in column.pids.items()}
    cpu, wall = time.process_time(), time.perf_counter()
    shapes = [random.Random(f"shape {number}.{user}") for user in range(args.users)]
    tags = [f"{index}.{number}.{user}" for user in range(args.users)]
    chats = [converse(client, column, t, s, args) for t, s in zip(tags, shapes, strict=True)]
    turns = [t for chat in await asyncio.gather(*chats) for t in chat]
    column.wall_s += time.perf_counter() - wall
    column.client_cpu_s += time.process_time() - cpu
    for kind, pids in column.pids.items():
        used = sum(cpu_s(p) for p in pids) - processes[kind]
        column.cpu_s[kind] = column.cpu_s.get(kind, 0.0) + used
    after = await engine_counters(client, column.engines)
    column.turns += turns
    column.rounds.append(turns)
    for i, (old, new) in enumerate(zip(before, after, strict=True)):
        generated = new["sglang:generation_tokens"] - old["sglang:generation_tokens"]
        requests = generated // args.reply_tokens
        column.engine_requests[i] += requests
        column.engine_prompt_tokens[i] += new["sglang:prompt_tokens"] - old["sglang:prompt_tokens"]


async def probe(client: httpx.AsyncClient, columns: list[Column]) -> None:
    """Every column answers a 2-turn chat with content and usage (the router passes usage
    through); a note when a cache-aware column's second turn missed the first's prompt."""
    for column in columns:
        messages = [{"role": "system", "content": f"probe {column.name} " + "word " * 300}]
        first = [*messages, {"role": "user", "content": "hello"}]
        turns = [Turn(1), Turn(2)]
        reply = await ask(client, column, first, turns[0], 8)
        second = [*first, {"role": "assistant", "content": reply}]
        second.append({"role": "user", "content": "more"})
        await ask(client, column, second, turns[1], 8)
        problems = [t.error for t in turns if t.error]
        if problems:
            raise RuntimeError(f"{column.name}: {problems}")
        if column.name != LIF and turns[1].cached_tokens < turns[0].prompt_tokens:
            print(f"note: {column.name}'s probe did not hit the cache: {turns}", flush=True)


async def measure(columns: list[Column], args: argparse.Namespace) -> None:
    limits = httpx.Limits(max_connections=4 * args.users, max_keepalive_connections=4 * args.users)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await probe(client, columns)
        for number in range(args.rounds):
            order = columns if number % 2 == 0 else columns[::-1]
            for column in order:
                await run_column(client, column, columns.index(column), number, args)
            print(f"round {number + 1}/{args.rounds} done", flush=True)


# --- the report -----------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ttfts_ms(turns: list[Turn], later: bool) -> list[float]:
    """Times to first token of the answered turns (`later`: of turns >= 2 only), in ms."""
    return [
        t.ttft_s * 1000
        for t in turns
        if t.ttft_s is not None and t.error is None and (t.number >= 2 or not later)
    ]


def report_ttft(columns: list[Column], args: argparse.Namespace) -> None:
    base = next(c for c in columns if c.name == LIF)
    print(f"\ntime to first token, ms ({args.users} users x {args.turns} turns x {args.rounds} "
          "rounds per column; 'vs lif': the ratio to least_in_flight's in this run, "
          "(rounds) the range of the per-round p50 ratios)")  # fmt: skip
    head = ("mean", "p50", "p90", "p99", "mean vs lif", "p50 vs lif", "(rounds)", "p90 vs lif")
    for later, title in ((False, "all turns"), (True, "turns >= 2")):
        print(f"  {title:30}" + "".join(f"{h:>12}" for h in head))
        theirs = ttfts_ms(base.turns, later)
        for column in columns:
            mine = ttfts_ms(column.turns, later)
            ratios = [
                percentile(ttfts_ms(a, later), 50) / percentile(ttfts_ms(b, later), 50)
                for a, b in zip(column.rounds, base.rounds, strict=True)
            ]
            stats = [statistics.mean(mine), *(percentile(mine, q) for q in (50, 90, 99))]
            cells = [f"{v:.1f}" for v in stats] + [
                f"{statistics.mean(mine) / statistics.mean(theirs):.2f}",
                f"{percentile(mine, 50) / percentile(theirs, 50):.2f}",
                f"{min(ratios):.2f}-{max(ratios):.2f}",
                f"{percentile(mine, 90) / percentile(theirs, 90):.2f}",
            ]
            print(f"    {column.name:28}" + "".join(f"{c:>12}" for c in cells))


def report_cache(columns: list[Column]) -> None:
    print("\nprefix cache, balance and cost ('sticky': turns >= 2 finding the whole previous "
          "prompt of their conversation cached; per engine: answers and share of prompt "
          "tokens; CPU: µs per request, hop = router, or API + forwarders)")  # fmt: skip
    head = ("requests", "errors", "req/s", "cached", "sticky", "answers/engine",
            "prompt/engine", "hop CPU", "engines CPU", "client CPU")  # fmt: skip
    print(f"  {'column':30}" + "".join(f"{h:>15}" for h in head))
    for column in columns:
        ok = [t for t in column.turns if t.error is None]
        later = [t for t in ok if t.number >= 2]
        sticky = sum(t.cached_tokens >= t.previous_prompt_tokens for t in later)
        cached = sum(t.cached_tokens for t in ok) / max(sum(t.prompt_tokens for t in ok), 1)
        tokens = sum(column.engine_prompt_tokens) or 1
        count = max(len(column.turns), 1)
        cells = (
            str(len(column.turns)),
            str(len(column.turns) - len(ok)),
            f"{len(column.turns) / column.wall_s:.1f}",
            f"{cached:.1%}",
            f"{sticky / max(len(later), 1):.1%}",
            "/".join(f"{r:.0f}" for r in column.engine_requests),
            "/".join(f"{p / tokens:.0%}" for p in column.engine_prompt_tokens),
            f"{column.cpu_s['hop'] / count * 1e6:.0f}",
            f"{column.cpu_s['engines'] / count * 1e6:.0f}",
            f"{column.client_cpu_s / column.wall_s:.0%} core",
        )
        print(f"    {column.name:28}" + "".join(f"{c:>15}" for c in cells))
    errors = [t.error for c in columns for t in c.turns if t.error]
    if errors:
        print(f"  first errors: {errors[:3]}")


def make_columns(server: RunningServer, router_at: tuple[str, int],
                 found: dict[str, Endpoint]) -> list[Column]:  # fmt: skip
    """The llm-launch columns on the API's chat route (with the owner's key), the router's
    on its own; each sends the `model` its engines serve (the endpoint's name). The API's
    processes: `serve` and any below it, less every group's."""
    assert server.pid is not None
    groups = {p for e in found.values() for p in (*e.engine_pids, *e.forwarder_pids)}
    api = [p for p in descendants(server.pid) if p not in groups]
    json_type = {"content-type": "application/json"}
    columns = []
    for name, (endpoint, _) in ENDPOINTS.items():
        pids = {"engines": found[name].engine_pids}
        if name == ROUTER:
            url, headers = f"{router_at[0]}/v1/chat/completions", json_type
            pids["hop"] = [router_at[1]]
        else:
            url = f"{server.url}/v2/chat/completions?model_endpoint_name={endpoint}"
            headers = {"x-api-key": KEY, **json_type}
            pids["hop"] = [*api, *found[name].forwarder_pids]
        columns.append(Column(name, url, headers, endpoint, found[name].engines, pids))
    return columns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--users", type=int, default=16, help="concurrent conversations")
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--system-tokens", type=int, default=2000)
    parser.add_argument("--user-tokens", type=int, default=60)
    parser.add_argument("--reply-tokens", type=int, default=32)
    parser.add_argument("--think-ms", type=float, default=200, help="mean pause between turns")
    parser.add_argument("--stagger-s", type=float, default=1.0, help="users start within it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        server = serve(tmp)
        stack.callback(server.stop)
        found = stack.enter_context(endpoints(server, tmp))
        hf_port = stack.enter_context(closed_port())
        router_at = stack.enter_context(
            router(found[ROUTER].engines, tmp, hf_port, policy="cache_aware")
        )
        columns = make_columns(server, router_at, found)
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()  # fmt: skip
        print(f"llm-launch at {commit or 'unknown commit'}, {ROUTER_PACKAGE}, {os.cpu_count()} "
              f"CPUs, load average {os.getloadavg()[0]:.1f}; simulated engines: prefill "
              f"{PREFILL_US} µs per uncached token, cache {CACHE_TOKENS} tokens, TTFT {TTFT_MS} "
              f"ms, TPOT {TPOT_MS} ms", flush=True)  # fmt: skip
        asyncio.run(measure(columns, args))
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        report_ttft(columns, args)
        report_cache(columns)


if __name__ == "__main__":
    main()
