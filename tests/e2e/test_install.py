"""Installed into an app, genesys-closer shadows nothing: the wheel puts one name, ``genesys_closer``, into
site-packages. A throwaway app with its own ``config`` package enqueues a close with the one-import entry point, a
worker started from the same fresh environment (working directory: the app, so its ``config`` is importable there
too) completes it, and the app's ``config`` is untouched.

The fresh venv gets the wheel itself (``--no-deps``); its dependencies come from this test environment's
site-packages through a path entry, so the test needs no network. The editable install of the checkout is not
visible there (its finder is only loaded from this environment's own site directory).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from genesys_closer.emulator import EmulatorServer
from genesys_closer.emulator.admin import EmulatorAdmin
from tests.services import CeleryWorker, worker_env

REPO = Path(__file__).resolve().parents[2]
APP_MAIN = '''
import json, sys
import config
from genesys_closer import close_conversation
import genesys_closer

before = config.SETTING
record = close_conversation.delay(sys.argv[1]).get(timeout=60)
print(json.dumps({"outcome": record["outcome"], "config": config.SETTING, "config_file": config.__file__,
                  "package_file": genesys_closer.__file__, "before": before,
                  "loaded": [m for m in ("requests", "tenacity", "cryptography.fernet") if m in sys.modules]}))
'''


SOURCES = ("pyproject.toml", "setup.py", "README.md", "genesys_closer", "config", "worker", "producer", "emulator")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a clean copy of the sources (an in-tree build would reuse a stale build/ directory)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(out), str(source)], check=True, capture_output=True, timeout=300)
    [built] = out.glob("genesys_closer-*.whl")
    return built


def fresh_venv(where: Path, wheel: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "genesys_closer_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_wheel_installs_one_namespace(wheel: Path) -> None:
    import zipfile

    tops = {name.split("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"genesys_closer", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    assert "genesys_closer/worker/lua/record_outcome.lua" in zipfile.ZipFile(wheel).namelist()


def test_app_with_its_own_config_package(wheel: Path, tmp_path: Path, redis_url: str, emulator: EmulatorServer,
                                         admin: EmulatorAdmin) -> None:
    python = fresh_venv(tmp_path / "venv", wheel)
    app = tmp_path / "app"
    (app / "config").mkdir(parents=True)
    (app / "config" / "__init__.py").write_text('SETTING = "the app\'s own config"\n')
    (app / "main.py").write_text(APP_MAIN)
    env = worker_env(redis_url, emulator.base_url)
    env.pop("PYTHONPATH", None)
    worker = CeleryWorker("installed", env, app, concurrency=2, python=str(python))
    worker.start().wait_ready()
    try:
        [cid] = admin.create(1)
        app_env = {"PATH": os.environ["PATH"], "REDIS_URL": redis_url}  # the app sets nothing else
        run = subprocess.run([str(python), "main.py", cid], cwd=app, env=app_env, capture_output=True, text=True,
                             timeout=120, check=False)
    finally:
        worker.kill()
    assert run.returncode == 0, run.stderr
    import json

    seen = json.loads(run.stdout)
    assert seen["outcome"] == "closed" and admin.conversation(cid)["open"] is False
    assert seen["config"] == seen["before"] == "the app's own config"
    assert Path(seen["config_file"]).parent == app / "config"
    assert str(tmp_path / "venv") in seen["package_file"]  # the wheel, not the checkout
    assert seen["loaded"] == []
    assert "genesys_closer" in worker.log_path.read_text()
