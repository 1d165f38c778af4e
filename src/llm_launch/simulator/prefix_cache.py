"""The simulated group's prefix cache: which leading tokens of a prompt it already holds.

Used by `simulator.engine` when prefill has a cost (`--sim-prefill-us-per-token` > 0):
a request's prefill then takes that cost for each token the cache does not hold, and the
answer reports the rest as cached tokens (as SGLang's RadixAttention cache does; SGLang
reports them as `meta_info.cached_tokens` and OpenAI's
`usage.prompt_tokens_details.cached_tokens`). Pure, no clock: the tests read the numbers.

Each prefix of a served prompt is kept as one chained hash (the prefix of k tokens is
held only if the prefix of k - 1 is, as in a radix tree), at most `capacity` of them; the
least recently used go first. A prompt's own prefixes are touched in order, so a longer
prefix is never kept over a shorter one of the same prompt.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class PrefixCache:
    def __init__(self, capacity_tokens: int) -> None:
        self.capacity = capacity_tokens
        self._held: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def serve(self, tokens: Sequence[str]) -> int:
        """How many leading tokens of the prompt were cached; the whole prompt is then held."""
        if self.capacity <= 0:
            return 0
        cached, chain, hit = 0, 0, True
        for token in tokens:
            chain = hash((chain, token))
            if hit and chain in self._held:
                self._held.move_to_end(chain)
                cached += 1
                continue
            hit = False
            self._held[chain] = None
            if len(self._held) > self.capacity:
                self._held.popitem(last=False)
        return cached
