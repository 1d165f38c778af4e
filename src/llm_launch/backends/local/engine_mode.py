"""Which engine a local group runs: the real one, or the simulator where it cannot."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

MODES = ("auto", "simulated", "real")


def gpu_present() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def resolve_engine_mode(requested: str, framework: str) -> str:
    """`auto` runs the real engine only when a GPU and the framework's package are here."""
    if requested != "auto":
        return requested
    if gpu_present() and importlib.util.find_spec(framework) is not None:
        return "real"
    return "simulated"
