"""Several Genesys Cloud orgs in one deployment: org names, and the orgs file (``ORGS_FILE``, TOML).

Today's single-org variables (``GENESYS_CLIENT_ID``, ``GENESYS_CLIENT_SECRET``, ``GENESYS_ENVIRONMENT``, ...) are
the org ``default``: a deployment without ``ORGS_FILE`` is that one org, unchanged. The orgs file adds named orgs::

    [orgs.eu-prod]
    region = "eu-west-1"                  # or api_url (and login_url): the emulator, a proxy
    client_id = "0b3c..."
    client_secret_env = "EU_PROD_CLIENT_SECRET"   # the NAME of an environment variable: never the secret itself
    rate_limit_per_minute = 300
    read_timeout_seconds = 30             # optional: this org's own timeouts (else GENESYS_READ_TIMEOUT_SECONDS, ...)
    close_policy = "fail"
    close_allowed_policies = ["fail", "participants"]
    wrapup_code = "7fb334b0-..."

    [orgs.eu-prod.sweep]
    schedule_seconds = 900
    min_age_minutes = 120
    idle_minutes = 60
    queue_ids = ["..."]

Each org becomes one ``WorkerSettings``: the process's settings (timeouts, retries, batched checks, ...) with the
org's own values in place. The file is read and validated once; every problem is one line naming the org and the
field (``ConfigError``).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from genesys_closer.config.errors import ConfigError

DEFAULT_ORG = "default"
ORG_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# A variable name shown in an error: upper case, as environment variables are named; anything else may be a secret
# pasted into client_secret_env by mistake, and errors go to logs.
SHOWN_ENV_NAME_PATTERN = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
MAX_ORGS = 1000
MAX_FILE_BYTES = 1024 * 1024

# The orgs file's fields and the setting each one sets (``WorkerSettings`` field names).
ORG_FIELDS: dict[str, str] = {
    "region": "genesys_environment",
    "api_url": "genesys_api_url",
    "login_url": "genesys_login_url",
    "client_id": "genesys_client_id",
    "rate_limit_per_minute": "genesys_rate_limit_per_minute",
    "close_policy": "close_policy",
    "close_allowed_policies": "close_allowed_policies",
    "wrapup_code": "close_wrapup_code",
    "wrapup_notes": "close_wrapup_notes",
}
# Fields an org may set for itself that otherwise take the process's value (not ORG_SCOPED): a slow or far region's
# own timeouts.
TUNING_FIELDS: dict[str, str] = {
    "connect_timeout_seconds": "genesys_connect_timeout_seconds",
    "read_timeout_seconds": "genesys_read_timeout_seconds",
}
SWEEP_FIELDS: dict[str, str] = {
    "schedule_seconds": "sweep_schedule_seconds",
    "min_age_minutes": "sweep_min_age_minutes",
    "idle_minutes": "sweep_idle_minutes",
    "queue_ids": "sweep_queue_ids",
    "skip_connected_agent": "sweep_skip_connected_agent",
    "max_count": "sweep_max_count",
    "lookback_days": "sweep_lookback_days",
    "interval_days": "sweep_interval_days",
    "include_parked": "sweep_include_parked",
}
SECRET_FIELD = "client_secret_env"  # noqa: S105 - the name of the field that names the variable
# The settings that belong to an org: a file's org takes them from its entry or their defaults, never from the
# default org's variables (another org's wrap-up code, policy or API host must not leak into it). Every other
# setting (timeouts, retries, batched checks, ...) is the process's and applies to every org.
ORG_SCOPED = (*ORG_FIELDS.values(), *SWEEP_FIELDS.values(), "genesys_client_secret")


def is_org_name(value: object) -> bool:
    return isinstance(value, str) and ORG_NAME_PATTERN.fullmatch(value) is not None


def check_org_name(value: object) -> str:
    """``value`` as an org name, or ValueError (shown bounded: it may come from a message)."""
    if value is None:
        return DEFAULT_ORG
    if not is_org_name(value):
        raise ValueError(f"an org name is 1 to 40 characters of a-z, 0-9 and '-' (not starting with '-'); "
                         f"got {repr(value)[:60]}")
    return str(value)


def read_orgs_file(path: str) -> dict[str, dict[str, Any]]:
    """The orgs file's ``[orgs.NAME]`` tables, checked for shape (names, known fields, no secrets); values are
    checked when each org's settings are built (``org_settings``)."""
    where = f"ORGS_FILE {path!r}"
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"invalid configuration: {where}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"invalid configuration: {where}: larger than {MAX_FILE_BYTES} bytes")
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"invalid configuration: {where}: not TOML ({str(exc)[:200]})") from None
    stray = sorted(set(document) - {"orgs"})
    if stray:
        raise ConfigError(f"invalid configuration: {where}: unknown table {stray[0]!r} (only [orgs.NAME] tables)")
    orgs = document.get("orgs", {})
    if not isinstance(orgs, dict) or not orgs:
        raise ConfigError(f"invalid configuration: {where}: no org (add an [orgs.NAME] table)")
    if len(orgs) > MAX_ORGS:
        raise ConfigError(f"invalid configuration: {where}: more than {MAX_ORGS} orgs")
    for name, entry in orgs.items():
        if not is_org_name(name):
            raise ConfigError(f"invalid configuration: {where}: org {name[:60]!r}: the name must match "
                              f"{ORG_NAME_PATTERN.pattern}")
        if name == DEFAULT_ORG:
            raise ConfigError(f"invalid configuration: {where}: org 'default' is the GENESYS_* variables' org; give "
                              "the file's orgs other names")
        if not isinstance(entry, dict):
            raise ConfigError(f"invalid configuration: {where}: org {name!r}: must be a table")
        _check_fields(where, name, entry)
    return orgs


def _check_fields(where: str, name: str, entry: Mapping[str, Any]) -> None:
    for field in entry:
        if field == "sweep":
            sweep = entry["sweep"]
            if not isinstance(sweep, dict):
                raise ConfigError(f"invalid configuration: {where}: org {name!r}: sweep: must be a table")
            unknown = sorted(set(sweep) - set(SWEEP_FIELDS))
            if unknown:
                raise ConfigError(f"invalid configuration: {where}: org {name!r}: sweep.{unknown[0]}: unknown field "
                                  f"(known: {', '.join(SWEEP_FIELDS)})")
        elif field in ("client_secret", "secret"):
            raise ConfigError(f"invalid configuration: {where}: org {name!r}: {field}: secrets never go in the file; "
                              f"set {SECRET_FIELD} to the name of an environment variable holding it")
        elif field not in ORG_FIELDS and field not in TUNING_FIELDS and field != SECRET_FIELD:
            raise ConfigError(f"invalid configuration: {where}: org {name!r}: {field}: unknown field "
                              f"(known: {', '.join([*ORG_FIELDS, *TUNING_FIELDS, SECRET_FIELD, 'sweep'])})")
    for required in ("client_id", SECRET_FIELD):
        if required not in entry:
            raise ConfigError(f"invalid configuration: {where}: org {name!r}: {required}: required")
    if not isinstance(entry["client_id"], str) or not entry["client_id"].strip():  # else the worker's refusal would
        raise ConfigError(f"invalid configuration: {where}: org {name!r}: client_id: must be the OAuth client's id "
                          "(a non-empty string)")  # name GENESYS_CLIENT_ID, the default org's variable


def org_overrides(where: str, name: str, entry: Mapping[str, Any], environ: Mapping[str, str] | None = None, *,
                  need_secret: bool = True) -> dict[str, Any]:
    """The settings an org's entry sets (``WorkerSettings`` field names), its secret read from the environment.
    Without ``need_secret`` (Flower, which only needs the sweep schedules) a missing secret is left unset."""
    environ = os.environ if environ is None else environ
    overrides: dict[str, Any] = {}
    for field, setting in (ORG_FIELDS | TUNING_FIELDS).items():
        if field in entry:
            overrides[setting] = _joined(entry[field])
    for field, setting in SWEEP_FIELDS.items():
        if field in entry.get("sweep", {}):
            overrides[setting] = _joined(entry["sweep"][field])
    variable = entry[SECRET_FIELD]
    if not isinstance(variable, str) or not ENV_NAME_PATTERN.fullmatch(variable):  # never echoed: it may be the secret
        raise ConfigError(f"invalid configuration: {where}: org {name!r}: {SECRET_FIELD}: must be the name of an "
                          f"environment variable (letters, digits, '_'; the value is not shown: if it is the "
                          f"secret itself, move it to a variable and rotate it)")
    secret = environ.get(variable, "")
    if not secret.strip() and not need_secret:
        return overrides
    if not secret.strip():
        shown = variable if SHOWN_ENV_NAME_PATTERN.fullmatch(variable) else (
            f"it names ({len(variable)} characters, not shown: an environment variable's name is upper case, so "
            "this may be the secret itself; if so, rotate it)")
        raise ConfigError(f"invalid configuration: {where}: org {name!r}: {SECRET_FIELD}: the environment variable "
                          f"{shown} is not set")
    overrides["genesys_client_secret"] = secret
    return overrides


def _joined(value: Any) -> Any:
    """A list value (queue ids, allowed policies) as the comma-separated string the settings take."""
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return value


def field_of(setting: str) -> str:
    """The orgs file's name for a ``WorkerSettings`` field (for error messages)."""
    for field, name in (ORG_FIELDS | TUNING_FIELDS).items():
        if name == setting:
            return field
    for field, name in SWEEP_FIELDS.items():
        if name == setting:
            return f"sweep.{field}"
    return SECRET_FIELD if setting == "genesys_client_secret" else setting.upper()


def describe_org_error(where: str, name: str, error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        location = [str(part) for part in item.get("loc", ())]
        field = field_of(location[0]) if location else "configuration"
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{field}: {message}")
    return f"invalid configuration: {where}: org {name!r}: " + "; ".join(problems)
