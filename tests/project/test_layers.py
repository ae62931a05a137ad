"""The import contract, read from the import graph (grimp, the graph library behind import-linter).

Layers, each importing only those below it:

    cli  ->  producer  ->  worker (service)  ->  worker.closing  ->  worker.genesys  ->  shared  ->  config

``shared`` is the vocabulary producer and worker both speak (ids, outcomes, options, batch records and stores, task
names, Celery settings, locks, the Redis connection and limiter); the producer imports nothing of the worker, so
its folder tree reads like the diagram in docs/architecture.md. The emulator imports none of them and none of them
imports the emulator. The producer never reaches the worker's Genesys dependencies (requests, tenacity,
cryptography), statically or at run time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import grimp
import pytest

from tests.package_tree import package_tree

LAYERS = [  # lowest first; a module belongs to the longest prefix that names it
    "genesys_closer.config",
    "genesys_closer.shared",
    "genesys_closer.worker.genesys",
    "genesys_closer.worker.closing",
    "genesys_closer.worker",
    "genesys_closer.producer",
    "genesys_closer.cli",  # the console entry point: the producer's commands plus `check` (the worker's client)
]
EMULATOR = "genesys_closer.emulator"
WORKER_ONLY_PACKAGES = ("requests", "tenacity", "cryptography")


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grimp.ImportGraph]:
    """grimp reads a package from its folders, so it is given the tree an install lays out (copied from the
    package-dir mapping); the loaded genesys_closer modules are set aside while grimp locates the package."""
    root = package_tree(tmp_path_factory.mktemp("tree"))
    loaded = {name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] == "genesys_closer"}
    sys.path.insert(0, str(root))
    try:
        yield grimp.build_graph("genesys_closer", include_external_packages=True, cache_dir=None)
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name.split(".")[0] == "genesys_closer"]:
            del sys.modules[name]
        sys.modules.update(loaded)


def test_the_graph_holds_every_module(graph: grimp.ImportGraph) -> None:
    """Nothing is missed: every .py file of every mapped folder is in the graph under its genesys_closer name."""
    from setup import mapped_packages

    expected = {package if path.name == "__init__.py" else f"{package}.{path.stem}"
                for package, folder in mapped_packages().items() for path in folder.glob("*.py")}
    assert expected <= set(graph.modules)
    assert len(expected) > 50


def layer_of(module: str) -> int | None:
    matches = [i for i, name in enumerate(LAYERS) if module == name or module.startswith(name + ".")]
    return max(matches, key=lambda i: len(LAYERS[i])) if matches else None


def internal_imports(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    ours = {m for m in graph.modules if m.startswith("genesys_closer.")}
    return [(importer, imported) for importer in sorted(ours)
            for imported in sorted(graph.find_modules_directly_imported_by(importer)) if imported in ours]


def test_every_layer_has_modules(graph: grimp.ImportGraph) -> None:
    for name in LAYERS:
        assert any(layer_of(m) == LAYERS.index(name) for m in graph.modules), name


def test_imports_point_down_the_layers(graph: grimp.ImportGraph) -> None:
    upward = []
    for importer, imported in internal_imports(graph):
        low, high = layer_of(importer), layer_of(imported)
        if low is not None and high is not None and high > low:
            upward.append(f"{importer} imports {imported}")
    assert upward == []


def test_the_producer_imports_nothing_of_the_worker(graph: grimp.ImportGraph) -> None:
    """Producer and worker meet in ``shared``: the producer never reaches into the worker's packages."""
    reaching = [f"{a} imports {b}" for a, b in internal_imports(graph)
                if a.startswith("genesys_closer.producer") and b.startswith("genesys_closer.worker")]
    assert reaching == []


def test_emulator_stands_apart(graph: grimp.ImportGraph) -> None:
    crossing = [f"{a} imports {b}" for a, b in internal_imports(graph)
                if a.startswith(EMULATOR) != b.startswith(EMULATOR)]
    assert crossing == []


@pytest.mark.parametrize("package", WORKER_ONLY_PACKAGES)
def test_producer_never_reaches_worker_dependencies(graph: grimp.ImportGraph, package: str) -> None:
    for module in sorted(m for m in graph.modules if m.startswith("genesys_closer.producer")):
        assert graph.find_shortest_chain(importer=module, imported=package) is None, (module, package)


def test_the_contract_catches_an_upward_import(graph: grimp.ImportGraph) -> None:
    """The check itself can fail: an import from config up to the service layer is reported."""
    service = "genesys_closer.worker.running.close_run"
    graph.add_import(importer="genesys_closer.config.settings", imported=service)
    graph.add_import(importer="genesys_closer.producer.api", imported=service)
    try:
        with pytest.raises(AssertionError, match=r"config\.settings imports genesys_closer\.worker\.running"):
            test_imports_point_down_the_layers(graph)
        with pytest.raises(AssertionError, match=r"producer\.api imports genesys_closer\.worker\.running"):
            test_the_producer_imports_nothing_of_the_worker(graph)
    finally:
        graph.remove_import(importer="genesys_closer.config.settings", imported=service)
        graph.remove_import(importer="genesys_closer.producer.api", imported=service)


def test_importing_builds_nothing_and_needs_no_genesys_settings(tmp_path: object) -> None:
    """A bare environment (no GENESYS_* at all, an invalid worker-only value) imports the producer, the CLI, the
    worker app module and the one-import entry point; the producer side loads no worker dependency."""
    code = (
        "import json, sys\n"
        "import genesys_closer.producer, genesys_closer.producer.cli, genesys_closer.worker.app\n"
        "from genesys_closer import close_conversation, CloseClient\n"
        "unwanted = ('requests', 'tenacity', 'cryptography.fernet', 'cryptography.hazmat',\n"
        "            'genesys_closer.worker.genesys.client', 'genesys_closer.worker.tasks')\n"
        "loaded = [m for m in unwanted if m in sys.modules]\n"
        "print(json.dumps(loaded))\n"
    )
    env = {"PATH": os.environ["PATH"], "GENESYS_RATE_LIMIT_PER_MINUTE": "0"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                         cwd=str(tmp_path), check=False)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == []
