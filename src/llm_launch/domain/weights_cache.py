"""The directory a downloaded checkpoint gets in a weights directory or a shared weights cache.

Two callers must agree on it: the in-pod fetch (`runtime/startup/weights.py`) copies a remote
checkpoint to `<weights dir>/<cache_directory_name(uri)>`, and the Kubernetes rendering
(`backends/kubernetes/render_pod.py`) gives each checkpoint its own directory of a node-local
(hostPath) or shared (PersistentVolumeClaim) cache under the same name. The name is a pure
function of the checkpoint's uri, so two endpoints of one checkpoint share a directory and
two checkpoints never do.
"""

from __future__ import annotations

import hashlib
import re

from llm_launch.domain.checkpoints import local_checkpoint_path

__all__ = ["cache_directory_name", "is_downloaded"]


def cache_directory_name(uri: str) -> str:
    """A stable, filesystem-safe directory name for `uri`: readable tail plus a short hash.

    A trailing slash does not change the name; the hash (SHA-256 of the uri) keeps apart
    uris whose readable tails are equal after unsafe characters are replaced.
    """
    canonical = uri.rstrip("/")
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", canonical.replace("://", "-"))
    return f"{readable[-80:].strip('.-')}-{digest}"


def is_downloaded(checkpoint_path: str | None) -> bool:
    """True if the startup program copies this checkpoint into the weights directory.

    Remote checkpoints (s3://, gs://, hf://) are; local ones (file://, absolute paths) are
    used in place, and without a checkpoint the engine loads the model id itself.
    """
    return checkpoint_path is not None and local_checkpoint_path(checkpoint_path) is None
