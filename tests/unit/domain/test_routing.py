"""The routing policies' choices: least-in-flight with random ties, and sglang-router's
cache-aware choice (prefix affinity, the room rule, the imbalance fallback, bounded trees)."""

from __future__ import annotations

import random
from collections import Counter

from llm_launch.domain.routing import (
    CacheAware,
    CacheAwareSettings,
    PrefixTree,
    least_in_flight,
    prompt_text,
    prompt_text_of,
)

A, B, C = "http://a", "http://b", "http://c"
SYSTEM = "You are a helpful assistant who answers questions about geography in detail. " * 3


def test_ties_between_idle_targets_spread_over_all_of_them() -> None:
    chance = random.Random(7)
    picks = Counter(least_in_flight([A, B, C], {}, chance) for _ in range(300))
    # A fair draw gives each about 100; a tie broken by order gives 300, 0, 0.
    assert set(picks) == {A, B, C}
    assert min(picks.values()) >= 60, picks


def test_the_target_with_fewest_requests_in_flight_always_wins() -> None:
    chance = random.Random(7)
    picks = {least_in_flight([A, B, C], {A: 3, B: 1, C: 2}, chance) for _ in range(50)}
    assert picks == {B}


def test_prompts_sharing_a_prefix_stick_to_the_target_that_served_it() -> None:
    policy, chance = CacheAware(), random.Random(3)
    first = {
        topic: policy.choose([A, B], {}, f"{SYSTEM} Question about {topic}?", chance)
        for topic in ("rivers", "mountains")
    }
    later = [
        policy.choose([A, B], {}, f"{SYSTEM} Question about {topic}? And then more.", chance)
        for topic in ("rivers", "mountains")
        for _ in range(20)
    ]
    assert later == [first["rivers"]] * 20 + [first["mountains"]] * 20


def test_a_new_prompt_goes_to_the_target_with_the_smallest_tree() -> None:
    policy, chance = CacheAware(), random.Random(3)
    served = policy.choose([A, B], {}, "x" * 500, chance)
    other = B if served == A else A
    # Nothing in common with what `served` holds: the emptier tree (most cache room) wins.
    assert policy.choose([A, B], {}, "an unrelated prompt", chance) == other


def test_two_unrelated_conversations_land_on_different_targets() -> None:
    policy, chance = CacheAware(), random.Random(11)
    one = policy.choose([A, B], {}, "conversation one: " + "a" * 300, chance)
    two = policy.choose([A, B], {}, "another chat entirely: " + "b" * 300, chance)
    assert one != two


def test_an_unbalanced_load_sends_even_a_cached_prefix_to_the_least_loaded_target() -> None:
    policy, chance = CacheAware(), random.Random(5)
    home = policy.choose([A, B], {}, SYSTEM + "turn one", chance)
    other = B if home == A else A
    # sglang-router's test: max - min > 64 and max > 1.5 x min.
    unbalanced = {home: 100, other: 10}
    assert policy.choose([A, B], unbalanced, SYSTEM + "turn two", chance) == other
    # Within the thresholds (a difference of 60) the prefix still decides.
    balanced = {home: 70, other: 10}
    assert policy.choose([A, B], balanced, SYSTEM + "turn one, again", chance) == home


def test_a_prefix_below_the_cache_threshold_does_not_attract_the_request() -> None:
    settings = CacheAwareSettings(cache_threshold=0.5)
    policy, chance = CacheAware(settings), random.Random(5)
    home = policy.choose([A, B], {}, "shared start " + "q" * 100, chance)
    # The other tree is empty, so smallest-tree picks it unless the match counts.
    short_match = "shared start " + "z" * 200  # 13 of 213 characters match: below 0.5
    assert policy.choose([A, B], {}, short_match, chance) != home


def test_a_tree_over_its_bound_evicts_the_least_recently_used_prefixes() -> None:
    tree = PrefixTree(max_chars=1000)
    prompts = {name: name * 200 for name in "abcdef"}
    for name in "abcd":
        tree.insert(prompts[name])
    tree.insert(prompts["a"])  # used again: now more recent than b, c and d
    tree.insert(prompts["e"])  # 1000 characters: at the bound, nothing goes
    assert tree.chars == 1000
    tree.insert(prompts["f"])  # over it: the least recently used go, down to 3/4 of it
    assert tree.chars <= 750
    kept = {name for name, text in prompts.items() if tree.match(text) == 200}
    assert kept == {"a", "e", "f"}


def test_many_distinct_prompts_never_grow_a_tree_past_its_bound() -> None:
    policy = CacheAware(CacheAwareSettings(max_tree_chars=5_000))
    chance = random.Random(1)
    for i in range(2_000):
        policy.choose([A, B], {}, f"prompt number {i} " + "w" * (i % 50), chance)
    assert all(tree.chars <= 5_000 for tree in policy.trees.values())
    assert sum(tree.chars for tree in policy.trees.values()) > 0


def test_a_tree_matches_a_prefix_that_ends_inside_an_edge() -> None:
    tree = PrefixTree(max_chars=10_000)
    tree.insert("abcdef")
    tree.insert("abcxyz")
    assert (tree.match("abcdQQ"), tree.match("abcxy"), tree.match("zzz")) == (4, 5, 0)
    assert tree.chars == len("abc") + len("def") + len("xyz")


def test_trees_of_targets_no_longer_offered_are_dropped() -> None:
    policy, chance = CacheAware(), random.Random(2)
    for i in range(10):
        policy.choose([A, B], {}, f"prompt {i} " * 20, chance)
    policy.choose([B, C], {}, "later", chance)
    assert A not in policy.trees


def test_a_chat_prompt_of_a_later_turn_extends_the_text_of_the_earlier_turn() -> None:
    turn_one = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi"}]
    turn_two = [
        *turn_one,
        {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
        {"role": "user", "content": "Where is Lima?"},
    ]
    first, second = prompt_text({"messages": turn_one}), prompt_text({"messages": turn_two})
    assert first and second.startswith(first) and len(second) > len(first)


def test_completion_prompts_are_read_as_text_lists_of_texts_or_token_ids() -> None:
    assert prompt_text({"prompt": "Once upon"}) == "Once upon"
    assert prompt_text({"prompt": ["Once", " upon"]}) == "Once upon"
    assert prompt_text({"prompt": [1, 2, 3]}) == "1 2 3 "
    assert prompt_text({"max_new_tokens": 3}) == ""
    assert prompt_text_of(b'{"prompt": "Once"}') == "Once"
    assert prompt_text_of(b"not json") == prompt_text_of(b"[1]") == ""
