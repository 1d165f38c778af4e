"""The simulator's tokenizer and its deterministic "model": pure functions, no clock, no I/O.

Called by `simulator.engine` (which paces the output in time) and by the tests.

Token rule: a token is a match of the regex `\\w+|[^\\w\\s]`, i.e. a run of word
characters, or one character that is neither a word character nor whitespace.
"Hello, world!" is 4 tokens; "don't" is 3; whitespace alone is 0.

Generation: the output is drawn from a fixed vocabulary by a PRNG seeded with
sha256(seed, prompt), so the same prompt and seed always give the same text. Each
generated token is one piece of text: a word (preceded by a space except at the start)
or a punctuation mark, so the generated text holds exactly as many tokens as were
generated under the rule above. The model never emits end-of-sequence: generation ends
at `max_tokens` (finish "length") or when the text contains a stop string (finish
"stop"; the text is cut before the stop string, which is never shown, and the token
that completed it still counts as generated, as in real engines).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")

VOCABULARY = (
    "the", "a", "simulated", "engine", "answers", "with", "tokens", "from", "fixed",
    "vocabulary", "model", "group", "leader", "worker", "rank", "tensor", "parallel",
    "node", "cluster", "request", "stream", "latency", "prompt", "seed", "every",
    "time", "same", "output", "is", "not", "real", "text", "and", "of", "to", "in",
    "this", "that", "it", "runs", "on", "no", "gpu", "but", "serves", "http", "like",
    "sglang", "would", "so", "tests", "can", "check", "shape", "order", "count",
    "quickly", "deterministic", "word", "next", "first", "last", "one", "more",
)  # fmt: skip
PUNCTUATION = (",", ".")
_PUNCTUATION_ODDS = 8  # about one token in eight is a punctuation mark


def tokenize(text: str) -> list[str]:
    return TOKEN_PATTERN.findall(text)


def count_tokens(text: str) -> int:
    return sum(1 for _ in TOKEN_PATTERN.finditer(text))


@dataclass(frozen=True)
class Finish:
    reason: Literal["length", "stop"]
    matched: str | None = None  # the stop string that ended generation


@dataclass(frozen=True)
class Generated:
    """One generation: the visible text each generated token adds, and why it ended."""

    deltas: tuple[str, ...]  # one per generated token; the last may be "" (a stop string)
    finish: Finish

    @property
    def text(self) -> str:
        return "".join(self.deltas)

    @property
    def completion_tokens(self) -> int:
        return len(self.deltas)


def generate(prompt: str, *, max_tokens: int, seed: int, stop: Iterable[str] = ()) -> Generated:
    """The deterministic output for (prompt, seed), at most `max_tokens` tokens long."""
    stops = tuple(s for s in stop if s)
    longest_stop = max((len(s) for s in stops), default=0)
    rng = random.Random(_seed_of(prompt, seed))
    pieces: list[str] = []
    text = ""
    for index in range(max_tokens):
        piece = _next_piece(rng, index, pieces[-1] if pieces else None)
        search_from = max(0, len(text) - longest_stop + 1)
        pieces.append(piece)
        text += piece
        hit = _first_stop(text, stops, search_from)
        if hit is not None:
            cut, matched = hit
            return Generated(_visible_deltas(pieces, cut), Finish("stop", matched))
    return Generated(tuple(pieces), Finish("length"))


def _seed_of(prompt: str, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _next_piece(rng: random.Random, index: int, previous: str | None) -> str:
    after_word = previous is not None and previous not in PUNCTUATION
    if after_word and rng.randrange(_PUNCTUATION_ODDS) == 0:
        return rng.choice(PUNCTUATION)
    word = rng.choice(VOCABULARY)
    return word if index == 0 else f" {word}"


def _first_stop(text: str, stops: tuple[str, ...], search_from: int) -> tuple[int, str] | None:
    """The earliest stop string in `text[search_from:]`, as (index, stop string)."""
    best: tuple[int, str] | None = None
    for candidate in stops:
        at = text.find(candidate, search_from)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, candidate)
    return best


def _visible_deltas(pieces: list[str], cut: int) -> tuple[str, ...]:
    """Each piece's share of `text[:cut]`: text that belongs to a stop string is never shown."""
    deltas = []
    start = 0
    for piece in pieces:
        end = start + len(piece)
        deltas.append(piece[: max(0, min(end, cut) - start)])
        start = end
    return tuple(deltas)
