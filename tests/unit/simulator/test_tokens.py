"""The token rule and the deterministic model: same input, same output; honest counts."""

from __future__ import annotations

import pytest

from llm_launch.simulator.tokens import PUNCTUATION, VOCABULARY, count_tokens, generate, tokenize


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Hello, world!", ["Hello", ",", "world", "!"]),
        ("don't", ["don", "'", "t"]),
        ("  \n\t ", []),
        ("", []),
        ("héllo wörld_2", ["héllo", "wörld_2"]),
        ("<|user|>\nhi\n", ["<", "|", "user", "|", ">", "hi"]),
        ("a...b", ["a", ".", ".", ".", "b"]),
    ],
)
def test_tokens_are_word_runs_or_single_non_space_symbols(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens
    assert count_tokens(text) == len(tokens)


def test_the_same_prompt_and_seed_always_give_the_same_text() -> None:
    first = generate("Tell me a story", max_tokens=40, seed=7)
    again = generate("Tell me a story", max_tokens=40, seed=7)
    assert first == again
    assert first.text  # not empty


def test_another_seed_or_prompt_gives_other_text() -> None:
    base = generate("Tell me a story", max_tokens=40, seed=7).text
    assert generate("Tell me a story", max_tokens=40, seed=8).text != base
    assert generate("Tell me a poem", max_tokens=40, seed=7).text != base


def test_a_longer_budget_extends_the_same_text() -> None:
    short = generate("p", max_tokens=5, seed=1).text
    long = generate("p", max_tokens=50, seed=1).text
    assert long.startswith(short)


@pytest.mark.parametrize("max_tokens", [0, 1, 2, 16, 200])
def test_generation_stops_at_max_tokens_and_the_text_holds_that_many_tokens(
    max_tokens: int,
) -> None:
    result = generate("count me", max_tokens=max_tokens, seed=3)
    assert result.completion_tokens == max_tokens
    assert count_tokens(result.text) == max_tokens
    assert result.finish.reason == "length"
    assert result.finish.matched is None


def test_every_token_is_a_vocabulary_word_or_a_punctuation_mark() -> None:
    result = generate("vocabulary", max_tokens=300, seed=0)
    assert set(tokenize(result.text)) <= set(VOCABULARY) | set(PUNCTUATION)
    assert not result.text.startswith(" ")
    assert set(tokenize(result.text)) & set(PUNCTUATION)  # punctuation does occur


def test_a_stop_string_ends_generation_and_is_cut_from_the_text() -> None:
    full = generate("stop here", max_tokens=100, seed=5).text
    words = full.split()
    stop = words[3]  # the fourth word, possibly with punctuation glued to it
    result = generate("stop here", max_tokens=100, seed=5, stop=[stop])
    assert result.finish.reason == "stop"
    assert result.finish.matched == stop
    assert stop not in result.text
    assert full.startswith(result.text)
    assert result.text == full[: full.index(stop)]
    assert result.completion_tokens < 100


def test_a_stop_string_spanning_two_tokens_is_never_shown_even_in_part() -> None:
    full = generate("span", max_tokens=30, seed=2)
    second, third = full.deltas[1], full.deltas[2]
    stop = second[-2:] + third[:2]  # the end of token 2 and the start of token 3
    result = generate("span", max_tokens=30, seed=2, stop=[stop])
    assert result.finish.reason == "stop"
    assert result.text == full.text[: full.text.index(stop)]
    # Every delta, streamed in order, shows only text before the stop string.
    assert "".join(result.deltas) == result.text
    assert result.completion_tokens == 3


def test_the_earliest_of_several_stop_strings_wins() -> None:
    full = generate("many", max_tokens=60, seed=4).text
    words = full.split()
    early, late = words[2], words[6]
    result = generate("many", max_tokens=60, seed=4, stop=[late, early])
    assert result.finish.matched == (early if full.index(early) < full.index(late) else late)


def test_stop_strings_that_never_occur_leave_finish_length() -> None:
    result = generate("none", max_tokens=20, seed=0, stop=["ZZZ", ""])
    assert result.finish.reason == "length"
    assert result.completion_tokens == 20
