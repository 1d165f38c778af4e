"""Backoff of failed applies: `backends/kubernetes/retry.py` and the error translation it
reads (`errors.from_status`), no HTTP."""

from __future__ import annotations

from llm_launch.backends.kubernetes.errors import (
    KubernetesUnavailable,
    ObjectBeingDeleted,
    ObjectInvalid,
    from_status,
)
from llm_launch.backends.kubernetes.retry import ApplyLedger, RetryTiming
from llm_launch.domain.errors import FieldError

TIMING = RetryTiming(initial_s=1.0, max_s=60.0, permanent_s=1800.0, jitter=0.2)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ledger(clock: Clock, factor: float = 1.0) -> ApplyLedger:
    return ApplyLedger(TIMING, clock, lambda low, high: factor)


def test_transient_failures_double_the_delay_up_to_the_cap() -> None:
    clock = Clock()
    retries = ledger(clock)
    delays = []
    for _ in range(9):
        failure = retries.failed("ep", 1, KubernetesUnavailable("503"))
        delays.append(failure.retry_at - clock.now)
        assert not retries.due("ep", 1)
        clock.now = failure.retry_at
        assert retries.due("ep", 1)
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_the_jitter_stays_within_its_bounds() -> None:
    clock = Clock()
    low = ledger(clock, 0.8).failed("ep", 1, KubernetesUnavailable("503"))
    high = ledger(clock, 1.2).failed("ep", 1, KubernetesUnavailable("503"))
    assert (low.retry_at, high.retry_at) == (0.8, 1.2)


def test_a_retry_after_is_honoured_and_capped() -> None:
    clock = Clock()
    failure = ledger(clock).failed("ep", 1, KubernetesUnavailable("429", retry_after_s=30))
    assert failure.retry_at == 30
    capped = ledger(clock).failed("ep", 1, KubernetesUnavailable("429", retry_after_s=9999))
    assert capped.retry_at == TIMING.max_s


def test_a_permanent_failure_waits_long_but_a_new_generation_is_due_at_once() -> None:
    clock = Clock()
    retries = ledger(clock)
    invalid = ObjectInvalid([FieldError("spec.replicas", "must be >= 0")])
    failure = retries.failed("ep", 1, invalid)
    assert not failure.transient and failure.retry_at == TIMING.permanent_s
    assert "spec.replicas: must be >= 0" in failure.message
    assert not retries.due("ep", 1)
    assert retries.due("ep", 2) and retries.due("other", 1)


def test_timeouts_and_objects_being_deleted_are_transient() -> None:
    clock = Clock()
    assert ledger(clock).failed("ep", 1, TimeoutError()).transient
    assert ledger(clock).failed("ep", 1, ObjectBeingDeleted("being deleted")).transient


def test_from_status_reads_retry_after_from_the_header_or_the_status_details() -> None:
    header = from_status(429, {"message": "slow down"}, "apply x", "7")
    assert isinstance(header, KubernetesUnavailable) and header.retry_after_s == 7
    body = {"message": "slow down", "details": {"retryAfterSeconds": 3}}
    details = from_status(429, body, "apply x")
    assert isinstance(details, KubernetesUnavailable) and details.retry_after_s == 3
    neither = from_status(503, {"message": "down"}, "apply x")
    assert isinstance(neither, KubernetesUnavailable) and neither.retry_after_s is None
