"""The image's lock files follow pyproject.toml: `scripts/lock --check` (run by .ci/run) fails when they disagree."""

from __future__ import annotations

import copy
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lock() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock_script", REPO / "scripts" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def text_of(role: str) -> str:
    return (REPO / "requirements" / f"{role}.txt").read_text()


def test_the_committed_locks_match(lock: ModuleType) -> None:
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "lock.py"), "--check"], capture_output=True,
                         text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    project = lock.pyproject()
    for role in lock.ROLES:
        assert lock.problems(role, project, text_of(role.name)) == []


def test_a_new_dependency_without_a_refresh_fails(lock: ModuleType) -> None:
    project = copy.deepcopy(lock.pyproject())
    project["project"]["optional-dependencies"]["worker"].append("httpx>=0.27")
    worker = next(role for role in lock.ROLES if role.name == "worker")
    found = lock.problems(worker, project, text_of("worker"))
    assert "requirements/worker.txt was not compiled from the current pyproject.toml" in found
    assert any("does not pin httpx" in line for line in found)
    intake = next(role for role in lock.ROLES if role.name == "intake")
    assert lock.problems(intake, project, text_of("intake")) == []  # only the roles that install it


def test_a_range_the_pin_leaves_fails(lock: ModuleType) -> None:
    project = copy.deepcopy(lock.pyproject())
    project["project"]["dependencies"] = [line.replace("redis>=5.0", "redis<5") for line in
                                          project["project"]["dependencies"]]
    found = lock.problems(lock.ROLES[0], project, text_of(lock.ROLES[0].name))
    assert any("pins redis==" in line and "outside" in line for line in found)


def test_a_pin_without_a_hash_or_a_missing_lock_fails(lock: ModuleType) -> None:
    project = lock.pyproject()
    role = lock.ROLES[0]
    stripped = "\n".join(line for line in text_of(role.name).splitlines() if "celery==" not in line)
    found = lock.problems(role, project, stripped + "\ncelery==5.4.0\n")
    assert "requirements/worker.txt pins celery without a hash" in found
    assert lock.problems(role, project, None) == ["requirements/worker.txt is missing"]


def test_the_dockerfile_installs_only_from_the_locks(lock: ModuleType) -> None:
    """Every pip install in the image takes a lock with --require-hashes, or the project's own wheel without deps;
    every lock role is used."""
    dockerfile = (REPO / "Dockerfile").read_text()
    installs = [line.strip() for line in dockerfile.splitlines() if "pip install" in line]
    assert installs
    for line in installs:
        assert "--require-hashes" in line or ("--no-deps" in line and "genesys_closer-" in line), line
    copied = set(re.findall(r"requirements/(\w+)\.txt", dockerfile))
    assert copied == {role.name for role in lock.ROLES}
    compose = (REPO / "docker-compose.yml").read_text()
    targets = set(re.findall(r"target: (\w+)", compose))
    assert targets == set(re.findall(r"^FROM \S+ AS (\w+)$", dockerfile, re.MULTILINE)) - {"build", "base"}
