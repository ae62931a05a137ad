"""``genesys-closer check``: is this OAuth client, in this org and region, ready to close conversations?

Read-only and harmless: it resolves the region, gets a token, reads the allowed request rate from Genesys' headers,
and probes each permission the configured policy needs with a request on a random conversation id that cannot
exist (a granted permission answers 404, a missing one 403, naming it). It never touches a real conversation and
needs the worker's settings (``GENESYS_*``), not Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from genesys_closer.config.errors import ConfigError
from genesys_closer.config.settings import ClosePolicy, WorkerSettings
from genesys_closer.worker.closing.sweep_filters import SweepFilters
from genesys_closer.worker.closing.sweep_query import fmt, query_body
from genesys_closer.worker.factory import build_service
from genesys_closer.worker.genesys.client import Reply
from genesys_closer.worker.genesys.errors import GenesysError, TransportError
from genesys_closer.worker.genesys.http_policy import RateLimitHeaders

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
    name: str
    permission: str
    method: str
    route: str  # the route template; the probe fills in ids that cannot exist
    body: Callable[[], object] = lambda: None

    def path(self, conversation_id: str, participant_id: str) -> str:
        return self.route.format(conversationId=conversation_id, participantId=participant_id)


MESSAGES = "/api/v2/conversations/messages/{conversationId}"
PARTICIPANT = MESSAGES + "/participants/{participantId}"
PROBES = {
    "read": Probe("read a message conversation", "conversation:communication:view (or none: see docs)", "GET",
                  MESSAGES),
    "disconnect": Probe("disconnect a message conversation", "conversation:communication:disconnect", "PATCH",
                        MESSAGES, lambda: {"state": "disconnected"}),
    "analytics": Probe("query conversation details (sweeps)", "analytics:conversationDetail:view", "POST",
                       "/api/v2/analytics/conversations/details/query", _analytics_probe_body),
    "analytics_by_id": Probe("read conversations by id (batched checks of batch items)",
                             "analytics:conversationDetail:view", "GET",
                             "/api/v2/analytics/conversations/details?id={conversationId}"),
    "participants": Probe("disconnect a participant (policy participants)", "conversation:communication:disconnect",
                          "PATCH", PARTICIPANT, lambda: {"state": "disconnected"}),
    "teardown": Probe("tear a conversation down (policy teardown)", "conversation:communication:disconnect", "POST",
                      "/api/v2/conversations/{conversationId}/disconnect"),
    "wrapup": Probe("apply a wrap-up code (CLOSE_WRAPUP_CODE)", "conversation:participant:wrapup", "PATCH",
                    PARTICIPANT, lambda: {"wrapup": {"code": "genesys-closer-check"}}),
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
        return Check(probe.name, True, f"allowed (HTTP {reply.status})")
    if reply.status == 403:
        return Check(probe.name, False, f"refused (403): {message[:200]}", f"{probe.permission}: {ROLE_HINT}")
    if reply.status == 429:
        return Check(probe.name, None, "rate limited while checking (429): run check again in a minute")
    return Check(probe.name, False, f"unexpected HTTP {reply.status}: {message[:200]}",
                 "see the correlation id in Genesys' API audit or contact support")


def run_checks(settings: WorkerSettings) -> list[Check]:
    """Every check, in order; a failed token check stops there (nothing else can be tried)."""
    try:
        settings.require_credentials()
    except ConfigError as exc:
        return [Check("credentials", False, str(exc), "set GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET of an OAuth "
                      "client with the Client Credentials grant")]
    checks = [Check("region", None, f"API {settings.api_url}, login {settings.login_url}")]
    service = build_service(settings)
    try:
        service.tokens.get()
    except TransportError as exc:
        return [*checks, Check("token", False, f"login host unreachable: {exc}",
                               "check GENESYS_ENVIRONMENT (your org's region) and the network path to it")]
    except GenesysError as exc:
        return [*checks, Check("token", False, f"the OAuth client was refused: {exc}",
                               "check GENESYS_CLIENT_ID / GENESYS_CLIENT_SECRET, and that the client uses the Client "
                               "Credentials grant in this region")]
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
        checks.append(Check("rate limit", fits, f"Genesys allows {allowed} requests/min per token; "
                            f"GENESYS_RATE_LIMIT_PER_MINUTE={configured}",
                            "" if fits else f"set GENESYS_RATE_LIMIT_PER_MINUTE={allowed} (workers also slow down "
                                            "to the header on their own)"))
    checks.append(Check("divisions", None, "conversations in divisions the client's roles are not granted in end "
                        "forbidden (403 missing.division.permission) or not_found, item by item",
                        "grant the roles in every division whose conversations should be closed"))
    return checks


def ready(checks: list[Check]) -> bool:
    """A close can work: no check failed."""
    return all(check.ok is not False for check in checks)
