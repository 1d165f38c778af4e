"""The weights volume of rendered pods: a per-pod emptyDir, a node-local hostPath cache, or a
ReadWriteMany claim, one directory per checkpoint; and the setting that chooses it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from llm_launch.api.app import make_backend
from llm_launch.backends.kubernetes.backend import KubernetesBackend
from llm_launch.backends.kubernetes.config import KubernetesConfigError, WeightsVolume
from llm_launch.cli import app
from llm_launch.domain.weights_cache import cache_directory_name
from llm_launch.runtime.startup.weights import destination_name
from llm_launch.settings import Settings
from tests.builders import EXAMPLES, seed_body
from tests.unit.kubernetes import Manifest, by_kind, rendered, single_node_vllm
from tests.unit.kubernetes.test_render_schemas import K8S_VERSIONS, crd_errors, kubernetes_errors

SEED_CHECKPOINT = "s3://scale-ml/models/hf-synced-weights/deepseek-ai/DeepSeek-R1"
OTHER_CHECKPOINT = "s3://scale-ml/models/hf-synced-weights/deepseek-ai/DeepSeek-V3"
HOST_CACHE = WeightsVolume.parse("hostPath:/var/cache/llm-launch")
CLAIM_CACHE = WeightsVolume.parse("pvc:model-cache")


def pod_specs(objects: list[Manifest]) -> list[Manifest]:
    """Every pod template's spec: the leader's and the worker's, or the Deployment's."""
    kinds = by_kind(objects)
    if "LeaderWorkerSet" in kinds:
        templates = kinds["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"]
        return [templates["leaderTemplate"]["spec"], templates["workerTemplate"]["spec"]]
    return [kinds["Deployment"]["spec"]["template"]["spec"]]


def weights_volume(spec: Manifest) -> Manifest:
    (volume,) = [v for v in spec["volumes"] if v["name"] == "weights"]
    return volume


def weights_mount(spec: Manifest) -> Manifest:
    (engine,) = [c for c in spec["containers"] if c["name"] == "engine"]
    (mount,) = [m for m in engine["volumeMounts"] if m["name"] == "weights"]
    return mount


def seed_pods(weights: WeightsVolume, **body: Any) -> list[Manifest]:
    return pod_specs(rendered(seed_body(**body), weights_volume=weights))


def with_checkpoint(path: str | None) -> dict[str, Any]:
    """The seed's metadata, naming another checkpoint (or none)."""
    metadata = seed_body()["metadata"]
    metadata["_llm"] = {**metadata["_llm"], "checkpoint_path": path}
    return {"metadata": metadata}


class TestTheDefault:
    def test_without_a_setting_each_pod_downloads_into_its_own_emptydir(self) -> None:
        for spec in pod_specs(rendered(seed_body())):
            assert weights_volume(spec) == {"name": "weights", "emptyDir": {"sizeLimit": "900Gi"}}
            assert weights_mount(spec) == {"name": "weights", "mountPath": "/models"}


class TestANodeLocalCache:
    def test_each_checkpoint_gets_its_own_directory_of_the_cache_created_if_missing(self) -> None:
        for spec in seed_pods(HOST_CACHE):
            assert weights_volume(spec) == {
                "name": "weights",
                "hostPath": {
                    "path": f"/var/cache/llm-launch/{cache_directory_name(SEED_CHECKPOINT)}",
                    "type": "DirectoryOrCreate",
                },
            }
            # The startup program fetches into the mounted directory as usual.
            assert weights_mount(spec) == {"name": "weights", "mountPath": "/models"}

    def test_two_endpoints_of_one_checkpoint_share_the_directory(self) -> None:
        first = seed_pods(HOST_CACHE, name="deepseek-a")
        second = seed_pods(HOST_CACHE, name="deepseek-b")
        assert weights_volume(first[0]) == weights_volume(second[0])

    def test_different_checkpoints_never_share_a_directory(self) -> None:
        seed = weights_volume(seed_pods(HOST_CACHE)[0])
        other = weights_volume(seed_pods(HOST_CACHE, **with_checkpoint(OTHER_CHECKPOINT))[0])
        assert seed["hostPath"]["path"] != other["hostPath"]["path"]

    def test_the_directory_is_named_as_the_startup_program_names_its_copy(self) -> None:
        # The copy lands at /models/<name> inside /var/cache/llm-launch/<name>: a person
        # looking at the node sees which checkpoint each directory holds.
        path = weights_volume(seed_pods(HOST_CACHE)[0])["hostPath"]["path"]
        assert path.rsplit("/", 1)[1] == destination_name(SEED_CHECKPOINT)
        assert "DeepSeek-R1" in path

    @pytest.mark.parametrize("checkpoint", ["file:///models/deepseek-r1", "/models/r1", None])
    def test_an_endpoint_that_downloads_nothing_keeps_an_emptydir(
        self, checkpoint: str | None
    ) -> None:
        spec = seed_pods(HOST_CACHE, **with_checkpoint(checkpoint))[0]
        assert "emptyDir" in weights_volume(spec)
        assert "hostPath" not in weights_volume(spec)


class TestAReadWriteManyClaim:
    def test_each_checkpoint_is_a_subdirectory_of_the_claim(self) -> None:
        for spec in seed_pods(CLAIM_CACHE):
            assert weights_volume(spec) == {
                "name": "weights",
                "persistentVolumeClaim": {"claimName": "model-cache"},
            }
            assert weights_mount(spec) == {
                "name": "weights",
                "mountPath": "/models",
                "subPath": cache_directory_name(SEED_CHECKPOINT),
            }

    def test_different_checkpoints_get_different_subdirectories(self) -> None:
        seed = weights_mount(seed_pods(CLAIM_CACHE)[0])
        other = weights_mount(seed_pods(CLAIM_CACHE, **with_checkpoint(OTHER_CHECKPOINT))[0])
        assert seed["subPath"] != other["subPath"]

    def test_a_single_node_deployment_uses_the_claim_too(self) -> None:
        body = single_node_vllm(metadata={"_llm": {"checkpoint_path": SEED_CHECKPOINT}})
        (spec,) = pod_specs(rendered(body, weights_volume=CLAIM_CACHE))
        assert weights_volume(spec)["persistentVolumeClaim"] == {"claimName": "model-cache"}
        assert weights_mount(spec)["subPath"] == cache_directory_name(SEED_CHECKPOINT)


class TestTheObjectsStayValid:
    @pytest.mark.parametrize("version", K8S_VERSIONS)
    @pytest.mark.parametrize("weights", [HOST_CACHE, CLAIM_CACHE], ids=str)
    def test_under_the_kubernetes_and_leaderworkerset_schemas(
        self, weights: WeightsVolume, version: str
    ) -> None:
        for obj in rendered(seed_body(), weights_volume=weights):
            assert kubernetes_errors(obj, version) == []
            if obj["kind"] == "LeaderWorkerSet":
                assert crd_errors(obj) == []


class TestTheSetting:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("emptyDir", WeightsVolume()),
            ("emptydir", WeightsVolume()),
            ("hostPath:/var/cache/llm-launch", WeightsVolume("hostPath", "/var/cache/llm-launch")),
            (
                "hostPath:/var/cache//llm-launch/",
                WeightsVolume("hostPath", "/var/cache/llm-launch"),
            ),
            ("pvc:model-cache", WeightsVolume("pvc", claim_name="model-cache")),
        ],
    )
    def test_the_three_forms_are_read(self, text: str, expected: WeightsVolume) -> None:
        assert WeightsVolume.parse(text) == expected

    @pytest.mark.parametrize("text", ["emptyDir", "hostPath:/var/cache/x", "pvc:cache"])
    def test_a_parsed_setting_prints_as_it_is_written(self, text: str) -> None:
        assert str(WeightsVolume.parse(text)) == text

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("nfs:/exports", "use emptyDir, hostPath:/ABSOLUTE/DIR or pvc:CLAIM"),
            ("hostPath", "use emptyDir, hostPath:/ABSOLUTE/DIR or pvc:CLAIM"),
            ("emptyDir:/x", "use emptyDir, hostPath:/ABSOLUTE/DIR or pvc:CLAIM"),
            ("hostPath:", "hostPath needs the cache's directory"),
            ("hostPath:var/cache", "must be an absolute path"),
            ("hostPath:/var/../etc", "may not contain '..'"),
            ("hostPath:/", "would put checkpoints at the root of every node"),
            ("pvc:", "pvc needs the name of an existing ReadWriteMany claim"),
            ("pvc:Model_Cache", "must be a DNS-1123 subdomain"),
        ],
    )
    def test_a_bad_setting_is_refused_with_what_to_write(self, text: str, message: str) -> None:
        with pytest.raises(KubernetesConfigError, match="weights volume") as caught:
            WeightsVolume.parse(text)
        assert message in str(caught.value)

    def test_a_directory_given_directly_must_be_normalized(self) -> None:
        with pytest.raises(KubernetesConfigError, match="as '/var/cache'"):
            WeightsVolume("hostPath", host_path="/var//cache")


class TestWhereTheSettingComesFrom:
    def test_render_takes_a_weights_volume_option(self) -> None:
        seed = str(EXAMPLES / "deepseek-r1-multinode.json")
        args = ["render", "-f", seed, "--weights-volume", "pvc:model-cache"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        lws = next(o for o in yaml.safe_load_all(result.stdout) if o["kind"] == "LeaderWorkerSet")
        leader = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
        assert weights_volume(leader)["persistentVolumeClaim"] == {"claimName": "model-cache"}

    def test_render_refuses_a_bad_weights_volume_with_the_forms_it_takes(
        self, tmp_path: Path
    ) -> None:
        body = tmp_path / "body.json"
        body.write_text(json.dumps(seed_body()))
        result = CliRunner().invoke(app, ["render", "-f", str(body), "--weights-volume", "nfs"])
        assert result.exit_code == 1
        assert "use emptyDir, hostPath:/ABSOLUTE/DIR or pvc:CLAIM" in result.output

    @pytest.mark.parametrize("by_env", [False, True], ids=["option", "environment"])
    def test_serve_refuses_a_bad_weights_volume_before_it_starts(
        self, by_env: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("LLM_LAUNCH_API_KEYS", raising=False)
        args = ["serve", "--backend", "kubernetes", "--data-dir", str(tmp_path)]
        if by_env:
            monkeypatch.setenv("LLM_LAUNCH_KUBERNETES_WEIGHTS_VOLUME", "hostPath:relative")
        else:
            args += ["--kubernetes-weights-volume", "hostPath:relative"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1
        assert "--kubernetes-weights-volume" in result.output
        assert "must be an absolute path" in result.output

    def test_the_server_setting_reaches_the_kubernetes_backend(self, tmp_path: Path) -> None:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
            backend="kubernetes",
            kubernetes_weights_volume="hostPath:/var/cache/llm-launch",
        )
        backend = make_backend(settings)
        assert isinstance(backend, KubernetesBackend)
        assert backend.config.weights_volume == HOST_CACHE
