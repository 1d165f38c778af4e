"""Rank 0's admission rule: a rank joins only a forming group of the same shape, once."""

from __future__ import annotations

from typing import Any

import pytest

from llm_launch.simulator.group import GroupShape
from llm_launch.simulator.leader import GroupState, admission_problem

SHAPE = GroupShape(nnodes=3, tp_size=16, pp_size=1)


def hello(**overrides: Any) -> dict[str, Any]:
    message = {"type": "hello", "rank": 1, "nnodes": 3, "tp_size": 16, "pp_size": 1}
    message.update(overrides)
    return message


def test_a_matching_rank_joins_a_forming_group() -> None:
    assert admission_problem(hello(), SHAPE, joined={2}, state=GroupState.FORMING) is None


@pytest.mark.parametrize(
    ("message", "joined", "state", "words"),
    [
        (hello(nnodes=2), set(), GroupState.FORMING, "nnodes=2, rank 0 has nnodes=3"),
        (hello(tp_size=8), set(), GroupState.FORMING, "tp_size=8"),
        (hello(pp_size=2), set(), GroupState.FORMING, "pp_size=2"),
        (hello(rank=3), set(), GroupState.FORMING, "out of range"),
        (hello(rank=0), set(), GroupState.FORMING, "out of range"),
        (hello(rank=1), {1}, GroupState.FORMING, "already joined"),
        (hello(rank="1"), set(), GroupState.FORMING, "integer rank"),
        (hello(rank=True), set(), GroupState.FORMING, "integer rank"),
        (hello(type="heartbeat"), set(), GroupState.FORMING, "expected a hello"),
        (hello(), {2}, GroupState.FORMED, "already formed; restart the whole group"),
        (hello(), {2}, GroupState.BROKEN, "already broken; restart the whole group"),
    ],
)
def test_a_rank_that_does_not_fit_is_refused_with_the_reason(
    message: dict[str, Any], joined: set[int], state: GroupState, words: str
) -> None:
    problem = admission_problem(message, SHAPE, joined=joined, state=state)
    assert problem is not None
    assert words in problem
