"""Prometheus metrics with SGLang's names (`sglang:*`), in a registry of their own.

Built by `simulator.app.build_app`, updated by `simulator.engine`, exposed at `GET /metrics`.
Each app gets its own registry, so several apps can live in one test process.
`llm_launch_simulator_info` (always 1) says the numbers come from a simulated engine.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        reg = self.registry
        self._running = Gauge(
            "sglang:num_running_reqs", "Requests being generated", labels, registry=reg
        )
        self._queued = Gauge(
            "sglang:num_queue_reqs", "Requests waiting (always 0 here)", labels, registry=reg
        )
        self._requests = Counter(
            "sglang:num_requests", "Requests finished or aborted", labels, registry=reg
        )
        self._prompt_tokens = Counter(
            "sglang:prompt_tokens", "Prompt tokens processed", labels, registry=reg
        )
        self._generation_tokens = Counter(
            "sglang:generation_tokens", "Tokens generated", labels, registry=reg
        )
        self._ttft = Histogram(
            "sglang:time_to_first_token_seconds",
            "Time to first token",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self._e2e = Histogram(
            "sglang:e2e_request_latency_seconds",
            "Request latency, end to end",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        info = Gauge(
            "llm_launch_simulator_info", "1: this engine is simulated", labels, registry=reg
        )
        info.labels(model_name).set(1)
        self._model = model_name
        self._queued.labels(model_name).set(0)

    def request_started(self, prompt_tokens: int) -> None:
        self._running.labels(self._model).inc()
        self._prompt_tokens.labels(self._model).inc(prompt_tokens)

    def token_generated(self, first_token_after_s: float | None) -> None:
        self._generation_tokens.labels(self._model).inc()
        if first_token_after_s is not None:
            self._ttft.labels(self._model).observe(first_token_after_s)

    def request_ended(self, latency_s: float) -> None:
        self._running.labels(self._model).dec()
        self._requests.labels(self._model).inc()
        self._e2e.labels(self._model).observe(latency_s)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
