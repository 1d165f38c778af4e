"""The simulator stands alone: it imports nothing from the control plane's upper layers."""

from __future__ import annotations

import ast
from pathlib import Path

import llm_launch.simulator

FORBIDDEN = ("llm_launch.api", "llm_launch.services", "llm_launch.store", "llm_launch.backends")
PACKAGE = Path(llm_launch.simulator.__file__).parent


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_no_simulator_module_imports_api_services_store_or_backends() -> None:
    sources = sorted(PACKAGE.glob("*.py"))
    assert len(sources) > 10  # the package was found
    offenders = {
        f"{path.name}: {module}"
        for path in sources
        for module in imported_modules(path)
        if module.startswith(FORBIDDEN)
    }
    assert offenders == set()
