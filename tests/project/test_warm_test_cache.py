"""scripts/warm_test_cache.py writes the rewritten bytecode pytest itself would write: pytest then reads it (it
rewrites nothing again) and still explains a failed assert."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_pytest_reads_what_the_warm_up_wrote_and_still_explains_asserts(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "conftest.py").write_text("")
    (tests / "test_sample.py").write_text("def test_sums():\n    total = 1 + 1\n    assert total == 3\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    warmed = subprocess.run([sys.executable, str(REPO / "scripts" / "warm_test_cache.py"), str(tests)], env=env,
                            capture_output=True, text=True, timeout=120, check=True)
    assert "2 of 2 test modules rewritten" in warmed.stdout
    pycs = {p: p.stat().st_mtime_ns for p in tests.rglob("*-pytest-*.pyc")}
    assert {p.name.split(".")[0] for p in pycs} == {"conftest", "test_sample"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                          "--rootdir", str(tmp_path), str(tests)], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 1
    assert "assert 2 == 3" in run.stdout  # the rewritten assert's explanation
    assert {p: p.stat().st_mtime_ns for p in tests.rglob("*-pytest-*.pyc")} == pycs  # read, not written again
    again = subprocess.run([sys.executable, str(REPO / "scripts" / "warm_test_cache.py"), str(tests)], env=env,
                           capture_output=True, text=True, timeout=120, check=True)
    assert "0 of 2 test modules rewritten" in again.stdout
