"""A bounded schemathesis run over every operation of /openapi.json (issue 8), against a
real `llm-launch serve` process with two owners' keys and the store-only backend.

With a key: no generated request, valid or not (positive and negative generation), ever
gets a 5xx, and every 4xx says `detail` and `errors`. Without a key (or with a wrong
one): every protected operation answers 401 whatever was generated for it.

Bounded and deterministic: a fixed number of examples per operation and mode, derandomized,
no shrinking, no deadline, no example database; every failure is collected (with the
request that caused it) before the test fails, so one run lists them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core import NotSet

from tests.conftest import ALICE_KEY, API_KEYS_ENV
from tests.support.databases import fresh_postgres_database
from tests.support.server import RunningServer

EXAMPLES_PER_OPERATION = 20  # per operation and generation mode
OPEN_PATHS = {"/healthz", "/readyz"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp(f"schemathesis-{request.param}")
    if request.param == "sqlite":
        yield from _serve(f"sqlite:///{data_dir / 'db.sqlite'}", data_dir)
    else:
        with fresh_postgres_database() as url:
            yield from _serve(url, data_dir)


def _serve(url: str, data_dir: Path) -> Iterator[RunningServer]:
    running = RunningServer(url, data_dir, env=API_KEYS_ENV).start()
    try:
        yield running
    finally:
        running.stop()


def load_schema(server: RunningServer) -> Any:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    schema.config.generation.update(
        max_examples=EXAMPLES_PER_OPERATION,
        deterministic=True,
        no_shrink=True,
        with_security_parameters=False,  # credentials are ours to send, or not
    )
    return schema


Check = Callable[[Any, requests.Response], str | None]


def run_every_operation(server: RunningServer, headers: dict[str, str], check: Check) -> list[str]:
    """Send every generated case of every operation; the problems `check` found, each with
    the request that caused it."""
    problems: list[str] = []
    operations = [result.ok() for result in load_schema(server).get_all_operations()]
    document = httpx.get(f"{server.url}/openapi.json").json()
    declared = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert {(op.method.upper(), op.path) for op in operations} == declared, "not every operation"
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            problems += fuzz(operation, mode, lambda case: check(case, send(server, case, headers)))
    return problems


def send(server: RunningServer, case: Any, headers: dict[str, str]) -> requests.Response:
    response: requests.Response = case.call(base_url=server.url, headers=headers, timeout=30)
    return response


def fuzz(operation: Any, mode: GenerationMode, probe: Callable[[Any], str | None]) -> list[str]:
    """Run `probe` on the generated cases of one operation in one mode; what it found."""
    problems: list[str] = []

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def probe_one(case: Any) -> None:
        if (problem := probe(case)) is not None:
            problems.append(f"{operation.label} [{mode.value}]: {problem}\n  {_repro(case)}")

    try:
        probe_one()
    except Unsatisfiable:
        # Negative mode has nothing to break in an operation without parameters or body
        # (GET /healthz); positive mode always has its one valid request.
        assert mode is GenerationMode.NEGATIVE, operation.label
    return problems


def _repro(case: Any) -> str:
    body = None if isinstance(case.body, NotSet) else case.body
    return f"{case.method} {case.formatted_path} query={case.query} body={body!r:.300}"


def no_server_error_and_the_error_shape(case: Any, response: requests.Response) -> str | None:
    if response.status_code >= 500:
        return f"{response.status_code}: {response.text[:300]}"
    if 400 <= response.status_code < 500:
        try:
            body = response.json()
        except ValueError:
            return f"{response.status_code} without a JSON body: {response.text[:200]}"
        if not isinstance(body.get("detail"), str) or not isinstance(body.get("errors"), list):
            return f"{response.status_code} without detail and errors: {response.text[:300]}"
    return None


def unauthenticated(case: Any, response: requests.Response) -> str | None:
    if case.path in OPEN_PATHS:
        return None if response.status_code < 500 else f"{response.status_code} on an open path"
    if response.status_code != 401:
        return f"{response.status_code} instead of 401: {response.text[:200]}"
    return None


def test_no_generated_request_with_a_key_gets_a_server_error(server: RunningServer) -> None:
    problems = run_every_operation(
        server, {"x-api-key": ALICE_KEY}, no_server_error_and_the_error_shape
    )
    assert not problems, "\n".join(problems)


# Authentication does not touch the database: SQLite is enough.
@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "headers", [{}, {"x-api-key": "not-a-real-key-000000000"}], ids=["no key", "wrong key"]
)
def test_every_protected_operation_answers_401_without_a_valid_key(
    server: RunningServer, headers: dict[str, str]
) -> None:
    problems = run_every_operation(server, headers, unauthenticated)
    assert not problems, "\n".join(problems)
