"""Builders for request bodies: a valid default, overridden by keyword."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def unique_name(prefix: str = "ep") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def endpoint_body(**overrides: Any) -> dict[str, Any]:
    """A valid single-node vLLM create request; keyword arguments replace or add fields."""
    body: dict[str, Any] = {
        "name": unique_name(),
        "model_name": "llama-3-8b-instruct",
        "endpoint_type": "streaming",
        "inference_framework": "vllm",
        "inference_framework_image_tag": "v0.31.0",
        "cpus": 8,
        "memory": "32Gi",
        "storage": "100Gi",
        "gpus": 1,
        "gpu_type": "nvidia-ampere-a10",
        "num_shards": 1,
        "min_workers": 1,
        "max_workers": 2,
        "per_worker": 4,
        "labels": {"team": "infra"},
    }
    body.update(overrides)
    return body


def seed_body(**overrides: Any) -> dict[str, Any]:
    """The runbook's DeepSeek-R1 multinode SGLang body, exactly as written there."""
    body: dict[str, Any] = json.loads((EXAMPLES / "deepseek-r1-multinode.json").read_text())
    body.update(overrides)
    return body
