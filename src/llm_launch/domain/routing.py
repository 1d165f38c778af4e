"""Routing policies: which of an endpoint's ready targets (groups) takes a request.

Pure logic, no I/O and no clock: the inference path (services/inference.py) gives the
ready targets, its own count of requests in flight per target and, for cache-aware
routing, the request's prompt text (`prompt_text`), and sends to the target chosen.

- `least_in_flight` (the default): among the targets with the fewest requests in flight
  one is drawn at random, so sequential traffic (every target ties at zero) spreads over
  all of them, and a busier target is never chosen over an idler one.
- `CacheAware`, as sglang-router's `cache_aware` policy: an approximate radix tree per
  target of the prompt prefixes it was sent (characters, as sglang-router matches text),
  bounded in size with least-recently-used eviction. A request goes to the target whose
  tree matches the longest part of its prompt when that part is above `cache_threshold`
  of the prompt, else to the target with the smallest tree (the most cache room); but
  when the load is unbalanced it goes to the least loaded target, whatever the trees say.
  The trees approximate what each engine's prefix cache holds; they are per process, as
  each sglang-router instance keeps its own.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson


class RoutingPolicy(StrEnum):
    LEAST_IN_FLIGHT = "least_in_flight"
    CACHE_AWARE = "cache_aware"


DEFAULT_POLICY = RoutingPolicy.LEAST_IN_FLIGHT
# Routing looks at this many leading characters of a prompt at most: prefix caches pay off
# at the start of a prompt, and it bounds the work and the tree growth one request causes.
MAX_PROMPT_CHARS = 65_536


@dataclass(frozen=True)
class CacheAwareSettings:
    """sglang-router's defaults (RouterArgs in sgl-router/py_src/sglang_router/router_args.py,
    sgl-project/sglang, as shipped by sglang-router 0.3.x, the version issue 13 benchmarks
    against): cache_threshold 0.3, balance_abs_threshold 64, balance_rel_threshold 1.5.
    Older releases (0.1.x) defaulted to 0.5, 32 and 1.0001. Its max_tree_size (2**26
    characters per worker) is for one router process in front of one model; a control
    plane keeps a tree per target of every cache-aware endpoint, so ours is smaller."""

    cache_threshold: float = 0.3
    balance_abs_threshold: int = 64
    balance_rel_threshold: float = 1.5
    max_tree_chars: int = 2**20


def least_in_flight(
    targets: Sequence[str], in_flight: Mapping[str, int], chance: random.Random
) -> str:
    """One of the targets with the fewest requests in flight, drawn at random among them."""
    fewest = min(in_flight.get(t, 0) for t in targets)
    idlest = [t for t in targets if in_flight.get(t, 0) == fewest]
    return idlest[0] if len(idlest) == 1 else chance.choice(idlest)


def is_unbalanced(loads: Sequence[int], settings: CacheAwareSettings) -> bool:
    """sglang-router's test: max - min above the absolute threshold and max above min
    times the relative one, both at once."""
    most, least = max(loads), min(loads)
    return (
        most - least > settings.balance_abs_threshold
        and most > least * settings.balance_rel_threshold
    )


class _Node:
    __slots__ = ("children", "edge", "parent", "touched")

    def __init__(self, edge: str, parent: _Node | None, touched: int) -> None:
        self.edge = edge
        self.parent = parent
        self.children: dict[str, _Node] = {}
        self.touched = touched


def _common_length(a: str, b: str) -> int:
    """Length of the common prefix, by halving slice comparisons (done in C)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


class PrefixTree:
    """The prompt prefixes one target was sent: a radix tree of characters, at most
    `max_chars` characters in its edges; beyond that the least recently used leaves go
    (down to three quarters of the bound, so eviction's full walk is rare)."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.chars = 0
        self._root = _Node("", None, 0)
        self._tick = 0

    def match(self, text: str) -> int:
        """How many leading characters of `text` the tree holds."""
        node, matched = self._root, 0
        while matched < len(text):
            child = node.children.get(text[matched])
            if child is None:
                break
            common = _common_length(child.edge, text[matched : matched + len(child.edge)])
            matched += common
            if common < len(child.edge):
                break
            node = child
        return matched

    def insert(self, text: str) -> None:
        """Add `text`, marking its whole path as just used; evict when over the bound."""
        self._tick += 1
        node, done = self._root, 0
        while done < len(text):
            child = node.children.get(text[done])
            if child is None:
                node.children[text[done]] = _Node(text[done:], node, self._tick)
                self.chars += len(text) - done
                break
            common = _common_length(child.edge, text[done : done + len(child.edge)])
            if common < len(child.edge):
                child = self._split(child, common)
            child.touched = self._tick
            node, done = child, done + common
        if self.chars > self.max_chars:
            self._evict(self.max_chars * 3 // 4)

    def _split(self, child: _Node, at: int) -> _Node:
        """Cut `child`'s edge after `at` characters; the upper part is returned."""
        parent = child.parent
        assert parent is not None  # the root is never split
        upper = _Node(child.edge[:at], parent, child.touched)
        parent.children[child.edge[0]] = upper
        child.edge = child.edge[at:]
        child.parent = upper
        upper.children[child.edge[0]] = child
        return upper

    def _evict(self, target_chars: int) -> None:
        leaves = [(n.touched, id(n), n) for n in self._nodes() if not n.children]
        heapq.heapify(leaves)
        while leaves and self.chars > target_chars:
            _, _, leaf = heapq.heappop(leaves)
            parent = leaf.parent
            assert parent is not None
            del parent.children[leaf.edge[0]]
            self.chars -= len(leaf.edge)
            if parent is not self._root and not parent.children:
                heapq.heappush(leaves, (parent.touched, id(parent), parent))

    def _nodes(self) -> list[_Node]:
        found, pending = [], list(self._root.children.values())
        while pending:
            node = pending.pop()
            found.append(node)
            pending.extend(node.children.values())
        return found


class CacheAware:
    """sglang-router's `cache_aware` choice for one endpoint: a prefix tree per target."""

    def __init__(self, settings: CacheAwareSettings | None = None) -> None:
        self.settings = settings or CacheAwareSettings()
        self.trees: dict[str, PrefixTree] = {}

    def choose(
        self,
        targets: Sequence[str],
        in_flight: Mapping[str, int],
        prompt: str,
        chance: random.Random,
    ) -> str:
        """The target for a request with `prompt`; its tree then holds the prompt."""
        self._forget_gone(targets)
        text = prompt[:MAX_PROMPT_CHARS]
        loads = [in_flight.get(t, 0) for t in targets]
        if not text or len(targets) == 1 or is_unbalanced(loads, self.settings):
            chosen = least_in_flight(targets, in_flight, chance)
        else:
            chosen = self._by_cache(targets, in_flight, text, chance)
        if text:
            self._tree(chosen).insert(text)
        return chosen

    def _by_cache(
        self, targets: Sequence[str], in_flight: Mapping[str, int], text: str, c: random.Random
    ) -> str:
        matches = {t: self._tree(t).match(text) for t in targets}
        longest = max(matches.values())
        if longest / len(text) > self.settings.cache_threshold:
            candidates = [t for t in targets if matches[t] == longest]
        else:  # no target holds enough of it: the one with the most room, as sglang-router
            smallest = min(self._tree(t).chars for t in targets)
            candidates = [t for t in targets if self._tree(t).chars == smallest]
        return least_in_flight(candidates, in_flight, c)

    def _tree(self, target: str) -> PrefixTree:
        tree = self.trees.get(target)
        if tree is None:
            tree = self.trees[target] = PrefixTree(self.settings.max_tree_chars)
        return tree

    def _forget_gone(self, targets: Sequence[str]) -> None:
        """Drop the trees of targets no longer offered (a group replaced or drained), so
        that memory follows the live groups, and a new group starts empty, as its cache."""
        if any(t not in targets for t in self.trees):
            self.trees = {t: tree for t, tree in self.trees.items() if t in targets}


def prompt_text(body: Mapping[str, Any]) -> str:
    """The text a request's prompt cache would hold, from a Launch completion body
    (`prompt`), an OpenAI completion body (`prompt`: text, list of texts, or token ids) or
    an OpenAI chat body (`messages`, each role and content in order, so that a later turn
    of a conversation extends the text of the earlier one). "" when there is none."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return "".join(_message_text(m) for m in messages if isinstance(m, Mapping))
    return _content_text(body.get("prompt"))


def prompt_text_of(raw: bytes) -> str:
    """`prompt_text` of a raw JSON body; "" when it is not a JSON object."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ""
    return prompt_text(body) if isinstance(body, dict) else ""


def _message_text(message: Mapping[str, Any]) -> str:
    return f"<{message.get('role')}>{_content_text(message.get('content'))}\n"


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # texts, OpenAI content parts, or token ids
        return "".join(_part_text(part) for part in content)
    return ""


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, Mapping):
        text = part.get("text")
        return text if isinstance(text, str) else ""
    if isinstance(part, int) and not isinstance(part, bool):
        return f"{part} "  # token ids: one "word" each, so prefixes of ids match as text
    return ""
