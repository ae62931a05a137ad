"""``python -m genesys_closer.worker worker|beat``: Celery's own commands bound to the app, with the options of
``celery -A genesys_closer.worker.app worker|beat``. Every test that starts a worker or beat through
``tests/services.py`` starts it this way; tests/chaos/test_redis_flap.py starts the README's ``celery`` line."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

OPTION = re.compile(r"^\s+(-\w, )?(--[\w-]+)", re.M)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], check=False, capture_output=True, text=True, timeout=60)


def options(help_text: str) -> set[str]:
    return {match.group(2) for match in OPTION.finditer(help_text)}


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_the_same_options_as_the_celery_command(command: str) -> None:
    ours = run("-m", "genesys_closer.worker", command, "--help")
    celerys = run("-m", "celery", "-A", "genesys_closer.worker.app", command, "--help")
    assert ours.returncode == celerys.returncode == 0, ours.stderr + celerys.stderr
    assert f"Usage: python -m genesys_closer.worker {command} [OPTIONS]" in ours.stdout
    assert "--concurrency" in options(celerys.stdout) or command == "beat"
    assert options(ours.stdout) == options(celerys.stdout)


@pytest.mark.parametrize("args", [[], ["flower"], ["worker", "--detach"], ["beat", "-D"]])
def test_anything_else_is_refused_with_a_usage_line(args: list[str]) -> None:
    refused = run("-m", "genesys_closer.worker", *args)
    assert refused.returncode == 2
    assert "python -m genesys_closer.worker" in refused.stderr
