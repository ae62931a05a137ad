"""The package list for setuptools, derived from the folders (pyproject.toml holds everything else).

pyproject.toml maps each top-level folder into the ``genesys_closer`` namespace (``[tool.setuptools.package-dir]``),
but its static ``packages`` key would have to name every subpackage by hand, and ``packages.find`` cannot add the
``genesys_closer.`` prefix. This file lists the mapped packages from that mapping and the folders themselves, so a
new subpackage (a folder with an ``__init__.py`` under worker/, producer/, config/ or emulator/) is installed
without editing anything. scripts/typecheck.py reads the same mapping through ``mapped_packages``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent


def package_dirs() -> dict[str, str]:
    """``[tool.setuptools.package-dir]``: package name -> folder, relative to the repository."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        mapping: dict[str, str] = tomllib.load(file)["tool"]["setuptools"]["package-dir"]
    return mapping


def mapped_packages() -> dict[str, Path]:
    """Every package under its ``genesys_closer`` name -> its folder in the repository."""
    packages: dict[str, Path] = {}
    for name, folder in package_dirs().items():
        packages[name] = ROOT / folder
        for sub in find_packages(str(ROOT / folder)):
            packages[f"{name}.{sub}"] = ROOT / folder / sub.replace(".", "/")
    return packages


if __name__ == "__main__":
    setup(packages=sorted(mapped_packages()))
