"""The test API server's cluster-scoped `customresourcedefinitions` (apiextensions.k8s.io/v1):
GET of one by name, the way the control plane reads the LeaderWorkerSet CRD at start.

By default it serves the CRD vendored in deploy/crds/ (the one `schemas.py` validates
LeaderWorkerSets against). Hooks: `set` serves another definition under its name (an
older LWS release, a copy lacking a field), `remove` makes it 404 like an uninstalled CRD,
`forbid` answers 403 Forbidden as the API server does when RBAC grants no `get` on it
(the message format of k8s.io/apiserver's `responsewriters.forbiddenMessage`).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import yaml

from tests.fakes.kube.http import HttpError, status
from tests.fakes.kube.schemas import CRD

Object = dict[str, Any]
GROUP = "apiextensions.k8s.io"
PREFIX = f"/apis/{GROUP}/v1/customresourcedefinitions"
LWS_CRD = "leaderworkersets.leaderworkerset.x-k8s.io"


@functools.cache
def vendored() -> Object:
    loaded: Object = yaml.safe_load(CRD.read_text())
    return loaded


class Crds:
    def __init__(self) -> None:
        self._served: dict[str, Object] = {LWS_CRD: vendored()}
        self._forbidden = False

    def set(self, crd: Object) -> None:
        self._served[crd["metadata"]["name"]] = copy.deepcopy(crd)

    def remove(self, name: str = LWS_CRD) -> None:
        self._served.pop(name, None)

    def forbid(self) -> None:
        self._forbidden = True

    def get(self, method: str, name: str) -> Object:
        """The answer to `method` on `PREFIX/name`, or HttpError."""
        if self._forbidden:
            message = (
                f'customresourcedefinitions.{GROUP} "{name}" is forbidden: User '
                '"system:serviceaccount:default:llm-launch" cannot get resource '
                f'"customresourcedefinitions" in API group "{GROUP}" at the cluster scope'
            )
            details = {"name": name, "group": GROUP, "kind": "customresourcedefinitions"}
            raise HttpError(status(403, "Forbidden", message, details))
        if method != "GET" or not name:
            raise HttpError(status(405, "MethodNotAllowed", f"{method} is not supported here"))
        if name not in self._served:
            message = f'customresourcedefinitions.{GROUP} "{name}" not found'
            details = {"name": name, "group": GROUP, "kind": "customresourcedefinitions"}
            raise HttpError(status(404, "NotFound", message, details))
        return copy.deepcopy(self._served[name])
