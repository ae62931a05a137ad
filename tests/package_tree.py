"""The package as an install lays it out: ``genesys_closer/<folder>/...``, built from the same package-dir mapping
the wheel uses (setup.py's ``mapped_packages``), by copying files. For tools that read a package from disk by its
folders (grimp), which the editable install's import hook does not reach."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # appended: setup.py is found, nothing of the checkout shadows the installed names
from setup import mapped_packages  # noqa: E402


def package_tree(dest: Path) -> Path:
    """Copy every mapped package's modules to dest/genesys_closer/...; returns dest (the directory to import from)."""
    for package, folder in mapped_packages().items():
        target = dest.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for path in folder.glob("*.py"):
            shutil.copy2(path, target / path.name)
    return dest
