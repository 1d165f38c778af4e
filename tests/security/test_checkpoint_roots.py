"""Checkpoint roots (issue 8 item 6): local checkpoints only under configured directories,
checked at the API from the text alone, and again in the pod on the resolved path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import httpx
import pytest

from llm_launch.domain.checkpoints import checkpoint_root_problem, parse_checkpoint_roots
from llm_launch.runtime.startup.weights import WeightsError, fetch_checkpoint
from tests.builders import endpoint_body
from tests.support.server import RunningServer

ENDPOINTS = "/v1/llm/model-endpoints"
ROOTS = parse_checkpoint_roots("/models,/mnt/shared/weights")


@pytest.mark.parametrize(
    "path",
    [
        "/models/llama",
        "file:///models/llama",
        "/models",
        "/models/./llama//8b",
        "/mnt/shared/weights/x",
        "s3://bucket/llama",
        "hf://meta-llama/Llama-3-8B",
    ],
)
def test_paths_under_a_root_and_remote_checkpoints_are_allowed(path: str) -> None:
    assert checkpoint_root_problem(path, ROOTS) is None


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/models2/llama", "under a checkpoint root"),
        ("/mnt/shared", "under a checkpoint root"),
        ("/models/../etc/shadow", "'..'"),
        ("file:///models/llama/../../root", "'..'"),
        ("file://models/llama", "absolute path"),
        ("/etc", "under a checkpoint root"),
    ],
)
def test_paths_outside_the_roots_or_escaping_them_are_refused(path: str, words: str) -> None:
    problem = checkpoint_root_problem(path, ROOTS)
    assert problem is not None and problem.field == "checkpoint_path"
    assert words in problem.message


def test_a_root_setting_that_allows_everything_or_is_relative_is_refused() -> None:
    for bad in ("/", "models", "/models/../"):
        with pytest.raises(ValueError, match="checkpoint root"):
            parse_checkpoint_roots(bad)


@pytest.fixture(scope="module")
def roots_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("roots")
    env = {"LLM_LAUNCH_BACKEND": "none", "LLM_LAUNCH_CHECKPOINT_ROOTS": "/mnt/models"}
    running = RunningServer(f"sqlite:///{data_dir / 'db.sqlite'}", data_dir, env).start()
    yield running
    running.stop()


def test_an_absolute_checkpoint_path_under_a_root_is_accepted(roots_server: RunningServer) -> None:
    with httpx.Client(base_url=roots_server.url, timeout=30) as local:
        body = endpoint_body(checkpoint_path="/mnt/models/llama")
        response = local.post(ENDPOINTS, json=body)
        assert response.status_code == 200, response.text
        assert local.get(f"{ENDPOINTS}/{body['name']}").json()["checkpoint_path"] == (
            "/mnt/models/llama"
        )


def test_host_paths_outside_the_roots_all_get_one_answer_that_describes_nothing(
    roots_server: RunningServer,
) -> None:
    """Reproduced before the fix: these gave different status texts, and /etc was accepted."""
    with httpx.Client(base_url=roots_server.url, timeout=30) as local:
        answers = set()
        for path in ("/etc/shadow", "/nonexistent/x", "/etc", "/root", "file:///mnt/models2"):
            response = local.post(ENDPOINTS, json=endpoint_body(checkpoint_path=path))
            assert response.status_code == 422, response.text
            assert response.json()["errors"][0]["field"] == "checkpoint_path"
            answers.add(response.json()["errors"][0]["message"])
        assert len(answers) == 1
        (message,) = answers
        assert "/mnt/models" in message and "exist" not in message and "director" not in message
        stored = {e["checkpoint_path"] for e in local.get(ENDPOINTS).json()["model_endpoints"]}
        assert stored <= {"/mnt/models/llama", "s3://bucket/llama"}


def test_an_update_cannot_move_a_checkpoint_outside_the_roots(roots_server: RunningServer) -> None:
    with httpx.Client(base_url=roots_server.url, timeout=30) as local:
        body = endpoint_body(checkpoint_path="s3://bucket/llama")
        assert local.post(ENDPOINTS, json=body).status_code == 200
        path = f"{ENDPOINTS}/{body['name']}"
        response = local.put(path, json={"checkpoint_path": "/etc"})
        assert response.status_code == 422
        assert local.get(path).json()["checkpoint_path"] == "s3://bucket/llama"


def test_without_roots_a_local_checkpoint_is_refused_naming_the_setting(tmp_path: Path) -> None:
    env = {"LLM_LAUNCH_BACKEND": "none"}
    running = RunningServer(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, env).start()
    try:
        with httpx.Client(base_url=running.url, timeout=30) as local:
            response = local.post(ENDPOINTS, json=endpoint_body(checkpoint_path="/mnt/models/x"))
            assert response.status_code == 422
            assert "LLM_LAUNCH_CHECKPOINT_ROOTS" in response.json()["detail"]
            assert local.post(ENDPOINTS, json=endpoint_body(checkpoint_path="s3://b/x")).is_success
    finally:
        running.stop()


def test_the_in_pod_fetch_refuses_a_link_inside_a_root_that_leads_outside(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (outside / "secret-dir").mkdir(parents=True)
    (outside / "secret-dir" / "weights.bin").write_bytes(b"x")
    root.mkdir()
    (root / "escape").symlink_to(outside / "secret-dir")
    roots = (PurePosixPath(str(root)),)
    answers = set()
    for uri in (str(root / "escape"), f"file://{outside}/secret-dir", "/nonexistent/x"):
        with pytest.raises(WeightsError) as refused:
            fetch_checkpoint(uri, tmp_path / "w", log=lambda _: None, checkpoint_roots=roots)
        answers.add(str(refused.value).removeprefix(f"cannot fetch checkpoint {uri}"))
    assert answers == {": it is not under the checkpoint roots (LLM_LAUNCH_CHECKPOINT_ROOTS)"}


def test_the_in_pod_fetch_uses_a_directory_inside_a_root_at_its_real_path(tmp_path: Path) -> None:
    model = tmp_path / "root" / "models" / "llama"
    model.mkdir(parents=True)
    (model / "weights.bin").write_bytes(b"x")
    (tmp_path / "root" / "latest").symlink_to(model)
    roots = (PurePosixPath(str(tmp_path / "root")),)
    link = str(tmp_path / "root" / "latest")
    found = fetch_checkpoint(link, tmp_path / "w", log=lambda _: None, checkpoint_roots=roots)
    assert found == Path(os.path.realpath(model))
