"""The environment of the processes the local backend spawns: an allow-list, never a copy.

LocalBackend builds every group's base environment here. The server's own environment
holds every owner's API key (LLM_LAUNCH_API_KEYS) and the database URL with its password;
an engine runs code its owner chose (engine_args, checkpoints, chat templates), so it must
see none of that. A spawned process gets only:

- harmless basics every program needs (PATH, HOME, LANG and LC_*, TZ, TMPDIR, ...);
- what engines and GPUs read (CUDA_*, NVIDIA_*, NCCL_*, GLOO_*, TORCH_*, SGLANG_*, VLLM_*,
  the Hugging Face cache location, LD_LIBRARY_PATH), except names that look like
  credentials (..._KEY, ..._TOKEN, ..._SECRET, ...);
- the names the operator lists in `--pass-env` (e.g. `AWS_*,HF_TOKEN` for weight stores);
- what the launch plan and the group set (LWS_*, POD_IP, the engine mode).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence

BASIC_NAMES = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
        "PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
        "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_HUB_ENABLE_HF_TRANSFER",
        "XDG_CACHE_HOME", "OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM",
        # Operator hooks of the startup program and the simulator (no secrets).
        "LLM_LAUNCH_ENGINE_PROGRAM",
        # Simulator settings whose names hold a secret word (TOKEN) but no secret.
        "LLM_LAUNCH_SIM_PREFILL_US_PER_TOKEN", "LLM_LAUNCH_SIM_PREFIX_CACHE_TOKENS",
    }
)  # fmt: skip
BASIC_PREFIXES = (
    "LC_", "CUDA_", "NVIDIA_", "NCCL_", "GLOO_", "TORCH_", "SGLANG_", "VLLM_", "LLM_LAUNCH_SIM_",
)  # fmt: skip
# A prefix-matched name holding one of these words is a credential: only --pass-env passes it.
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")
# The server's own secrets: never passed, whatever --pass-env says.
NEVER_PASSED = frozenset(
    {"LLM_LAUNCH_API_KEYS", "LLM_LAUNCH_API_KEYS_FILE", "LLM_LAUNCH_DATABASE_URL"}
)


def pass_env_errors(patterns: Iterable[str]) -> list[str]:
    """Why `--pass-env` patterns are refused: malformed, or reaching the server's secrets."""
    errors = []
    for pattern in patterns:
        if not pattern or any(c in pattern for c in "=\0 ") or "*" in pattern[:-1]:
            errors.append(f"{pattern!r} is not a variable name or a NAME_PREFIX* pattern")
        elif reached := sorted(n for n in NEVER_PASSED if fnmatch.fnmatchcase(n, pattern)):
            errors.append(f"{pattern!r} would pass the server's own secret {reached[0]}")
    return errors


def parse_pass_env(text: str | None) -> tuple[str, ...]:
    """`AWS_*,HF_TOKEN` -> ("AWS_*", "HF_TOKEN")."""
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


def _basic(name: str) -> bool:
    if name in BASIC_NAMES:
        return True
    upper = name.upper()
    return name.startswith(BASIC_PREFIXES) and not any(w in upper for w in SECRET_WORDS)


def child_environment(source: Mapping[str, str], pass_env: Sequence[str]) -> dict[str, str]:
    """The allow-listed part of `source` (the server's environment) for a spawned process."""
    passed = {}
    for name, value in source.items():
        if name in NEVER_PASSED or name.startswith("LWS_"):
            continue
        if _basic(name) or any(fnmatch.fnmatchcase(name, p) for p in pass_env):
            passed[name] = value
    return passed
