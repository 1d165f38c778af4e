"""The `/scale` subresource of Deployments and LeaderWorkerSets (autoscaling/v1 Scale, as
the HPA controller reads and writes it), mixed into `FakeKubeApi`. For a LeaderWorkerSet
the paths come from its CRD's `subresources.scale` (specReplicasPath, statusReplicasPath)."""

from __future__ import annotations

import copy
from typing import Any

from tests.fakes.kube import writes
from tests.fakes.kube.http import HttpError, Request, merge_patch, status
from tests.fakes.kube.schemas import crd_scale_paths

Object = dict[str, Any]


class ScaleRequests:
    def _existing(self, plural: str, ns: str, name: str) -> Object:
        raise NotImplementedError

    def _write(self, ns: str, name: str, request: Request, *, sub: str = "") -> writes.Write:
        raise NotImplementedError

    def _store(self, plural: str, live: Object | None, new: Object) -> Object:
        raise NotImplementedError

    def _scale(self, plural: str, ns: str, name: str, replicas: int, manager: str) -> Object:
        live = self._existing(plural, ns, name)
        new = copy.deepcopy(live)
        new.setdefault("spec", {})["replicas"] = replicas
        write = writes.Write(plural, ns, name, manager, subresource="scale")
        return self._store(plural, live, writes.replace(write, live, new, keep_status=False))

    def _scale_request(self, method: str, ns: str, name: str, request: Request) -> Object:
        """autoscaling/v1 Scale of a Deployment or (by the CRD's scale subresource paths) a
        LeaderWorkerSet: GET, PUT, merge PATCH of `spec.replicas`."""
        plural = request.plural
        if method in ("PUT", "PATCH"):
            live = self._scale_of(plural, self._existing(plural, ns, name))
            wanted = merge_patch(live, request.body) if method == "PATCH" else request.body
            writes.check_version(
                self._write(ns, name, request), self._existing(plural, ns, name), wanted
            )
            manager = self._write(ns, name, request).manager
            self._scale(plural, ns, name, int(wanted["spec"]["replicas"]), manager)
        elif method != "GET":
            raise HttpError(status(405, "MethodNotAllowed", f"{method} is not supported here"))
        return self._scale_of(plural, self._existing(plural, ns, name))

    @staticmethod
    def _scale_of(plural: str, obj: Object) -> Object:
        spec_path, status_path = (
            crd_scale_paths()
            if plural == "leaderworkersets"
            else (
                ".spec.replicas",
                ".status.replicas",
            )
        )
        metadata = obj["metadata"]
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                k: metadata[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in metadata
            },
            "spec": {"replicas": _at(obj, spec_path) or 0},
            "status": {"replicas": _at(obj, status_path) or 0},
        }


def _at(obj: Object, path: str) -> Any:
    value: Any = obj
    for part in path.strip(".").split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
