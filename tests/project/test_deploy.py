"""Supervision as shipped: compose restart policies and healthchecks, the systemd units, the Kubernetes probes.

YAML is read with the interpreter of Debian's ``docker-compose`` (it ships PyYAML; .ci/run installs it), the units
are checked with ``systemd-analyze verify`` where systemd is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
KUBERNETES = ROOT / "deploy" / "kubernetes"
PROBE = ["python", "-m", "genesys_closer.worker.ops.health"]
SECRETS = {"REDIS_PASSWORD": "p", "FLOWER_BASIC_AUTH": "a:b", "GENESYS_CLIENT_ID": "i", "GENESYS_CLIENT_SECRET": "s",
           "INTAKE_TOKENS": "intake-token-0123456789"}
COMPOSE = shutil.which("docker-compose")
needs_compose = pytest.mark.skipif(COMPOSE is None, reason="docker-compose not installed")


def load_yaml(text: str) -> list[Any]:
    """Every document in ``text``, parsed by PyYAML in docker-compose's own interpreter."""
    assert COMPOSE is not None
    interpreter = Path(COMPOSE).read_text(errors="replace").splitlines()[0].removeprefix("#!").split()
    read = subprocess.run([*interpreter, "-c", "import json, sys, yaml; json.dump(list(yaml.safe_load_all(sys.stdin)),"
                           " sys.stdout)"], input=text, capture_output=True, text=True, timeout=60, check=True)
    documents: list[Any] = json.loads(read.stdout)
    return documents


@needs_compose
def test_compose_restarts_every_service_and_checks_its_health() -> None:
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    rendered = subprocess.run([str(COMPOSE), "-f", str(ROOT / "docker-compose.yml"), "config"],
                              env={**clean, **SECRETS}, capture_output=True, text=True, timeout=60, check=True)
    services = load_yaml(rendered.stdout)[0]["services"]
    for name in ("redis", "worker", "beat", "flower", "intake"):
        assert services[name]["restart"] in {"always", "unless-stopped"}, name
        assert services[name]["healthcheck"]["test"], name
    assert services["worker"]["healthcheck"]["test"][1:4] == PROBE
    beat = services["beat"]
    schedule = beat["command"][beat["command"].index("--schedule") + 1]
    assert beat["healthcheck"]["test"][1:] == [*PROBE, "--beat-schedule", schedule]
    assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["intake"]["healthcheck"]["test"])


def unit(name: str) -> str:
    return (SYSTEMD / name).read_text()


@pytest.mark.parametrize(("name", "command"), [("genesys-closer-worker.service", "worker"),
                                               ("genesys-closer-beat.service", "beat")])
def test_systemd_units_always_restart_the_readme_command(name: str, command: str) -> None:
    text = unit(name)
    assert re.search(r"^Restart=always$", text, re.MULTILINE)
    assert re.search(r"^RestartPreventExitStatus=78$", text, re.MULTILINE)  # invalid settings: restarting cannot help
    assert f"bin/celery -A genesys_closer.worker.app {command} " in text


def test_systemd_liveness_timer_restarts_a_worker_that_stopped_consuming() -> None:
    liveness = unit("genesys-closer-worker-liveness.service")
    assert "OnFailure=genesys-closer-worker-restart.service" in liveness
    assert "-m genesys_closer.worker.ops.health" in liveness and "--broker-down-ok" in liveness
    restart = unit("genesys-closer-worker-restart.service")
    assert "ExecStart=/bin/systemctl restart genesys-closer-worker.service" in restart
    assert "OnUnitInactiveSec=" in unit("genesys-closer-worker-liveness.timer")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_units_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` with the paths pointed at this virtualenv (the units name /opt/genesys-closer)."""
    venv_bin = str(Path(sys.executable).parent)
    (tmp_path / "env").write_text("")
    for path in SYSTEMD.iterdir():
        text = path.read_text().replace("/opt/genesys-closer/bin", venv_bin)
        (tmp_path / path.name).write_text(text.replace("/etc/genesys-closer/env", str(tmp_path / "env")))
    units = sorted(str(p) for p in tmp_path.iterdir() if p.suffix in {".service", ".timer"})
    verified = subprocess.run(["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True,
                              timeout=60, check=False)
    assert verified.returncode == 0 and "genesys-closer" not in verified.stderr, verified.stderr


def deployments() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in load_yaml(path.read_text()):
            if document and document["kind"] == "Deployment":
                found[document["metadata"]["labels"]["app.kubernetes.io/component"]] = document
    return found


@needs_compose
def test_kubernetes_probes() -> None:
    found = deployments()
    assert set(found) == {"worker", "beat", "flower", "intake"}
    for name, deployment in found.items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert deployment["spec"]["template"]["spec"].get("restartPolicy", "Always") == "Always", name
        assert container["livenessProbe"] and container["readinessProbe"], name
    worker = found["worker"]["spec"]["template"]["spec"]
    [container] = worker["containers"]
    assert container["command"] == ["celery", "-A", "genesys_closer.worker.app", "worker", "--loglevel=INFO"]
    assert container["livenessProbe"]["exec"]["command"][:3] == PROBE
    assert "--broker-down-ok" in container["livenessProbe"]["exec"]["command"]
    assert "--broker-down-ok" not in container["readinessProbe"]["exec"]["command"]
    assert worker["terminationGracePeriodSeconds"] > 60  # running closes finish (TASK_TIME_LIMIT_SECONDS)
    beat = found["beat"]
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"
    [container] = beat["spec"]["template"]["spec"]["containers"]
    schedule = container["command"][container["command"].index("--schedule") + 1]
    assert container["livenessProbe"]["exec"]["command"] == [*PROBE, "--beat-schedule", schedule]
    [container] = found["intake"]["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_flower_lists_each_tasks_state_result_and_kwargs_everywhere() -> None:
    """Compose, Kubernetes and the local stack (demo, tests) start Flower with the same task list: a close's state,
    its result (the outcome record, or the batched read it waits for) and its kwargs (batch id, options, org)."""
    from genesys_closer.emulator.stack import FLOWER_TASK_COLUMNS

    assert {"state", "result", "kwargs"} <= set(FLOWER_TASK_COLUMNS.split(","))
    for shipped in (ROOT / "docker-compose.yml", KUBERNETES / "flower.yaml"):
        assert f'"--tasks_columns={FLOWER_TASK_COLUMNS}"' in shipped.read_text(), shipped
