"""`genesys-closer check` against the emulator, as a new user would run it on day one (the real console script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from genesys_closer.emulator import EmulatorConfig, EmulatorServer
from genesys_closer.emulator.admin import EmulatorAdmin

CHECK = [str(Path(sys.executable).with_name("genesys-closer")), "--json", "check"]


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(consistency_delay_ms=50, rate_limit_per_minute=1800)  # an org allowing 1,800/min


def run_check(emulator: EmulatorServer, **env: str) -> tuple[int, dict[str, dict[str, object]]]:
    base = {"PATH": os.environ["PATH"], "GENESYS_CLIENT_ID": "demo-client", "GENESYS_CLIENT_SECRET": "demo-secret",
            "GENESYS_API_URL": emulator.base_url, "GENESYS_LOGIN_URL": emulator.base_url,
            "GENESYS_RATE_LIMIT_PER_MINUTE": "1800"}
    run = subprocess.run(CHECK, env={**base, **env}, capture_output=True, text=True, timeout=120, check=False)
    rows = {row["check"]: row for row in map(json.loads, run.stdout.splitlines())}
    return run.returncode, rows


def test_check_passes_and_makes_no_change(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    [cid] = admin.create(1)
    code, rows = run_check(emulator, CLOSE_POLICY="participants", CLOSE_WRAPUP_CODE="resolved")
    assert code == 0, rows
    assert {name for name, row in rows.items() if row["ok"] is True} >= {
        "token", "read a message conversation", "disconnect a message conversation",
        "query conversation details (sweeps)", "read conversations by id (batched checks of batch items)",
        "disconnect a participant (policy participants)",
        "apply a wrap-up code (CLOSE_WRAPUP_CODE)", "rate limit"}
    assert "teardown" not in " ".join(rows)  # not allowed by the policy: not probed
    assert "allows 1800 requests/min" in str(rows["rate limit"]["detail"])
    assert "org" not in rows["token"]  # a single-org deployment's output is what it was before orgs existed
    assert admin.conversation(cid)["open"] is True and admin.stats()["conversation_patches"] == 0
    text = subprocess.run([*CHECK[:1], "check"], env={"PATH": os.environ["PATH"], "GENESYS_CLIENT_ID": "demo-client",
                          "GENESYS_CLIENT_SECRET": "demo-secret", "GENESYS_API_URL": emulator.base_url,
                          "GENESYS_LOGIN_URL": emulator.base_url, "GENESYS_RATE_LIMIT_PER_MINUTE": "1800"},
                          capture_output=True, text=True, timeout=120, check=False)
    assert text.stdout.splitlines()[-1] == "ready: a close can work" and "org default" not in text.stdout


def test_check_names_a_missing_permission(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    admin.add_client("no-disconnect", "pw", deny=["conversation:communication:disconnect"])
    code, rows = run_check(emulator, GENESYS_CLIENT_ID="no-disconnect", GENESYS_CLIENT_SECRET="pw")
    assert code == 1
    failed = rows["disconnect a message conversation"]
    assert failed["ok"] is False and "conversation:communication:disconnect" in str(failed["fix"])


@pytest.mark.parametrize(("env", "row", "says"), [
    ({"GENESYS_CLIENT_SECRET": "wrong"}, "token", "GENESYS_CLIENT_SECRET"),
    ({"GENESYS_CLIENT_SECRET": ""}, "credentials", "GENESYS_CLIENT_SECRET"),
    ({"GENESYS_RATE_LIMIT_PER_MINUTE": "3000"}, "rate limit", "GENESYS_RATE_LIMIT_PER_MINUTE=1800"),
])
def test_check_fails_naming_the_cause(emulator: EmulatorServer, env: dict[str, str], row: str, says: str) -> None:
    code, rows = run_check(emulator, **env)
    assert code == 1 and rows[row]["ok"] is False
    assert says in str(rows[row]["fix"]) + str(rows[row]["detail"])


def test_check_says_what_an_any_one_of_probe_cannot_prove(emulator: EmulatorServer) -> None:
    """A client holding only conversation:message:park passes the message PATCH probe (Genesys accepts either):
    the row says so and names the permission to grant, and the read probe says no permission is documented."""
    emulator.state.add_client("park-only", "pw", {"conversation:message:park", "analytics:conversationDetail:view"})
    code, rows = run_check(emulator, GENESYS_CLIENT_ID="park-only", GENESYS_CLIENT_SECRET="pw",
                           REDIS_URL="redis://127.0.0.1:1/0")
    disconnect = rows["disconnect a message conversation"]
    assert disconnect["ok"] is True
    assert "conversation:message:park" in str(disconnect["detail"]) and "not which" in str(disconnect["detail"])
    assert "grant conversation:communication:disconnect" in str(disconnect["fix"])
    assert "no permission" in str(rows["read a message conversation"]["detail"])
    trust = rows["analytics trust (batched confirmations)"]
    assert trust["ok"] is None and "unknown" in str(trust["detail"])  # no Redis here: information only
    assert code == 0


def test_check_one_org_or_all(emulator: EmulatorServer, admin: EmulatorAdmin, tmp_path: Path) -> None:
    """With an orgs file: one table per org checked, exit 0 only when every org checked can close. The runs are
    independent (each its own process, environment and token), so they run side by side: each one is mostly a
    Python start-up, which on a loaded machine takes seconds."""
    admin.add_client("weak-client", "weak-secret", deny=["conversation:communication:disconnect"])
    orgs = tmp_path / "orgs.toml"
    orgs.write_text(f'[orgs.weak]\napi_url = "{emulator.base_url}"\nclient_id = "weak-client"\n'
                    'client_secret_env = "WEAK_SECRET"\nrate_limit_per_minute = 1800\n'
                    # an org whose secret this host does not hold: only --all (or --org elsewhere) needs it
                    f'[orgs.elsewhere]\napi_url = "{emulator.base_url}"\nclient_id = "e"\n'
                    'client_secret_env = "ELSEWHERE_SECRET"\n')
    env = {"PATH": os.environ["PATH"], "GENESYS_CLIENT_ID": "demo-client", "GENESYS_CLIENT_SECRET": "demo-secret",
           "GENESYS_API_URL": emulator.base_url, "GENESYS_RATE_LIMIT_PER_MINUTE": "1800", "ORGS_FILE": str(orgs),
           "WEAK_SECRET": "weak-secret"}
    both = {**env, "ELSEWHERE_SECRET": "elsewhere-secret"}  # the emulator does not know this client

    def check(args: tuple[str, ...], environment: dict[str, str] = env,
              command: tuple[str, ...] = tuple(CHECK)) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, *args], env=environment, capture_output=True, text=True, timeout=120,
                              check=False)

    def rows_of(run: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
        return [json.loads(line) for line in run.stdout.splitlines()]

    with ThreadPoolExecutor(max_workers=6) as pool:
        no_secret, everything, default, weak, nope, text = pool.map(lambda call: check(*call), [
            (("--all",),), (("--all",), both), (("--org", "default"),), (("--org", "weak"),), (("--org", "nope"),),
            (("--org", "default", "--org", "weak"), env, (CHECK[0], "check"))])

    assert no_secret.returncode == 2
    assert "org 'elsewhere': client_secret_env: the environment variable ELSEWHERE_SECRET" in no_secret.stderr
    rows = rows_of(everything)
    assert everything.returncode == 1 and {row["org"] for row in rows} == {"default", "weak", "elsewhere"}
    token = next(row for row in rows if row["org"] == "elsewhere" and row["check"] == "token")
    assert token["ok"] is False and "[orgs.elsewhere] in ORGS_FILE" in str(token["fix"])  # not GENESYS_CLIENT_ID
    failed = {(row["org"], row["check"]) for row in rows if row["ok"] is False}
    assert failed == {("weak", "disconnect a message conversation"), ("elsewhere", "token")}
    assert default.returncode == 0 and {row["org"] for row in rows_of(default)} == {"default"}
    assert weak.returncode == 1 and {row["org"] for row in rows_of(weak)} == {"weak"}
    assert nope.returncode == 2 and "unknown org 'nope'" in nope.stderr
    assert "org default" in text.stdout and "org weak" in text.stdout and text.returncode == 1
