"""``genesys-closer check``: is this OAuth client, in this org and region, ready to close conversations?

Read-only and harmless: it resolves the region, gets a token, reads the allowed request rate from Genesys' headers,
and probes each permission the configured policy needs with a request on a random conversation id that cannot
exist (a granted permission answers 404, a missing one 403, naming it). It never touches a real conversation and
needs the worker's settings (``GENESYS_*``); with the workers' Redis reachable it also shows whether the fleet
trusts analytics confirmations.

What a probe proves is limited by Genesys' permission model: many endpoints accept *any one* of several
permissions (the message PATCH takes ``conversation:communication:disconnect`` or ``conversation:message:park``;
the participant PATCH takes wrap-up, call-record or disconnect). A passing probe then shows only that one of them
is granted, so each row says which permissions the endpoint accepts and the exact one to grant.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from genesys_closer.config.errors import ConfigError
from genesys_closer.config.orgs import DEFAULT_ORG
from genesys_closer.config.redis_keys import keys_for
from genesys_closer.config.settings import ClosePolicy, WorkerSettings
from genesys_closer.shared.rate_limit import RateLimitHeaders
from genesys_closer.shared.redis_connection import connect
from genesys_closer.shared.sweep_filters import SweepFilters
from genesys_closer.worker.checks.analytics_trust import FleetTrust, TrustMode
from genesys_closer.worker.closing.sweep_query import fmt, query_body
from genesys_closer.worker.factory import build_service
from genesys_closer.worker.genesys.client import Reply
from genesys_closer.worker.genesys.errors import GenesysError, TransportError

ROLE_HINT = "add it to a role of the OAuth client (Admin > OAuth > the client > Roles), in every division to close"


@dataclass
class Check:
    name: str
    ok: bool | None  # None: information only, not a condition for closing
    detail: str
    fix: str = ""


def _analytics_probe_body() -> dict[str, object]:
    """The sweep's own details query for the last hour, first page."""
    now = datetime.now(tz=UTC)
    return query_body(f"{fmt(now - timedelta(hours=1))}/{fmt(now)}", SweepFilters(), 1)


@dataclass
class Probe:
    """One permission probe. ``accepts``: the permissions Genesys accepts for the endpoint, any one of them (the
    SDK's documentation); ``grant``: the one to give the OAuth client for what genesys-closer does there."""

    name: str
    accepts: tuple[str, ...]
    grant: str
    method: str
    route: str  # the route template; the probe fills in ids that cannot exist
    body: Callable[[], object] = lambda: None
    note: str = ""

    def path(self, conversation_id: str, participant_id: str) -> str:
        return self.route.format(conversationId=conversation_id, participantId=participant_id)

    @property
    def proves(self) -> str:
        """What an allowed answer shows, and what it cannot."""
        if not self.accepts:
            return "Genesys documents no permission for this call; a pass shows the call is not refused"
        if len(self.accepts) == 1:
            return f"the client holds {self.accepts[0]}"
        return (f"the client holds one of {', '.join(self.accepts)} (Genesys accepts any one), but not which: "
                f"make sure its role has {self.grant}")


MESSAGES = "/api/v2/conversations/messages/{conversationId}"
PARTICIPANT = MESSAGES + "/participants/{participantId}"
DISCONNECT = "conversation:communication:disconnect"
ANALYTICS = ("analytics:conversationDetail:view", "analytics:agentConversationDetail:view")
PARTICIPANT_ANY = ("conversation:participant:wrapup", "conversation:call:record", DISCONNECT)
PROBES = {
    "read": Probe("read a message conversation", (), "none", "GET", MESSAGES,
                  note="the SDK documents GET /api/v2/conversations/messages/{id} as requiring no permission"),
    "disconnect": Probe("disconnect a message conversation", (DISCONNECT, "conversation:message:park"), DISCONNECT,
                        "PATCH", MESSAGES, lambda: {"state": "disconnected"},
                        note="with conversation:message:park alone the probe passes, and whether a real "
                             "disconnect then works is not documented"),
    "analytics": Probe("query conversation details (sweeps)", ANALYTICS, ANALYTICS[0], "POST",
                       "/api/v2/analytics/conversations/details/query", _analytics_probe_body,
                       note="the agent variant may limit rows to the agent's own conversations"),
    "analytics_by_id": Probe("read conversations by id (batched checks of batch items)", ANALYTICS, ANALYTICS[0],
                             "GET", "/api/v2/analytics/conversations/details?id={conversationId}"),
    "participants": Probe("disconnect a participant (policy participants)", PARTICIPANT_ANY, DISCONNECT, "PATCH",
                          PARTICIPANT, lambda: {"state": "disconnected"}),
    "teardown": Probe("tear a conversation down (policy teardown)", (DISCONNECT,), DISCONNECT, "POST",
                      "/api/v2/conversations/{conversationId}/disconnect"),
    "wrapup": Probe("apply a wrap-up code (CLOSE_WRAPUP_CODE)", PARTICIPANT_ANY, "conversation:participant:wrapup",
                    "PATCH", PARTICIPANT, lambda: {"wrapup": {"code": "genesys-closer-check"}}),
}


def needed_probes(settings: WorkerSettings) -> list[str]:
    names = ["read", "disconnect", "analytics"]
    if settings.batched_checks:
        names.append("analytics_by_id")
    if ClosePolicy.PARTICIPANTS in settings.allowed_policies:
        names.append("participants")
    if ClosePolicy.TEARDOWN in settings.allowed_policies:
        names.append("teardown")
    if settings.close_wrapup_code:
        names.append("wrapup")
    return names


def _judge(probe: Probe, reply: Reply) -> Check:
    message = str(reply.body.get("message", "")) if isinstance(reply.body, dict) else ""
    if reply.status in {200, 202, 204, 404}:  # 404: allowed, and the random conversation does not exist
        note = f"; {probe.note}" if probe.note else ""
        return Check(probe.name, True, f"allowed (HTTP {reply.status}): {probe.proves}{note}",
                     "" if len(probe.accepts) <= 1 else f"grant {probe.grant} ({ROLE_HINT})")
    if reply.status == 403:
        return Check(probe.name, False, f"refused (403): {message[:200]}", f"grant {probe.grant}: {ROLE_HINT}")
    if reply.status == 429:
        return Check(probe.name, None, "rate limited while checking (429): run check again in a minute")
    return Check(probe.name, False, f"unexpected HTTP {reply.status}: {message[:200]}",
                 "see the correlation id in Genesys' API audit or contact support")


CREDENTIAL_VARIABLES = "GENESYS_CLIENT_ID / GENESYS_CLIENT_SECRET"
CREDENTIAL_FIELDS = "client_id / the variable client_secret_env names"


def _named(org: str, variable: str, field: str) -> str:
    """How an operator sets one setting of ``org``: its environment variable for ``default``, else its field in the
    orgs file."""
    return variable if org == DEFAULT_ORG else f"{field} of [orgs.{org}] in ORGS_FILE"


def run_checks(settings: WorkerSettings, org: str = DEFAULT_ORG) -> list[Check]:
    """Every check of one org (``settings``: its own), in order; a failed token check stops there (nothing else can
    be tried)."""
    try:
        settings.require_credentials()
    except ConfigError as exc:
        return [Check("credentials", False, str(exc), "set GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET of an OAuth "
                      "client with the Client Credentials grant")]
    checks = [Check("region", None, f"API {settings.api_url}, login {settings.login_url}")]
    service = build_service(settings, org=org)
    try:
        service.tokens.get()
    except TransportError as exc:
        return [*checks, Check("token", False, f"login host unreachable: {exc}",
                               f"check {_named(org, 'GENESYS_ENVIRONMENT', 'region')} (your org's region) and the "
                               "network path to it")]
    except GenesysError as exc:
        return [*checks, Check("token", False, f"the OAuth client was refused: {exc}",
                               f"check {_named(org, CREDENTIAL_VARIABLES, CREDENTIAL_FIELDS)}, and that the client "
                               "uses the Client Credentials grant in this region")]
    checks.append(Check("token", True, "a client-credentials token was issued"))
    fake_conversation, fake_participant = str(uuid.uuid4()), str(uuid.uuid4())
    allowed: int | None = None
    for name in needed_probes(settings):
        probe = PROBES[name]
        try:
            reply = service.client.probe(probe.method, probe.route, probe.path(fake_conversation, fake_participant),
                                         probe.body())
        except GenesysError as exc:
            checks.append(Check(probe.name, False, f"no answer: {exc}", "check the network path to Genesys"))
            continue
        limits = RateLimitHeaders.parse(reply.headers)
        if limits is not None:
            allowed = limits.allowed
        checks.append(_judge(probe, reply))
    if allowed is not None:
        configured = settings.genesys_rate_limit_per_minute
        fits = configured <= allowed
        setting = _named(org, "GENESYS_RATE_LIMIT_PER_MINUTE", "rate_limit_per_minute")
        checks.append(Check("rate limit", fits, f"Genesys allows {allowed} requests/min per token; "
                            f"{setting}={configured}",
                            "" if fits else f"set {setting}={allowed} (workers also slow down to the header on "
                                            "their own)"))
    checks.append(trust_check(settings, org))
    checks.append(Check("divisions", None, "conversations in divisions the client's roles are not granted in end "
                        "forbidden (403 missing.division.permission) or not_found, item by item",
                        "grant the roles in every division whose conversations should be closed"))
    return checks


def trust_check(settings: WorkerSettings, org: str = DEFAULT_ORG) -> Check:
    """Whether the fleet trusts the org's analytics confirmations now (``worker.checks.analytics_trust``), read from
    its Redis."""
    name = "analytics trust (batched confirmations)"
    if not settings.batched_checks:
        return Check(name, None, "batched checks are off (BATCHED_CHECKS=false): every close is confirmed live")
    try:
        state = FleetTrust(connect(settings.redis_url, probe=True), settings.analytics_distrust_seconds,
                           keys=keys_for(org)).state()
    except redis.RedisError as exc:
        return Check(name, None, f"unknown: the fleet's Redis did not answer ({str(exc)[:120]})",
                     "set REDIS_URL to the workers' Redis to see it")
    fix = "" if state.mode is TrustMode.TRUSTED else (
        "nothing to do for correctness: closes are confirmed live meanwhile (more API calls); look for "
        "conversations analytics shows ended while they are open, and see docs/operations.md")
    detail = f"{state.describe(time.time())}; ANALYTICS_VERIFY_SHARE={settings.analytics_verify_share:g}"
    return Check(name, None, detail, fix)


def ready(checks: list[Check]) -> bool:
    """A close can work: no check failed."""
    return all(check.ok is not False for check in checks)
