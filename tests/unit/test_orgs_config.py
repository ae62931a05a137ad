"""The orgs file, org names, each org's keys, the intake's token grants and each org's beat schedule: pure
parsing and naming, no server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from genesys_closer.config.errors import ConfigError
from genesys_closer.config.orgs import check_org_name
from genesys_closer.config.redis_keys import KEYS, keys_for
from genesys_closer.config.settings import (
    ClosePolicy,
    WorkerSettings,
    load_intake_settings,
    load_org_settings,
    load_worker_settings,
)
from genesys_closer.shared.celery_config import beat_schedule
from genesys_closer.shared.names import SWEEP_TASK_NAME, org_kwargs

GOOD = '''
[orgs.eu-prod]
region = "eu-west-1"
client_id = "eu-client"
client_secret_env = "EU_SECRET"
rate_limit_per_minute = 120
read_timeout_seconds = 40
close_policy = "participants"
close_allowed_policies = ["fail", "participants"]
wrapup_code = "wrap-eu"

[orgs.eu-prod.sweep]
schedule_seconds = 600
min_age_minutes = 90
queue_ids = ["q1", "q2"]

[orgs.us-test]
api_url = "http://127.0.0.1:9999"
client_id = "us-client"
client_secret_env = "US_SECRET"
'''


def orgs_of(tmp_path: Path, text: str, **env: str) -> dict[str, WorkerSettings]:
    path = tmp_path / "orgs.toml"
    path.write_text(text)
    base = load_worker_settings(orgs_file=str(path), genesys_client_id="default-client",
                                genesys_client_secret="default-secret", close_wrapup_code="wrap-default",
                                close_policy="teardown", sweep_schedule_seconds=60, confirm_timeout_seconds=7,
                                genesys_read_timeout_seconds=20)
    return dict(load_org_settings(base, {"EU_SECRET": "eu-secret", "US_SECRET": "us-secret", **env}))


def test_each_org_has_its_own_settings_and_only_the_process_settings_in_common(tmp_path: Path) -> None:
    orgs = orgs_of(tmp_path, GOOD)
    assert list(orgs) == ["default", "eu-prod", "us-test"]
    eu, us, default = orgs["eu-prod"], orgs["us-test"], orgs["default"]
    assert eu.api_url == "https://api.mypurecloud.ie" and eu.login_url == "https://login.mypurecloud.ie"
    assert eu.require_credentials()[0] == "eu-client"
    assert eu.genesys_client_secret.get_secret_value() == "eu-secret"
    assert eu.genesys_rate_limit_per_minute == 120 and eu.close_wrapup_code == "wrap-eu"
    assert eu.allowed_policies == {ClosePolicy.FAIL, ClosePolicy.PARTICIPANTS}
    assert eu.sweep_schedule_seconds == 600 and eu.sweep_filters()["queue_ids"] == ["q1", "q2"]
    # us-test sets none of them: the defaults, never the default org's wrap-up code, policy or sweep
    assert us.api_url == us.login_url == "http://127.0.0.1:9999"
    assert us.close_wrapup_code is None and us.close_policy is ClosePolicy.FAIL
    assert us.sweep_schedule_seconds == 0 and us.genesys_rate_limit_per_minute == 300
    assert eu.confirm_timeout_seconds == us.confirm_timeout_seconds == 7
    # an org's own timeouts (a far or slow region); without them, the process's (not the defaults)
    assert eu.genesys_read_timeout_seconds == 40
    assert us.genesys_read_timeout_seconds == default.genesys_read_timeout_seconds == 20
    assert default.close_wrapup_code == "wrap-default"


def test_without_an_orgs_file_the_deployment_is_the_default_org() -> None:
    base = load_worker_settings(genesys_client_id="c", genesys_client_secret="s")
    assert load_org_settings(base) == {"default": base}


@pytest.mark.parametrize(("text", "env", "says"), [
    ("[orgs.Eu_Prod]\nclient_id='x'\nclient_secret_env='EU_SECRET'", {}, "org 'Eu_Prod': the name must match"),
    ("[orgs.default]\nclient_id='x'\nclient_secret_env='EU_SECRET'", {}, "org 'default' is the GENESYS_"),
    ("[orgs.a]\nclient_id='x'\nclient_secret='hunter2'", {}, "org 'a': client_secret: secrets never go in the file"),
    ("[orgs.a]\nclient_id='x'\nclient_secret_env='EU_SECRET'\nrate='1'", {}, "org 'a': rate: unknown field"),
    ("[orgs.a]\nclient_secret_env='EU_SECRET'", {}, "org 'a': client_id: required"),
    ("[orgs.a]\nclient_id='x'\nclient_secret_env='NOT_SET'", {}, "org 'a': client_secret_env: the environment "
                                                               "variable NOT_SET is not set"),
    ("[orgs.a]\nclient_id=' '\nclient_secret_env='EU_SECRET'", {}, "org 'a': client_id: must be the OAuth"),
    # a secret pasted where the variable's name goes is never shown (errors go to logs)
    ("[orgs.a]\nclient_id='x'\nclient_secret_env='hunter2-Xy9_q'", {}, "org 'a': client_secret_env: must be the "
                                                                       "name of an environment variable"),
    ("[orgs.a]\nclient_id='x'\nclient_secret_env='hunter2Xy9q'", {}, "org 'a': client_secret_env: the environment "
                                                                     "variable it names (11 characters, not shown"),
    ("[orgs.a]\nclient_id='x'\nclient_secret_env='EU_SECRET'\nrate_limit_per_minute=0", {},
     "org 'a': rate_limit_per_minute: Input should be greater than or equal to 1"),
    ("[orgs.a]\nclient_id='x'\nclient_secret_env='EU_SECRET'\nregion='mars-1'", {}, "org 'a': region:"),
    ("[orgs.a]\nclient_id='x'\nclient_secret_env='EU_SECRET'\n[orgs.a.sweep]\nevery=1", {},
     "org 'a': sweep.every: unknown field"),
    ("[orgs.a]\nclient_id='x'\nclient_secret_env='EU_SECRET'\n[orgs.a.sweep]\nlookback_days=200", {},
     "org 'a': sweep.lookback_days:"),
    ("[orgs.a]\nclient_id='x'\nclient_secret_env='EU_SECRET'\nread_timeout_seconds=0", {},
     "org 'a': read_timeout_seconds: Input should be greater than 0"),
    ("[orgs.a\n", {}, "not TOML"),
    ("[other]\n", {}, "unknown table 'other'"),
])
def test_a_bad_orgs_file_is_one_line_naming_the_org_and_field(tmp_path: Path, text: str, env: dict[str, str],
                                                              says: str) -> None:
    with pytest.raises(ConfigError) as error:
        orgs_of(tmp_path, text, **env)
    message = str(error.value)
    assert says in message and "\n" not in message and "hunter2" not in message
    assert message.startswith("invalid configuration: ORGS_FILE ")


def test_org_names_are_checked_and_bounded() -> None:
    assert check_org_name(None) == "default" and check_org_name("eu-prod") == "eu-prod"
    for bad in ("", "-x", "Eu", "a_b", "x" * 41, "{a}", "a:b", 7, ["a"]):
        with pytest.raises(ValueError) as error:
            check_org_name(bad)
        assert len(str(error.value)) < 200


def test_each_org_keys_carry_its_hash_tag_and_default_keeps_the_old_layout() -> None:
    assert keys_for("default") is KEYS and KEYS.outcome("c") == "genesys-closer:outcome:c"
    eu = keys_for("eu-prod")
    assert eu.outcome("c") == "genesys-closer:{eu-prod}:outcome:c" and eu.org == "eu-prod"
    assert eu.batch_feed("b").startswith("genesys-closer:{eu-prod}:") and eu.token("id").startswith(
        "genesys-closer:{eu-prod}:token:")
    assert eu.rate_limit("d", "tat").startswith("genesys-closer:{eu-prod}:")
    assert eu.replication_mark == KEYS.replication_mark  # the deployment's own keys carry no org
    with pytest.raises(ValueError):
        keys_for("../x")


def test_intake_tokens_grant_orgs() -> None:
    plain = load_intake_settings(intake_tokens="a" * 16 + "," + "b" * 16)
    assert plain.token_grants() == {"a" * 16: {"default"}, "b" * 16: {"default"}}
    granted = load_intake_settings(intake_tokens=f"{'a' * 16}:eu-prod,eu-test;{'b' * 16}:us-prod")
    assert granted.token_grants() == {"a" * 16: {"eu-prod", "eu-test"}, "b" * 16: {"us-prod"}}
    for bad, says in ((f"{'a' * 16}:", "must be token:org"), (f"{'a' * 16}:Eu!", "org 1 of the grant is not"),
                      (f"{'a' * 16}:x;{'a' * 16}:y", "granted twice"), ("short:eu", "at least 16"),
                      # a ',' for a ';' puts the next token where an org goes: it is not shown either
                      (f"{'a' * 16}:eu,{'b' * 16}:us", "grant 1: org 2 of the grant is not an org name"),
                      (f"{'a' * 16}:{'B' * 16}", "grant 1: org 1 of the grant")):  # a token holding ':'
        with pytest.raises(ConfigError, match=says) as error:
            load_intake_settings(intake_tokens=bad)
        assert "a" * 16 not in str(error.value) and "b" * 16 not in str(error.value)  # a token is never shown
        assert "B" * 16 not in str(error.value) and "\n" not in str(error.value)


def test_each_org_has_its_sweep_schedule(tmp_path: Path) -> None:
    orgs = orgs_of(tmp_path, GOOD)
    schedule = beat_schedule(orgs["default"], orgs)
    assert set(schedule) == {"redrive-stalled-batches", "idle-sweep", "idle-sweep:eu-prod"}
    eu: dict[str, Any] = schedule["idle-sweep:eu-prod"]
    assert eu["task"] == SWEEP_TASK_NAME and eu["schedule"] == 600.0
    assert eu["kwargs"]["org"] == "eu-prod" and eu["kwargs"]["filters"]["min_age_minutes"] == 90
    default: dict[str, Any] = schedule["idle-sweep"]
    assert "org" not in default["kwargs"]
    assert org_kwargs("default") == {} and org_kwargs("eu-prod") == {"org": "eu-prod"}


def test_log_lines_written_for_an_org_carry_it() -> None:
    import json
    import logging

    from genesys_closer.shared.logging_setup import JsonFormatter, RedactingFilter, Redactor, TextFormatter, org_context

    def line(formatter: logging.Formatter, org: str | None) -> str:
        record = logging.LogRecord("genesys_closer.worker", logging.INFO, __file__, 1, "close finished: %s",
                                   ("closed",), None)
        record.conversation_id = "c1"
        if org is None:
            RedactingFilter(Redactor(["eu-secret-value"])).filter(record)
        else:
            with org_context(org):
                RedactingFilter(Redactor(["eu-secret-value"])).filter(record)
        return formatter.format(record)

    assert json.loads(line(JsonFormatter(), "eu-prod"))["org"] == "eu-prod"
    assert "org" not in json.loads(line(JsonFormatter(), None))
    assert "[org=eu-prod conversation_id=c1]" in line(TextFormatter("%(message)s"), "eu-prod")
    assert line(TextFormatter("%(message)s"), "default").endswith("[conversation_id=c1]")  # single-org logs unchanged


def test_the_schedules_need_no_secrets(tmp_path: Path) -> None:
    """Beat's and Flower's configuration lists every org without its secret; a worker's refuses to start."""
    path = tmp_path / "orgs.toml"
    path.write_text(GOOD)
    base = load_worker_settings(orgs_file=str(path))
    lenient = load_org_settings(base, {}, need_secrets=False)
    assert list(lenient) == ["eu-prod", "us-test"] and lenient["eu-prod"].genesys_client_secret is None
    assert lenient["eu-prod"].sweep_schedule_seconds == 600
    with pytest.raises(ConfigError, match="client_secret_env: the environment variable EU_SECRET is not set"):
        load_org_settings(base, {})


def test_intake_grants_are_checked_against_the_orgs_file_when_it_is_given(tmp_path: Path) -> None:
    path = tmp_path / "orgs.toml"
    path.write_text(GOOD)
    fine = load_intake_settings(intake_tokens=f"{'a' * 16}:eu-prod,default", orgs_file=str(path))
    assert fine.token_grants() == {"a" * 16: {"eu-prod", "default"}}
    with pytest.raises(ConfigError, match="grant 2 names an org ORGS_FILE does not name") as error:
        load_intake_settings(intake_tokens=f"{'b' * 16}:eu-prod;{'a' * 16}:eu-typo", orgs_file=str(path))
    assert "eu-typo" not in str(error.value)  # not shown: a token holding ':' would be split into an "org"
