"""The engine commands our startup program builds are ones SGLang 0.5.23 itself accepts.

For each SGLang launch plan (the runbook's seed, a single-node endpoint, and one with awkward
extra arguments) the real startup program prints its engine command (`--dry-run`) for the
leader and a worker, on IPv6 and on IPv4. SGLang's own parser (`prepare_server_args`, in
its own virtualenv) must read back the plan's values, and `--dist-init-addr` must pass SGLang's
`NetworkAddress.parse`, which is what refuses a bare IPv6 `host:port` at run time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from llm_launch.engines.plan import LaunchPlan
from tests.builders import endpoint_body, seed_body
from tests.support.sglang_parser import INSTALL_TIMEOUT_S, ParsedArgv, SglangParser
from tests.support.startup import Pod, dry_run, engine_container, plan_for

# The first test also waits for the install of SGLang's parser (minutes, once).
pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT_S + 120)

LAUNCH_SERVER = ["-m", "sglang.launch_server"]

CHAT_TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}"
AWKWARD_ENGINE_ARGS: dict[str, Any] = {
    "json-model-override-args": {"rope_scaling": {"type": "yarn", "factor": 2.0}},
    "cuda-graph-bs-decode": [1, 2, 4, 8],
    "enable-metrics": True,
    "disable-radix-cache": False,
    "mem_fraction_static": 0.85,
    "context-length": 32768,
    "file-storage-path": "/data/sglang files/two  spaces",
    "revision": "a value with spaces and 'quotes'",
}
# What SGLang must read back for each of them (its field names, its types).
AWKWARD_EXPECTED: dict[str, Any] = {
    "cuda_graph_bs_decode": [1, 2, 4, 8],
    "enable_metrics": True,
    "disable_radix_cache": False,  # `false` leaves the flag off: SGLang's default stands
    "mem_fraction_static": 0.85,
    "context_length": 32768,
    "file_storage_path": "/data/sglang files/two  spaces",
    "revision": "a value with spaces and 'quotes'",
    "quantization": "fp8",
}


def single_node_body() -> dict[str, Any]:
    return endpoint_body(
        inference_framework="sglang", gpus=2, gpu_type="nvidia-hopper-h100", num_shards=2
    )


def awkward_body() -> dict[str, Any]:
    return endpoint_body(
        inference_framework="sglang",
        endpoint_type="streaming",
        nodes_per_worker=2,
        gpus=4,
        num_shards=4,
        gpu_type="nvidia-hopper-h200",
        quantize="fp8",
        chat_template_override=CHAT_TEMPLATE,
        engine_args=AWKWARD_ENGINE_ARGS,
    )


CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "seed": seed_body,
    "single-node": single_node_body,
    "awkward-args": awkward_body,
}
# (leader pod IP, worker pod IP). Documentation/ULA ranges; a dry run sends nothing.
FAMILIES = {"ipv6": ("fdab:1::1", "fdab:1::2"), "ipv4": ("192.0.2.1", "192.0.2.2")}


@dataclass(frozen=True)
class Run:
    """One pod's startup, as SGLang reads it."""

    case: str
    family: str
    role: str
    body: dict[str, Any]  # the create request
    plan: LaunchPlan
    pod: Pod
    document: dict[str, Any]  # the startup's --dry-run output
    parsed: ParsedArgv  # SGLang's prepare_server_args of argv[3:]
    address: dict[str, Any] | None  # SGLang's NetworkAddress.parse of --dist-init-addr

    @property
    def argv(self) -> list[str]:
        argv: list[str] = self.document["argv"]
        return argv

    @property
    def leader_ip(self) -> str:
        return FAMILIES[self.family][0]

    def flag(self, name: str) -> str | None:
        return _flag(self.argv, name)


Key = tuple[str, str, str]  # (case, family, role)
RUNS: list[Key] = [
    (case, family, role)
    for case in CASES
    for family in FAMILIES
    for role in (["leader"] if case == "single-node" else ["leader", "worker"])
]
MULTI_NODE_RUNS = [key for key in RUNS if key[0] != "single-node"]


def each(keys: list[Key]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("key", keys, ids=["-".join(key) for key in keys])


def _pod(plan: LaunchPlan, family: str, role: str) -> Pod:
    leader_ip, worker_ip = FAMILIES[family]
    if plan.worker is None:
        return Pod(ip=leader_ip)  # a Deployment's pod: no LWS variables
    # LWS_LEADER_ADDRESS is the leader's IP here: a name would need /etc/hosts entries on
    # this machine (tests/multihost/ covers names, in network namespaces).
    rank = 0 if role == "leader" else 1
    return Pod(
        ip=worker_ip if rank else leader_ip,
        leader_address=leader_ip,
        worker_index=rank,
        group_size=plan.nodes,
    )


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


@pytest.fixture(scope="module")
def runs(sglang: SglangParser) -> dict[Key, Run]:
    """Every dry run, parsed by SGLang in one call (importing its parser takes ~2 s)."""
    started = {}
    for case, family, role in RUNS:
        body = CASES[case]()
        plan = plan_for(body)
        pod = _pod(plan, family, role)
        started[(case, family, role)] = (
            body,
            plan,
            pod,
            dry_run(engine_container(plan, role), pod),
        )
    argvs = []
    for *_, document in started.values():
        assert document["argv"][1:3] == LAUNCH_SERVER, document["argv"]
        argvs.append(document["argv"][3:])
    dist_init = {key: _flag(d["argv"], "--dist-init-addr") for key, (*_, d) in started.items()}
    addresses = sorted({a for a in dist_init.values() if a})
    reading = sglang.parse(argvs, addresses)
    by_address = dict(zip(addresses, reading.addresses, strict=True))
    return {
        key: Run(*key, *started[key], parsed, by_address.get(dist_init[key] or ""))
        for key, parsed in zip(started, reading.argvs, strict=True)
    }


@each(RUNS)
def test_sglang_reads_back_the_plans_group_ports_and_model(runs: dict[Key, Run], key: Key) -> None:
    run = runs[key]
    p = run.parsed
    multi = run.plan.worker is not None
    assert p.field("model_path") == run.flag("--model-path")
    assert p.field("served_model_name") == run.plan.served_model_name
    assert p.field("tp_size") == run.plan.tensor_parallel_size
    assert p.field("pp_size") == run.plan.pipeline_parallel_size
    assert p.field("host") == ("::" if run.family == "ipv6" else "0.0.0.0")
    assert p.field("port") == run.plan.ports.engine
    assert p.field("nnodes") == run.plan.nodes
    assert p.field("node_rank") == (0 if run.role == "leader" else 1)
    if multi:
        leader = f"[{run.leader_ip}]" if run.family == "ipv6" else run.leader_ip
        assert p.field("dist_init_addr") == f"{leader}:{run.plan.ports.rendezvous}"
    else:
        assert p.field("dist_init_addr") is None


def test_the_seed_is_one_server_over_sixteen_gpus_on_two_nodes(runs: dict[Key, Run]) -> None:
    leader, worker = runs[("seed", "ipv6", "leader")], runs[("seed", "ipv6", "worker")]
    for run in (leader, worker):
        assert (run.parsed.field("tp_size"), run.parsed.field("nnodes")) == (16, 2)
        # No download in a dry run: the model path names the checkpoint it would fetch.
        assert run.body["metadata"]["_llm"]["checkpoint_path"] in run.parsed.field("model_path")
    assert (leader.parsed.field("node_rank"), worker.parsed.field("node_rank")) == (0, 1)
    assert leader.plan.ports.engine != leader.plan.ports.rendezvous


@each(MULTI_NODE_RUNS)
def test_the_dist_init_address_passes_sglangs_network_address_parser(
    runs: dict[Key, Run], key: Key
) -> None:
    run = runs[key]
    assert run.address == {
        "host": run.leader_ip,
        "port": run.plan.ports.rendezvous,
        "is_ipv6": run.family == "ipv6",
    }


@each(RUNS)
def test_sglang_host_ip_is_the_leaders_ip_on_the_leader_and_the_pods_own_on_a_worker(
    runs: dict[Key, Run], key: Key
) -> None:
    run = runs[key]
    assert run.document["env"]["SGLANG_HOST_IP"] == run.pod.ip
    assert run.document["own_ip"] == run.pod.ip
    if run.plan.worker is not None:
        assert run.document["leader_ip"] == run.leader_ip


@each([key for key in RUNS if key[0] == "awkward-args"])
def test_awkward_extra_engine_args_reach_sglang_intact(runs: dict[Key, Run], key: Key) -> None:
    p = runs[key].parsed
    for name, value in AWKWARD_EXPECTED.items():
        assert p.field(name) == value, name
    override = p.field("json_model_override_args")
    assert json.loads(override) == AWKWARD_ENGINE_ARGS["json-model-override-args"]
    # The chat template text travels to the startup program, which writes it to a file
    # (named by its hash) and hands SGLang the path, since --chat-template takes a file.
    digest = hashlib.sha256(CHAT_TEMPLATE.encode()).hexdigest()[:16]
    assert p.field("chat_template") == f"/models/chat-template-{digest}.jinja"


def test_a_bare_ipv6_dist_init_address_fails_sglangs_network_address_parser(
    sglang: SglangParser,
) -> None:
    reading = sglang.parse(
        [["--model-path", "m", "--dist-init-addr", "fdab:1::1:5002"]],
        ["fdab:1::1:5002", "[fdab:1::1]:5002"],
    )
    bare, bracketed = reading.addresses
    assert "Bare IPv6 address without brackets is ambiguous" in bare["error"]
    assert bracketed == {"host": "fdab:1::1", "port": 5002, "is_ipv6": True}
    # prepare_server_args keeps --dist-init-addr as a plain string and accepts the bare form:
    # only NetworkAddress.parse (at launch) refuses it, which is why both are checked above.
    (parsed,) = reading.argvs
    assert parsed.field("dist_init_addr") == "fdab:1::1:5002"


def test_sglangs_parser_refuses_an_unknown_or_ambiguous_flag(sglang: SglangParser) -> None:
    unknown, ambiguous = sglang.parse(
        [["--model-path", "m", "--no-such-flag"], ["--model-path", "m", "--cuda-graph-bs", "1"]]
    ).argvs
    assert unknown.args is None and unknown.error and "unrecognized arguments" in unknown.error
    assert ambiguous.args is None and ambiguous.error and "ambiguous option" in ambiguous.error
