"""Multi-node groups of real processes over real TCP: forming, losing a rank, dying with rank 0."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.integration.simulator.conftest import Launch
from tests.integration.simulator.processes import LOOPBACK, Sim, free_port, url_host, wait_until

FAST_HEARTBEAT = ("--sim-heartbeat-s", "0.2", "--sim-rank-timeout-s", "1")


def rank_argv(
    host: str, dist_port: int, rank: int, *, nnodes: int = 2, tp: int = 2, timeout: int = 30
) -> tuple[str, ...]:
    return (
        "--model-path", "/models/x",
        "--served-model-name", "x",
        "--tp-size", str(tp),
        "--pp-size", "1",
        "--nnodes", str(nnodes),
        "--node-rank", str(rank),
        "--dist-init-addr", f"{url_host(host)}:{dist_port}",
        "--trust-remote-code",
        "--dist-timeout", str(timeout),
        "--sim-ttft-ms", "1",
        "--sim-tpot-ms", "1",
        *FAST_HEARTBEAT,
    )  # fmt: skip


def generation_check(leader: Sim) -> httpx.Response:
    return leader.get("/health_generate")


def wait_for_check(leader: Sim, status: int, timeout: float = 20) -> httpx.Response:
    wait_until(
        lambda: generation_check(leader).status_code == status,
        timeout,
        f"/health_generate {status}\n{leader.log()}",
    )
    return generation_check(leader)


def form_group(launch: Launch, host: str) -> tuple[Sim, Sim, int]:
    dist_port = free_port(host)
    leader = launch(*rank_argv(host, dist_port, 0), host=host, name="rank0").wait_serving()
    worker = launch(*rank_argv(host, dist_port, 1), host=host, name="rank1").wait_serving()
    wait_for_check(leader, 200)
    return leader, worker, dist_port


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_a_group_forms_then_breaks_for_good_when_rank_1_dies(launch: Launch, family: str) -> None:
    host = LOOPBACK[family]
    dist_port = free_port(host)
    leader = launch(*rank_argv(host, dist_port, 0), host=host, name="rank0").wait_serving()

    before = generation_check(leader)
    assert before.status_code == 503
    assert "waiting for rank 1" in before.json()["reason"]
    assert leader.get("/health").status_code == 200
    refused = httpx.post(f"{leader.url}/generate", json={"text": "x"}, timeout=10)
    assert refused.status_code == 503

    worker = launch(*rank_argv(host, dist_port, 1), host=host, name="rank1").wait_serving()
    wait_for_check(leader, 200)
    assert httpx.post(f"{leader.url}/generate", json={"text": "x"}, timeout=10).status_code == 200
    assert worker.get("/health").status_code == 200
    assert httpx.post(f"{worker.url}/generate", json={"text": "x"}, timeout=10).status_code == 404
    assert leader.get("/get_server_info").json()["group"]["joined_ranks"] == [0, 1]

    worker.kill()
    after = wait_for_check(leader, 503)
    assert after.json()["reason"].startswith("rank 1 lost: ")
    assert httpx.post(f"{leader.url}/generate", json={"text": "x"}, timeout=10).status_code == 503
    assert leader.get("/health").status_code == 200  # rank 0 lives on, unhealthy

    # A rank that comes back is refused: the group must be restarted as a whole.
    comeback = launch(*rank_argv(host, dist_port, 1), host=host, name="rank1-again")
    assert comeback.wait_exit() != 0
    assert "refused" in comeback.log() and "restart the whole group" in comeback.log()
    assert generation_check(leader).status_code == 503
    assert leader.running()


def test_a_worker_exits_nonzero_when_rank_0_dies(launch: Launch) -> None:
    leader, worker, _ = form_group(launch, LOOPBACK["ipv4"])
    leader.kill()
    assert worker.wait_exit(timeout=20) != 0
    exit_line = next(line for line in worker.log().splitlines() if "exiting:" in line)
    assert "rank 1: lost rank 0 at 127.0.0.1:" in exit_line


def test_a_silent_rank_is_lost_after_the_heartbeat_timeout(launch: Launch) -> None:
    leader, worker, _ = form_group(launch, LOOPBACK["ipv6"])
    worker.signal(signal.SIGSTOP)  # alive, connected, but silent
    after = wait_for_check(leader, 503)
    assert after.json()["reason"].startswith("rank 1 lost: no heartbeat for 1s")


def test_rank_0_exits_naming_the_ranks_that_never_joined(launch: Launch) -> None:
    host = LOOPBACK["ipv4"]
    dist_port = free_port(host)
    # Rank 2 starts first and keeps retrying, so it surely joins; rank 1 never comes.
    rank2 = launch(*rank_argv(host, dist_port, 2, nnodes=3, tp=3), host=host, name="rank2")
    rank2.wait_serving()
    argv = rank_argv(host, dist_port, 0, nnodes=3, tp=3, timeout=2)
    leader = launch(*argv, host=host, name="rank0")
    assert leader.wait_exit(timeout=30) != 0
    exit_line = next(line for line in leader.log().splitlines() if "exiting:" in line)
    assert "group did not form within 2s: rank 1 never joined" in exit_line
    assert "Traceback" not in leader.log()
    assert "rank 2 joined" in leader.log()
    assert rank2.wait_exit() != 0  # and rank 2 dies with its leader


def test_a_rank_of_another_shape_is_refused_and_the_group_keeps_forming(launch: Launch) -> None:
    host = LOOPBACK["ipv4"]
    dist_port = free_port(host)
    leader = launch(*rank_argv(host, dist_port, 0), host=host, name="rank0").wait_serving()
    stranger = launch(*rank_argv(host, dist_port, 1, tp=4), host=host, name="stranger")
    assert stranger.wait_exit() != 0
    assert "tp_size=4, rank 0 has tp_size=2" in stranger.log()
    assert "waiting for rank 1" in generation_check(leader).json()["reason"]
    launch(*rank_argv(host, dist_port, 1), host=host, name="rank1")
    wait_for_check(leader, 200)


def test_a_worker_gives_up_when_rank_0_never_appears(launch: Launch) -> None:
    host = LOOPBACK["ipv4"]
    worker = launch(*rank_argv(host, free_port(host), 1, timeout=1), host=host, name="rank1")
    assert worker.wait_exit() != 0
    assert "could not reach rank 0" in worker.log()
