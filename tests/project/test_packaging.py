"""One name per module: the folders are mapped into genesys_closer (package-dir), never linked, and the bare
folder names are a lint error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.package_tree import REPO

RUFF = Path(sys.executable).parent / "ruff"
MAPPED = ("worker", "producer", "config", "emulator")


def test_no_symlink_in_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files", "-s"], cwd=REPO, check=True, capture_output=True, text=True).stdout
    links = [line.split("\t", 1)[1] for line in tracked.splitlines() if line.startswith("120000 ")]
    assert links == []


def test_every_folder_maps_into_the_namespace() -> None:
    from setup import mapped_packages

    packages = mapped_packages()
    for folder in MAPPED:
        assert packages[f"genesys_closer.{folder}"] == REPO / folder
    assert packages["genesys_closer.worker.closing"] == REPO / "worker" / "closing"  # subpackages come by themselves


def test_the_typecheck_names_each_module_once() -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from typecheck import sources
    finally:
        sys.path.remove(str(REPO / "scripts"))
    found = sources()
    paths = [source.path for source in found]
    modules = [source.module for source in found]
    assert len(set(paths)) == len(paths) and len(set(modules)) == len(modules)
    assert all(module.startswith("genesys_closer") for module in modules)
    assert ("worker/app.py", "genesys_closer.worker.app") in zip(paths, modules, strict=True)
    on_disk = {str(path.relative_to(REPO)) for folder in ("genesys_closer", *MAPPED)
               for path in (REPO / folder).rglob("*.py")}
    assert set(paths) == on_disk


def lint(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    probe = tmp_path / "probe.py"
    probe.write_text(f'"""Probe."""\n\n{source}\n')
    return subprocess.run([str(RUFF), "check", "--no-cache", "--config", str(REPO / "pyproject.toml"), str(probe)],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("statement", ["import worker", "import worker.app", "from config.settings import X",
                                       "from producer import api", "import emulator.model"])
def test_a_bare_folder_import_fails_the_lint(tmp_path: Path, statement: str) -> None:
    run = lint(tmp_path, f"{statement}  # noqa: F401")
    assert run.returncode == 1
    assert "TID251" in run.stdout and "one name per module" in run.stdout and "Found 1 error" in run.stdout


def test_the_namespaced_import_passes_the_lint(tmp_path: Path) -> None:
    run = lint(tmp_path, "import genesys_closer.worker.app  # noqa: F401")
    assert run.returncode == 0, run.stdout
