"""What the test API server records of each request for RBAC: the (API group, resource,
verb, name) that the real API server's authorizer is asked about.

The verb of a request is the one `k8s.io/apiserver/pkg/endpoints/request` (RequestInfoFactory)
derives from its method and path: GET of a name is `get`, GET of a collection is `list`
(`watch` with `watch=true`), POST `create`, PUT `update`, PATCH `patch`, DELETE of a name
`delete`; a subresource is `resource/subresource` (`pods/log`). A server-side apply that
creates its object is authorized twice: `patch` by the filter, then `create` by the patch
handler (`staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go`, the
`createAuthorizerAttributes` with Verb "create" it checks before an apply creates), so the
fake records both.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Access:
    group: str  # "" for the core group
    resource: str  # plural, or plural/subresource
    verb: str
    name: str = ""  # the object's name, when the request names one


def verb_of(method: str, named: bool, watch: bool) -> str:
    if method == "GET":
        return "get" if named else ("watch" if watch else "list")
    if method == "DELETE":
        return "delete" if named else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
