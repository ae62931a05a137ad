"""mypy --strict over every module of the package, each checked once under its ``genesys_closer`` name.

Why not plain ``mypy``: the folders (worker/, producer/, config/, emulator/) are mapped into the ``genesys_closer``
namespace by setuptools' package-dir, and mypy names a file by the folders it sits in (``worker/app.py`` would be
``worker.app``). mypy never runs the editable install's import hook either, so it cannot find
``genesys_closer.worker`` from the checkout. This script hands mypy the sources with their module names, read from
the same mapping the build uses (setup.py's ``mapped_packages``): mypy then checks each file once, under its one
name, and reports errors with the file's repository path (``worker/app.py:12: error: ...``).

Usage: scripts/typecheck [mypy options]   (the [tool.mypy] section of pyproject.toml applies)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mypy import build, util
from mypy.errors import CompileError
from mypy.fscache import FileSystemCache
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from setup import mapped_packages  # noqa: E402  (setup.py at the repository root)


def sources() -> list[BuildSource]:
    found = []
    for package, folder in sorted(mapped_packages().items()):
        for path in sorted(folder.glob("*.py")):
            module = package if path.name == "__init__.py" else f"{package}.{path.stem}"
            found.append(BuildSource(str(path.relative_to(ROOT)), module))
    return found


def main(args: list[str]) -> int:
    started = time.time()
    fscache = FileSystemCache()
    _, options = process_options(args, require_targets=False, fscache=fscache)
    targets = sources()
    formatter = util.FancyFormatter(sys.stdout, sys.stderr, options.hide_error_codes)
    messages: list[str] = []

    def flush(_filename: str | None, new: list[str], serious: bool) -> None:
        messages.extend(new)
        for line in new:
            shown = formatter.colorize(line) if options.color_output else line
            print(shown, file=sys.stderr if serious else sys.stdout)

    blockers = False
    try:
        build.build(targets, options, None, flush, fscache, sys.stdout, sys.stderr)
    except CompileError:
        blockers = True
    errors, _notes, files = util.count_stats(messages)
    if errors or blockers:
        print(formatter.format_error(errors, files, len(targets), blockers=blockers, use_color=options.color_output))
        return 2 if blockers else 1
    print(formatter.format_success(len(targets), options.color_output), f"({time.time() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
