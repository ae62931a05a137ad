"""More orgs for one emulator, declared on the command line or in a seed file.

``--org NAME:CLIENT_ID:CLIENT_SECRET[:REQUESTS_PER_MINUTE]`` (repeatable) declares an org with its OAuth client.
``--orgs-file PATH`` reads a TOML seed file, one table per org, which can also seed its conversations::

    [orgs.eu-prod]
    client_id = "eu-client"
    client_secret = "eu-secret"            # or client_secret_env = "EU_PROD_SECRET" (read from the environment)
    rate_limit_per_minute = 300            # per token; the default org's when left out
    deny_permissions = []                  # permissions withheld from its client
    conversations = 100                    # open web messaging conversations to seed
    mix = { sms = 5, queued = 5 }          # more conversations by kind
    age_minutes = 90

The org ``default`` is the single-org emulator's (``--client-id``, ``--conversations``, ``--mix``): it is not
declared here. Every error names the org and the field.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genesys_closer.emulator.model import KINDS
from genesys_closer.emulator.state import DEFAULT_ORG, OrgSpec

ORG_FIELDS = frozenset({"client_id", "client_secret", "client_secret_env", "rate_limit_per_minute",
                        "deny_permissions", "conversations", "mix", "age_minutes"})


class SeedError(ValueError):
    """A malformed org declaration; the message names the org and the field."""


@dataclass(frozen=True)
class OrgSeed:
    """One org to create, and the conversations to seed in it."""

    spec: OrgSpec
    conversations: dict[str, int] = field(default_factory=dict)  # kind -> count
    age_minutes: float = 90.0


def parse_org_flag(text: str) -> OrgSeed:
    """``NAME:CLIENT_ID:CLIENT_SECRET[:REQUESTS_PER_MINUTE]``."""
    parts = text.split(":")
    if len(parts) not in (3, 4) or not all(parts):
        raise SeedError(f"--org {text!r}: use NAME:CLIENT_ID:CLIENT_SECRET[:REQUESTS_PER_MINUTE]")
    rate = None
    if len(parts) == 4:
        if not parts[3].isdigit():
            raise SeedError(f"--org {parts[0]}: requests per minute must be a whole number, got {parts[3]!r}")
        rate = int(parts[3])
    return OrgSeed(_spec(parts[0], {"client_id": parts[1], "client_secret": parts[2],
                                    "rate_limit_per_minute": rate}))


def load_orgs_file(path: Path, environ: Mapping[str, str] = os.environ) -> list[OrgSeed]:
    """Every org of a TOML seed file (see the module's docstring)."""
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SeedError(f"orgs file {path}: {exc}") from None
    orgs = document.get("orgs")
    if not isinstance(orgs, dict) or not orgs or set(document) != {"orgs"}:
        raise SeedError(f"orgs file {path}: expected only [orgs.NAME] tables")
    return [_seed(name, table, environ) for name, table in orgs.items()]


def _seed(name: str, table: object, environ: Mapping[str, str]) -> OrgSeed:
    if not isinstance(table, dict):
        raise SeedError(f"org {name}: expected a table")
    unknown = sorted(set(table) - ORG_FIELDS)
    if unknown:
        raise SeedError(f"org {name}: unknown field {unknown[0]!r}")
    fields = dict(table)
    secret_env = fields.pop("client_secret_env", None)
    if secret_env is not None:
        if "client_secret" in fields:
            raise SeedError(f"org {name}: client_secret and client_secret_env: give one")
        if not isinstance(secret_env, str) or not environ.get(secret_env):
            raise SeedError(f"org {name}: client_secret_env names {secret_env!r}, which is not set")
        fields["client_secret"] = environ[secret_env]
    mix = fields.pop("mix", {})
    if not isinstance(mix, dict) or any(k not in KINDS or not _count(v) for k, v in mix.items()):
        raise SeedError(f"org {name}: mix: expected KIND = COUNT with KIND in {', '.join(KINDS)}")
    conversations = fields.pop("conversations", 0)
    if not _count(conversations):
        raise SeedError(f"org {name}: conversations: expected a count")
    age = fields.pop("age_minutes", 90.0)
    if not isinstance(age, int | float) or isinstance(age, bool) or age < 0:
        raise SeedError(f"org {name}: age_minutes: expected minutes")
    seeded = {"webmessaging": conversations} if conversations else {}
    for kind, count in mix.items():
        seeded[kind] = seeded.get(kind, 0) + count
    return OrgSeed(_spec(name, fields), seeded, float(age))


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _spec(name: str, fields: dict[str, Any]) -> OrgSpec:
    if name == DEFAULT_ORG:
        raise SeedError(f"org {name}: the default org is the emulator's own (--client-id, --conversations)")
    for key in ("client_id", "client_secret"):
        if not isinstance(fields.get(key), str) or not fields[key]:
            raise SeedError(f"org {name}: {key} is required")
    rate = fields.get("rate_limit_per_minute")
    if rate is not None and (not _count(rate) or rate < 1):
        raise SeedError(f"org {name}: rate_limit_per_minute: expected requests per minute, at least 1")
    deny = fields.get("deny_permissions", [])
    if not isinstance(deny, list) or not all(isinstance(p, str) for p in deny):
        raise SeedError(f"org {name}: deny_permissions: expected a list of permission names")
    try:
        return OrgSpec(name, fields["client_id"], fields["client_secret"], rate, tuple(deny))
    except ValueError as exc:
        raise SeedError(str(exc)) from None
