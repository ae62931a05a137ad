"""Installed into an app, genesys-closer shadows nothing and brings only what the app's role needs.

The source is a ``git clone -c core.symlinks=false`` of this repository (Git for Windows' default: a link would be
checked out as a small text file, and the package would not import), at the commit under test. Its wheel puts one
name, ``genesys_closer``, into site-packages, with the mapped folders' files copied in.

Each fresh venv gets the wheel (``--no-deps``) and exactly the distributions one role's install would bring: the
closure of the wheel's requirements (with that role's extras), resolved from this test environment's installed
metadata and copied file by file from it (its RECORD), so the test needs no network, and an app venv that lacks a
package it needs fails here as it would in production. A throwaway app with its own ``config`` package enqueues
closes with ``.delay()`` and ``CloseClient`` from the app-side install; a worker from the ``[worker]`` install
(working directory: the app, so its ``config`` is importable there too) closes them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterable
from importlib.metadata import Distribution, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from genesys_closer.emulator import EmulatorServer
from genesys_closer.emulator.admin import EmulatorAdmin
from tests.services import CeleryWorker, worker_env

REPO = Path(__file__).resolve().parents[2]
MAPPED = ("config", "worker", "producer", "emulator")
APP_MAIN = '''
import json, sys
import config
from genesys_closer import CloseClient, close_conversation
import genesys_closer

before = config.SETTING
record = close_conversation.delay(sys.argv[1]).get(timeout=60)
second = CloseClient().close(sys.argv[2], wait=True)
print(json.dumps({"outcome": record["outcome"], "second": second.outcome.value, "config": config.SETTING,
                  "config_file": config.__file__, "package_file": genesys_closer.__file__, "before": before,
                  "loaded": [m for m in ("requests", "tenacity", "cryptography") if m in sys.modules]}))
'''
# What each role must not bring (README, "Installing"): the other roles' dependencies.
NOT_FOR_APPS = {"fastapi", "flower", "requests", "cryptography", "uvicorn", "tenacity", "typer", "rich",
                "prometheus-client"}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The commit under test (HEAD: commit your change before running this), checked out without symlinks."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout.strip()
    dest = tmp_path_factory.mktemp("clone") / "genesys-closer"
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", "-c", "core.symlinks=false", str(REPO), str(dest)],
                   check=True, capture_output=True, timeout=120)
    subprocess.run(["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", head], cwd=dest, check=True,
                   capture_output=True, timeout=120)
    return dest


@pytest.fixture(scope="module")
def wheel(clone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(out), str(clone)], check=True, capture_output=True, timeout=300)
    [built] = out.glob("genesys_closer-*.whl")
    return built


def role_requirements(wheel: Path, extras: Iterable[str]) -> list[Requirement]:
    """The wheel's own Requires-Dist for an install with these extras."""
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        lines = archive.read(metadata).decode().splitlines()
    requires = [Requirement(line.split(":", 1)[1].strip()) for line in lines if line.startswith("Requires-Dist:")]
    return [r for r in requires if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in ("", *extras))]


def closure(requirements: list[Requirement]) -> dict[str, Distribution]:
    """Every distribution these requirements bring, by name, resolved against this environment's metadata."""
    found: dict[str, Distribution] = {}
    extras_seen: dict[str, set[str]] = {}
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        wanted = set(requirement.extras)
        if name in found and wanted <= extras_seen[name]:
            continue
        dist = found.get(name) or distribution(name)
        assert dist.version in requirement.specifier or not requirement.specifier, (requirement, dist.version)
        found[name] = dist
        extras_seen.setdefault(name, set()).update(wanted)
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *extras_seen[name])):
                todo.append(sub)
    return found


def fresh_venv(where: Path, wheel: Path, extras: Iterable[str] = ()) -> tuple[Path, list[str]]:
    """A venv with the wheel and the role's closure (copied from this environment); returns (python, names)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    ours = Path(sysconfig.get_paths()["purelib"])
    dists = closure(role_requirements(wheel, extras))
    for dist in dists.values():
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if source.is_relative_to(ours) and source.is_file():  # not the console scripts in bin/
                target = site / source.relative_to(ours)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    return python, sorted(dists)


def test_the_clone_has_no_link_and_the_wheel_one_namespace(clone: Path, wheel: Path) -> None:
    tracked = subprocess.run(["git", "ls-files", "-s"], cwd=clone, check=True, capture_output=True, text=True).stdout
    assert [line for line in tracked.splitlines() if line.startswith("120000 ")] == []
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"genesys_closer", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    assert "genesys_closer/shared/lua/record_outcome.lua" in names
    assert {"genesys_closer/producer/console/templates/batch.html", "genesys_closer/producer/console/static/app.js",
            "genesys_closer/producer/console/static/console.css"} <= set(names)  # the console's files
    modules = {f"genesys_closer/{path.relative_to(clone)}" for folder in MAPPED
               for path in (clone / folder).rglob("*.py")}
    assert modules - set(names) == set()  # every module of every mapped folder and subfolder, by its one name


def test_each_install_brings_only_its_role(wheel: Path) -> None:
    """The plain install is what .delay() and CloseClient need; the extras add the rest (listed in the output)."""
    app = sorted(closure(role_requirements(wheel, ())))
    worker = sorted(closure(role_requirements(wheel, ("worker",))))
    intake = sorted(closure(role_requirements(wheel, ("intake",))))
    print("app-side install (pip install genesys-closer):", " ".join(app))
    print("[worker] adds:", " ".join(sorted(set(worker) - set(app))))
    print("[intake] adds:", " ".join(sorted(set(intake) - set(app))))
    assert {"celery", "kombu", "redis", "pydantic-settings"} <= set(app)
    assert NOT_FOR_APPS & set(app) == set(), app
    assert {"requests", "cryptography", "tenacity"} <= set(worker) and "fastapi" not in worker
    assert {"fastapi", "uvicorn"} <= set(intake) and {"requests", "cryptography", "flower"} & set(intake) == set()


def test_app_with_its_own_config_package(wheel: Path, tmp_path: Path, redis_url: str, emulator: EmulatorServer,
                                         admin: EmulatorAdmin) -> None:
    app_python, installed = fresh_venv(tmp_path / "app-venv", wheel)
    print("app venv:", " ".join(installed))
    worker_python, _ = fresh_venv(tmp_path / "worker-venv", wheel, ("worker",))
    app = tmp_path / "app"
    (app / "config").mkdir(parents=True)
    (app / "config" / "__init__.py").write_text('SETTING = "the app\'s own config"\n')
    (app / "main.py").write_text(APP_MAIN)
    env = worker_env(redis_url, emulator.base_url)
    env.pop("PYTHONPATH", None)
    worker = CeleryWorker("installed", env, app, concurrency=2, python=str(worker_python))
    worker.start().wait_ready()
    try:
        first, second = admin.create(2)
        app_env = {"PATH": os.environ["PATH"], "REDIS_URL": redis_url}  # the app sets nothing else
        run = subprocess.run([str(app_python), "main.py", first, second], cwd=app, env=app_env, capture_output=True,
                             text=True, timeout=120, check=False)
    finally:
        worker.kill()
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen["outcome"] == seen["second"] == "closed"
    assert admin.conversation(first)["open"] is False and admin.conversation(second)["open"] is False
    assert seen["config"] == seen["before"] == "the app's own config"
    assert Path(seen["config_file"]).parent == app / "config"
    assert str(tmp_path / "app-venv") in seen["package_file"]  # the wheel, not the checkout
    assert seen["loaded"] == []
    assert "genesys_closer" in worker.log_path.read_text()
