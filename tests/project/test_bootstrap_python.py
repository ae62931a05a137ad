"""scripts/bootstrap's choice of interpreter for the venv: $PYTHON if set, else the distribution's python3 when it is
3.11 or newer and can make venvs, else python3 on PATH. The function runs as bootstrap defines it, in bash, with the
distribution's path pointed at a stand-in (a small script, or a real interpreter) and python3 on PATH faked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DISTRIBUTION = "/usr/bin/python3"


def pick(distribution: str, env: dict[str, str]) -> str:
    text = (REPO / "scripts" / "bootstrap").read_text()
    match = re.search(r"^pick_python\(\) \{\n.*?^\}\n", text, re.S | re.M)
    assert match, "scripts/bootstrap defines pick_python"
    function = match.group(0)
    assert DISTRIBUTION in function
    run = subprocess.run(["bash", "-c", function.replace(DISTRIBUTION, distribution) + "pick_python"], env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    return run.stdout.strip()


def script(path: Path, body: str) -> str:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def path_python(tmp_path: Path) -> dict[str, str]:
    """A PATH whose python3 answers every check as a good 3.11 would (as a pyenv shim does)."""
    (tmp_path / "bin").mkdir()
    script(tmp_path / "bin" / "python3", "exit 0")
    return {"PATH": f"{tmp_path / 'bin'}:/bin:/usr/bin"}


def test_python_set_wins(path_python: dict[str, str]) -> None:
    assert pick(sys.executable, {**path_python, "PYTHON": "/opt/some/python3.12"}) == "/opt/some/python3.12"


def test_the_distributions_python_comes_first_when_it_can_make_venvs(path_python: dict[str, str]) -> None:
    assert pick(sys.executable, path_python) == sys.executable  # a real 3.11+ with venv and ensurepip


@pytest.mark.parametrize("why", ["too old or no venv module", "missing"])
def test_python3_on_path_otherwise(path_python: dict[str, str], tmp_path: Path, why: str) -> None:
    distribution = script(tmp_path / "old-python3", "exit 1") if why != "missing" else str(tmp_path / "absent")
    assert pick(distribution, path_python) == "python3"


@pytest.mark.parametrize(("version", "chosen"), [((3, 10), False), ((3, 11), True), ((3, 13), True)])
def test_the_version_check(tmp_path: Path, path_python: dict[str, str], version: tuple[int, int],
                           chosen: bool) -> None:
    """The check itself, run by a real interpreter that reports itself as ``version``."""
    fake = script(tmp_path / "python3.x", f"exec {sys.executable} -c \"import sys; sys.version_info = {version}; "
                  "exec(sys.argv[2])\" -- \"$2\"")
    assert pick(fake, path_python) == (fake if chosen else "python3")
