"""When to apply an endpoint again after the API server refused or failed an apply.

Caller: `backend.KubernetesBackend` (`apply` records each outcome here and asks `due`
before trying again; `observe` reads `failure` to say what went wrong). Pure bookkeeping:
the clock and the random source are injected, no I/O.

Two kinds of failure, as the Kubernetes API conventions describe them
(https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#http-status-codes):
- transient: 5xx, 429 TooManyRequests (whose `Retry-After` header says when to come
  back), timeouts and connection errors, and an object of ours still being deleted. The
  same request may succeed later, so it is retried with per-endpoint, jittered, capped
  exponential backoff (as client-go's rate limiters do: `ItemExponentialFailureRateLimiter`
  doubles a per-item delay up to a cap). Status keeps what was last observed.
- permanent: any other 4xx, 422 Invalid above all. The same manifest would be refused
  again, so it is not retried until the endpoint's generation changes, except once every
  `permanent_s` (an operator may have fixed RBAC or installed a CRD meanwhile).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from llm_launch.backends.kubernetes.errors import KubernetesUnavailable, ObjectBeingDeleted
from llm_launch.domain.errors import LaunchError


@dataclass(frozen=True)
class RetryTiming:
    initial_s: float = 1.0  # the first retry of a transient failure, before jitter
    max_s: float = 300.0  # the cap of the transient backoff (and of a Retry-After honoured)
    permanent_s: float = 1800.0  # a refused generation is tried again this rarely
    jitter: float = 0.2  # each delay is multiplied by a uniform factor in 1 +- jitter


@dataclass(frozen=True)
class ApplyFailure:
    """The last failed apply of one endpoint."""

    generation: int
    message: str
    transient: bool
    attempts: int  # failed attempts in a row for this generation
    retry_at: float  # clock time before which `due` says no


def is_transient(exc: BaseException) -> bool:
    """Whether the same apply may succeed later without a change to the spec."""
    if isinstance(exc, TimeoutError | KubernetesUnavailable | ObjectBeingDeleted):
        return True
    return not isinstance(exc, LaunchError)  # unknown failures are retried, with backoff


class ApplyLedger:
    def __init__(
        self,
        timing: RetryTiming | None = None,
        clock: Callable[[], float] = time.monotonic,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._timing = timing or RetryTiming()
        self._clock = clock
        self._uniform = uniform
        self._failures: dict[str, ApplyFailure] = {}

    def failed(self, endpoint_id: str, generation: int, exc: BaseException) -> ApplyFailure:
        previous = self._failures.get(endpoint_id)
        attempts = 1
        if previous is not None and previous.generation == generation:
            attempts = previous.attempts + 1
        transient = is_transient(exc)
        message = exc.message if isinstance(exc, LaunchError) else _describe(exc)
        failure = ApplyFailure(
            generation, message, transient, attempts, self._clock() + self._delay(exc, attempts)
        )
        self._failures[endpoint_id] = failure
        return failure

    def succeeded(self, endpoint_id: str) -> None:
        self._failures.pop(endpoint_id, None)

    def failure(self, endpoint_id: str, generation: int) -> ApplyFailure | None:
        """The last failure of this generation's apply, if the last attempt failed."""
        failure = self._failures.get(endpoint_id)
        return failure if failure is not None and failure.generation == generation else None

    def due(self, endpoint_id: str, generation: int) -> bool:
        """Whether an apply of `generation` may be attempted now (a new generation always)."""
        failure = self.failure(endpoint_id, generation)
        return failure is None or self._clock() >= failure.retry_at

    def forget(self, endpoint_id: str) -> None:
        self._failures.pop(endpoint_id, None)

    def _delay(self, exc: BaseException, attempts: int) -> float:
        timing = self._timing
        if not is_transient(exc):
            return timing.permanent_s
        delay = min(timing.max_s, timing.initial_s * 2.0 ** min(attempts - 1, 30))
        delay *= self._uniform(1 - timing.jitter, 1 + timing.jitter)
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after is not None:  # the server said when to come back: not sooner
            delay = max(delay, min(float(retry_after), timing.max_s))
        return delay


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the Kubernetes API did not answer in time"
    return f"{type(exc).__name__}: {exc}"
