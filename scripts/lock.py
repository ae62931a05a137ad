"""The image's lock files: requirements/<role>.txt, every package pinned with its hashes, compiled by uv from
pyproject.toml for the Dockerfile's platform (CPython 3.11, Linux x86_64; the hashes cover every wheel of a
pinned version, so arm64 builds verify too).

    scripts/lock             refresh the locks after editing pyproject.toml's dependencies (keeps other pins)
    scripts/lock --upgrade   also move every pin to the newest allowed version
    scripts/lock --check     no network: fail when pyproject.toml and a lock disagree (.ci/run runs this)

The check compares a digest of exactly the pyproject.toml entries a lock was compiled from (written into the
lock's first line), and checks that every direct requirement is pinned, within its range, with hashes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "requirements"
PYTHON_VERSION = "3.11"  # the Dockerfile's base image, python:3.11-slim
PLATFORM = "x86_64-unknown-linux-gnu"
MARKERS = {"python_version": PYTHON_VERSION, "python_full_version": PYTHON_VERSION + ".0", "sys_platform": "linux",
           "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64",
           "implementation_name": "cpython", "platform_python_implementation": "CPython"}
DIGEST = re.compile(r"^# pyproject-inputs-sha256: ([0-9a-f]{64})$")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


@dataclass(frozen=True)
class Role:
    """One image role of the Dockerfile: the extras it installs (None: the build backend, build-system.requires)."""

    name: str
    extras: tuple[str, ...] | None


ROLES = (
    Role("worker", ("worker",)),  # worker, beat and the demo emulator
    Role("dashboard", ("worker", "dashboard")),  # Flower loads the worker's Celery app and its tasks
    Role("intake", ("intake",)),  # the HTTP intake (genesys-closer serve)
    Role("build", None),  # setuptools, to build the wheel in the image's build stage
)


def pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def inputs(role: Role, project: dict[str, object]) -> list[str]:
    """The pyproject.toml requirement strings this role's lock is compiled from."""
    if role.extras is None:
        return list(project["build-system"]["requires"])  # type: ignore[index]
    meta = project["project"]
    found = list(meta["dependencies"])  # type: ignore[index]
    for extra in role.extras:
        found += meta["optional-dependencies"][extra]  # type: ignore[index]
    return found


def digest(requirements: list[str]) -> str:
    return hashlib.sha256(json.dumps(sorted(requirements)).encode()).hexdigest()


def read_pins(text: str) -> tuple[str | None, dict[str, str], set[str]]:
    """(recorded digest, name -> pinned version, names pinned without a hash)."""
    recorded = None
    pins: dict[str, str] = {}
    unhashed: set[str] = set()
    entries = re.split(r"\n(?=\S)", text)  # a pin and its "\\\n    --hash=..." continuation lines are one entry
    for entry in entries:
        first = entry.split("\n", 1)[0]
        if (match := DIGEST.match(first)) is not None:
            recorded = match.group(1)
        elif (pin := PIN.match(first)) is not None:
            name = canonicalize_name(pin.group(1))
            pins[name] = pin.group(2)
            if "--hash=sha256:" not in entry:
                unhashed.add(name)
    return recorded, pins, unhashed


def problems(role: Role, project: dict[str, object], text: str | None) -> list[str]:
    """Why requirements/<role>.txt does not match pyproject.toml (empty: it matches)."""
    path = f"requirements/{role.name}.txt"
    if text is None:
        return [f"{path} is missing"]
    wanted = inputs(role, project)
    recorded, pins, unhashed = read_pins(text)
    found = []
    if recorded != digest(wanted):
        found.append(f"{path} was not compiled from the current pyproject.toml")
    for line in wanted:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate(MARKERS):
            continue
        version = pins.get(canonicalize_name(requirement.name))
        if version is None:
            found.append(f"{path} does not pin {requirement.name} (pyproject.toml: {line})")
        elif not requirement.specifier.contains(version, prereleases=True):
            found.append(f"{path} pins {requirement.name}=={version}, outside pyproject.toml's {line}")
    found += [f"{path} pins {name} without a hash" for name in sorted(unhashed)]
    return found


def compile_lock(role: Role, project: dict[str, object], upgrade: bool) -> None:
    out = LOCKS / f"{role.name}.txt"
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "requirements.in"
        source.write_text("\n".join(inputs(role, project)) + "\n")
        command = [str(Path(sys.executable).parent / "uv"), "pip", "compile", "--quiet", "--generate-hashes",
                   "--python-version", PYTHON_VERSION, "--python-platform", PLATFORM,
                   "--custom-compile-command", "scripts/lock", "--no-annotate", "-o", str(out), str(source)]
        if upgrade:
            command.append("--upgrade")
        if out.exists():  # uv keeps the current pins where they still fit; the digest line goes back on top after
            out.write_text(out.read_text().split("\n", 1)[1] if DIGEST.match(out.read_text().split("\n", 1)[0]) else
                           out.read_text())
        subprocess.run(command, check=True, cwd=ROOT)
    body = out.read_text()
    out.write_text(f"# pyproject-inputs-sha256: {digest(inputs(role, project))}\n{body}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/lock", description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="fail when pyproject.toml and a lock disagree")
    parser.add_argument("--upgrade", action="store_true", help="move every pin to the newest allowed version")
    args = parser.parse_args(argv)
    project = pyproject()
    if not args.check:
        LOCKS.mkdir(exist_ok=True)
        for role in ROLES:
            compile_lock(role, project, args.upgrade)
    found = []
    for role in ROLES:
        path = LOCKS / f"{role.name}.txt"
        found += problems(role, project, path.read_text() if path.exists() else None)
    for line in found:
        print(f"lock: {line}", file=sys.stderr)
    if found:
        print("lock: run scripts/lock to refresh requirements/*.txt from pyproject.toml", file=sys.stderr)
        return 1
    print(f"lock: requirements/{{{','.join(role.name for role in ROLES)}}}.txt match pyproject.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
