"""The emulator's state: orgs, their OAuth clients and tokens, conversations, per-token rate windows, faults and
statistics.

Several Genesys orgs live in one emulator, as several orgs answer on one region's hosts. Each ``Org`` has its own
OAuth clients, conversations, rate limit per token and the faults an org can suffer on its own (429 bursts and
storms, 5xx); a token is valid only in the org of the client it was issued to. The org ``default`` is the
single-org emulator of before: its client comes from ``EmulatorConfig.client_id``, its limit is
``EmulatorConfig.rate_limit_per_minute``, its faults are ``EmulatorState.faults``, and what is done without naming
an org is done in it. Faults of the connection (drops, unavailability, latency) belong to the whole emulator.

All mutation happens under one lock; the HTTP layer (``server.py``) only parses and renders.
"""

from __future__ import annotations

import copy
import math
import random
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from genesys_closer.emulator.model import CLOSED_STATES, WEB_MESSAGING, Conversation, build_conversation

ALL_PERMISSIONS = frozenset({
    "conversation:communication:disconnect",
    "conversation:communication:view",
    "conversation:participant:wrapup",
    "analytics:conversationDetail:view",
})
RATE_WINDOW_SECONDS = 60.0
CONFIG_FAULTS = (  # EmulatorConfig fields that POST /__emulator__/faults may change at run time
    "rate_limit_per_minute", "consistency_delay_ms", "restricted_status", "participant_type_on", "reclose_status",
    "acw_after_patch", "wrapup_codes", "flow_purpose", "paging_cap", "token_rate_limit_per_minute",
    "analytics_lag_ms", "analytics_max_ids", "analytics_message_type", "analytics_conversation_end",
    "analytics_stuck_ended",
)
REQUEST_LOG_LIMIT = 2_000_000
STUCK_ENDED_MODES = ("off", "always", "after_patch")
DEFAULT_ORG = "default"
ORG_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
# Faults one org suffers on its own (POST /__emulator__/faults with "org"); the rest belong to the whole emulator.
ORG_FAULTS = frozenset({"burst_429", "burst_429_retry_after", "storm_429_seconds", "storm_429_retry_after",
                        "storm_429_after_patches", "error_rate", "rate_limit_per_minute"})


@dataclass
class Faults:
    """Fault injection, settable at start (CLI) and at run time (``POST /__emulator__/faults``)."""

    latency_ms: float = 0.0
    spike_rate: float = 0.0
    spike_ms: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    burst_429: int = 0
    burst_429_retry_after: int | None = 5
    unavailable_until: float = 0.0
    storm_429_until: float = 0.0
    storm_429_retry_after: int | None = None  # a storm's Retry-After (None: the seconds the storm has left)
    storm_429_after_patches: int = 0  # > 0: the storm set with it begins when this many more PATCHes were answered
    storm_429_deferred_seconds: float = 0.0  # the length of that storm, until it begins

    def update(self, changes: dict[str, Any], now: float) -> None:
        for key, value in changes.items():
            if key == "unavailable_seconds":
                self.unavailable_until = now + float(value)
            elif key == "storm_429_seconds":
                if int(changes.get("storm_429_after_patches") or 0) > 0:
                    self.storm_429_deferred_seconds = float(value)
                else:
                    self.storm_429_until = now + float(value)
            elif key in CONFIG_FAULTS:
                continue
            elif key in self.__dataclass_fields__:
                current = getattr(self, key)
                if value is None:
                    setattr(self, key, None)
                else:
                    setattr(self, key, type(current)(value) if current is not None else int(value))
            else:
                raise ValueError(f"unknown fault setting {key!r}")

    def patch_answered(self, now: float) -> None:
        """A conversation PATCH was answered: a storm waiting for it may begin."""
        if self.storm_429_after_patches > 0:
            self.storm_429_after_patches -= 1
            if self.storm_429_after_patches == 0:
                self.storm_429_until = now + self.storm_429_deferred_seconds


@dataclass(frozen=True)
class OrgSpec:
    """One more org: its name, its OAuth client, its limit per token (None: the default org's)."""

    name: str
    client_id: str
    client_secret: str
    rate_limit_per_minute: int | None = None
    denied_permissions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not ORG_NAME.match(self.name):
            raise ValueError(f"org name {self.name!r} must match {ORG_NAME.pattern}")
        if not self.client_id or not self.client_secret:
            raise ValueError(f"org {self.name}: client_id and client_secret are required")
        if self.rate_limit_per_minute is not None and self.rate_limit_per_minute < 1:
            raise ValueError(f"org {self.name}: rate_limit_per_minute must be at least 1")


@dataclass
class EmulatorConfig:
    rate_limit_per_minute: int = 300
    consistency_delay_ms: float = 300.0
    client_id: str = "demo-client"
    client_secret: str = "demo-secret"  # noqa: S105 - the emulator's documented demo credential
    token_ttl_seconds: int = 86_400
    seed: int | None = None
    denied_permissions: tuple[str, ...] = ()
    max_page_size: int = 100
    max_interval_days: int = 31
    faults: Faults = field(default_factory=Faults)
    # Where public evidence leaves Genesys' answer open, each plausible answer is an option (docs/emulator.md):
    restricted_status: int = 403            # a conversation in a division the client is not granted: 403 or 404
    participant_type_on: str = "customer"   # which participants carry the message type: customer | all
    reclose_status: int = 409               # PATCH of an already closed conversation: 409 | 400 | 404 | 200
    acw_after_patch: bool = True            # agents are left in after-call work by the PATCH (else a system wrap-up)
    wrapup_codes: tuple[str, ...] = ()      # valid wrap-up codes; empty: any code is accepted
    flow_purpose: str = "workflow"          # purpose of the flow/bot participant: workflow | ivr
    paging_cap: int = 100_000               # details query: pageNumber x pageSize may not exceed this
    token_rate_limit_per_minute: int = 0    # POST /oauth/token per client per minute (0: unlimited)
    analytics_lag_ms: float = 0.0           # analytics shows reality this late (the command line's default: 2000)
    analytics_max_ids: int = 100            # ids per GET /api/v2/analytics/conversations/details (undocumented)
    # How far analytics' word may stray from the live conversation (docs/emulator.md, "Analytics variants"):
    analytics_message_type: bool = True     # sessions carry messageType (optional in the SDK's AnalyticsSession)
    analytics_conversation_end: bool = True  # ended rows carry conversationEnd (else only every segment has ended)
    analytics_stuck_ended: str = "off"      # stuck conversations shown ended while live is open: off|always|after_patch
    orgs: tuple[OrgSpec, ...] = ()          # more orgs beside ``default`` (whose client is client_id above)

    def __post_init__(self) -> None:
        checks: dict[str, tuple[object, tuple[object, ...]]] = {
            "restricted_status": (self.restricted_status, (403, 404)),
            "participant_type_on": (self.participant_type_on, ("customer", "all")),
            "reclose_status": (self.reclose_status, (409, 400, 404, 200)),
            "flow_purpose": (self.flow_purpose, ("workflow", "ivr")),
            "analytics_stuck_ended": (self.analytics_stuck_ended, STUCK_ENDED_MODES),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")
        names = [DEFAULT_ORG, *(spec.name for spec in self.orgs)]
        clients = [self.client_id, *(spec.client_id for spec in self.orgs)]
        for label, values in (("org name", names), ("client id", clients)):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"{label} {repeated[0]!r} is given twice (a client belongs to one org)")


@dataclass
class OAuthClient:
    client_id: str
    secret: str
    permissions: frozenset[str]
    org: str = DEFAULT_ORG


@dataclass
class Token:
    client_id: str
    expires_at: float
    window_start: float = 0.0
    window_count: int = 0
    org: str = DEFAULT_ORG


@dataclass
class Org:
    """One Genesys org: its conversations (ids unique within the org only), its limit per token (None: the
    configuration's, for ``default``), the faults it suffers on its own and its PATCH counts."""

    name: str
    conversations: dict[str, Conversation] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    rate_limit_per_minute: int | None = None
    configured_rate_limit: int | None = None  # as declared (a fault reset goes back to it)
    patches: Counter[str] = field(default_factory=Counter)
    requests_total: int = 0


class EmulatorState:
    """Everything the emulator knows. Thread-safe."""

    def __init__(self, config: EmulatorConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        """``clock``: epoch seconds now (tests pass one they advance, instead of sleeping for time to pass)."""
        self.clock = clock
        self.config = config or EmulatorConfig()
        self.faults = self.config.faults
        self.lock = threading.Lock()
        self.rng = random.Random(self.config.seed)
        self.clients: dict[str, OAuthClient] = {}
        self.tokens: dict[str, Token] = {}
        self.orgs: dict[str, Org] = {DEFAULT_ORG: Org(DEFAULT_ORG, faults=self.faults)}
        self.conversations: dict[str, Conversation] = self.orgs[DEFAULT_ORG].conversations  # the default org's
        self.token_windows: dict[str, tuple[float, int]] = {}
        self.add_client(
            self.config.client_id,
            self.config.client_secret,
            ALL_PERMISSIONS - set(self.config.denied_permissions),
        )
        for spec in self.config.orgs:
            self.add_org(spec)
        self.reset_stats()

    # -- orgs --------------------------------------------------------------------------------------------------
    def add_org(self, spec: OrgSpec) -> Org:
        """A new org with its OAuth client; refused when the name or the client id is taken."""
        if spec.name in self.orgs:
            raise ValueError(f"org {spec.name!r} exists already")
        if spec.client_id in self.clients:
            raise ValueError(f"client {spec.client_id!r} belongs to org {self.clients[spec.client_id].org!r}")
        org = self.orgs[spec.name] = Org(spec.name, rate_limit_per_minute=spec.rate_limit_per_minute,
                                         configured_rate_limit=spec.rate_limit_per_minute)
        self.add_client(spec.client_id, spec.client_secret, ALL_PERMISSIONS - set(spec.denied_permissions),
                        org=spec.name)
        return org

    def org(self, name: str | None) -> Org:
        """The org called ``name`` (None: ``default``); ValueError for an unknown one."""
        org = self.orgs.get(name or DEFAULT_ORG)
        if org is None:
            raise ValueError(f"unknown org {name!r}; orgs: {', '.join(self.orgs)}")
        return org

    def rate_limit_of(self, org: Org) -> int:
        """Requests per minute per token in ``org``."""
        return org.rate_limit_per_minute or self.config.rate_limit_per_minute

    # -- statistics ---------------------------------------------------------------------------------------------
    def reset_stats(self) -> None:
        self.requests_total = 0
        self.token_requests = 0
        self.connections_dropped = 0
        self.responses_by_status: Counter[str] = Counter()
        self.requests_by_route: Counter[str] = Counter()
        for org in self.orgs.values():
            org.patches.clear()
            org.requests_total = 0
        self.patches_by_conversation: Counter[str] = self.orgs[DEFAULT_ORG].patches  # the default org's
        self.request_log: list[tuple[float, str, str, int, str | None, str | None, str | None]] = []

    def record(self, method: str, route: str, status: int, conversation_id: str | None,
               client_id: str | None, org: str | None = None) -> None:
        """Count one Genesys API or OAuth request (admin calls are never recorded). ``org``: the org of the token
        (or of the client asking for one); None when the request named no known client or token."""
        self.requests_total += 1
        self.requests_by_route[f"{method} {route}"] += 1
        if org in self.orgs:
            self.orgs[org].requests_total += 1
        if status == 0:
            self.connections_dropped += 1
        else:
            self.responses_by_status[str(status)] += 1
        if len(self.request_log) < REQUEST_LOG_LIMIT:
            self.request_log.append((self.clock(), method, route, status, conversation_id, client_id, org))

    def org_stats(self, org: Org, now: float) -> dict[str, Any]:
        """One org's counts: requests, web messaging conversations open and closed (as a client reads them),
        PATCHes, active tokens, its limit."""
        open_count = closed_count = 0
        for conversation in org.conversations.values():
            if conversation.message_type != WEB_MESSAGING:
                continue
            visible = conversation.visible_participants(now)
            if all(p.state in CLOSED_STATES for p in visible):
                closed_count += 1
            else:
                open_count += 1
        return {
            "requests_total": org.requests_total,
            "conversations_open": open_count,
            "conversations_closed": closed_count,
            "conversations_total": len(org.conversations),
            "conversation_patches": sum(org.patches.values()),
            "duplicate_conversation_patches": sum(n - 1 for n in org.patches.values() if n > 1),
            "tokens_active": sum(1 for t in self.tokens.values() if t.expires_at > now and t.org == org.name),
            "rate_limit_per_minute": self.rate_limit_of(org),
            "clients": sorted(c.client_id for c in self.clients.values() if c.org == org.name),
        }

    def stats(self) -> dict[str, Any]:
        """Totals over every org (for a single-org emulator: its own), and each org's counts under ``orgs``."""
        now = self.clock()
        per_org = {name: self.org_stats(org, now) for name, org in self.orgs.items()}
        total = {key: sum(view[key] for view in per_org.values()) for key in (
            "conversations_open", "conversations_closed", "conversations_total", "conversation_patches",
            "duplicate_conversation_patches", "tokens_active")}
        return {
            "requests_total": self.requests_total,
            "responses_by_status": dict(self.responses_by_status),
            "requests_by_route": dict(self.requests_by_route),
            "token_requests": self.token_requests,
            "connections_dropped": self.connections_dropped,
            **total,
            "rate_limit_per_minute": self.config.rate_limit_per_minute,
            "consistency_delay_ms": self.config.consistency_delay_ms,
            "faults": self.faults_view(),
            "orgs": per_org,
        }

    def faults_view(self, org_name: str | None = None) -> dict[str, Any]:
        """The faults and configurable answers; with ``org_name`` (not ``default``), what that org suffers on its
        own."""
        if org_name not in (None, DEFAULT_ORG):
            org = self.org(org_name)
            own = asdict(org.faults)
            return {"org": org.name, "burst_429": own["burst_429"],
                    "burst_429_retry_after": own["burst_429_retry_after"], "error_rate": own["error_rate"],
                    "storm_429_seconds": max(0.0, own["storm_429_until"] - self.clock()),
                    "storm_429_retry_after": own["storm_429_retry_after"],
                    "rate_limit_per_minute": self.rate_limit_of(org)}
        view = asdict(self.faults)
        view["unavailable_seconds"] = max(0.0, view.pop("unavailable_until") - self.clock())
        view["storm_429_seconds"] = max(0.0, view.pop("storm_429_until") - self.clock())
        view.update({name: getattr(self.config, name) for name in CONFIG_FAULTS})
        return view

    def set_faults(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Fault injection and the configurable answers (``CONFIG_FAULTS``), each coerced to its field's type. With
        ``org`` in ``changes`` (not ``default``): only that org's own faults (``ORG_FAULTS``) change."""
        changes = dict(changes)
        org_name = changes.pop("org", None)
        if org_name not in (None, DEFAULT_ORG):
            org = self.org(org_name)
            foreign = sorted(set(changes) - ORG_FAULTS)
            if foreign:
                raise ValueError(f"{foreign[0]!r} applies to the whole emulator, not to one org; one org's faults: "
                                 f"{', '.join(sorted(ORG_FAULTS))}")
            if "rate_limit_per_minute" in changes:
                limit = int(changes.pop("rate_limit_per_minute"))
                if limit < 1:
                    raise ValueError("rate_limit_per_minute must be at least 1")
                org.rate_limit_per_minute = limit
            org.faults.update(changes, self.clock())
            return self.faults_view(org.name)
        self.faults.update(changes, self.clock())
        options = {name: type(getattr(self.config, name))(changes[name]) for name in CONFIG_FAULTS if name in changes}
        if options:
            self.config = replace(self.config, **options)  # validated by EmulatorConfig.__post_init__
        return self.faults_view()

    # -- OAuth -------------------------------------------------------------------------------------------------
    def add_client(self, client_id: str, secret: str, permissions: frozenset[str] | set[str],
                   org: str = DEFAULT_ORG) -> None:
        """An OAuth client of ``org`` (a client id re-added keeps no tokens of another org: it is one org's)."""
        self.org(org)
        existing = self.clients.get(client_id)
        if existing is not None and existing.org != org:
            raise ValueError(f"client {client_id!r} belongs to org {existing.org!r}")
        self.clients[client_id] = OAuthClient(client_id, secret, frozenset(permissions), org)

    def issue_token(self, client_id: str) -> tuple[str, int]:
        token = secrets.token_urlsafe(32)
        ttl = self.config.token_ttl_seconds
        self.tokens[token] = Token(client_id=client_id, expires_at=self.clock() + ttl,
                                   org=self.clients[client_id].org)
        return token, ttl

    def revoke_tokens(self, client_id: str | None = None, org: str | None = None) -> int:
        """Revoke the tokens of ``client_id`` (every client's when None), only in ``org`` when given."""
        doomed = [t for t, info in self.tokens.items()
                  if client_id in (None, info.client_id) and org in (None, info.org)]
        for token in doomed:
            del self.tokens[token]
        return len(doomed)

    def rate_check(self, token: Token, now: float) -> tuple[bool, int, int]:
        """Count one request against the token's window: (allowed, count, seconds to reset)."""
        if now >= token.window_start + RATE_WINDOW_SECONDS:
            token.window_start = now
            token.window_count = 0
        token.window_count += 1
        reset = max(1, math.ceil(token.window_start + RATE_WINDOW_SECONDS - now))
        return token.window_count <= self.rate_limit_of(self.org(token.org)), token.window_count, reset

    # -- conversations -----------------------------------------------------------------------------------------
    def create_conversations(self, count: int, kind: str, *, age_seconds: float = 600.0,
                             idle_seconds: float | None = None, queue_id: str | None = None,
                             org: str | None = None, ids: list[str] | None = None) -> list[str]:
        """``count`` new conversations of ``kind`` in ``org`` (None: ``default``). ``ids``: the ids to give them
        (as many as ``count``; an id another org holds may be given again: ids are unique within one org)."""
        now = self.clock()
        held = self.org(org).conversations
        if ids is not None:
            ids = [str(uuid.UUID(str(cid))) for cid in ids]
            if len(ids) != count or len(set(ids)) != count or held.keys() & set(ids):
                raise ValueError("ids: one new id per conversation, none this org holds already")
        created: list[str] = []
        for _ in range(count):
            conversation = build_conversation(kind, now, self.rng, age_seconds=age_seconds,
                                              idle_seconds=idle_seconds, queue_id=queue_id,
                                              flow_purpose=self.config.flow_purpose)
            if ids is not None:
                conversation.id = ids[len(created)]
            # Analytics has known it since it started (a conversation created "now" is unknown for the lag).
            conversation.remember(conversation.start_time)
            held[conversation.id] = conversation
            created.append(conversation.id)
        return created

    def describe(self, conversation: Conversation, org: Org | None = None) -> dict[str, Any]:
        now = self.clock()
        visible = conversation.visible_participants(now)
        org = org or self.orgs[DEFAULT_ORG]
        return {
            "id": conversation.id,
            "org": org.name,
            "kind": conversation.kind,
            "message_type": conversation.message_type,
            "open": not all(p.state in CLOSED_STATES for p in visible),
            "open_internally": not all(p.state in CLOSED_STATES for p in conversation.participants),
            "patches": org.patches.get(conversation.id, 0),
            "participants": [
                {"id": p.id, "purpose": p.purpose, "state": p.state, "wrapup": copy.deepcopy(p.wrapup),
                 "disconnectType": p.disconnect_type}
                for p in conversation.participants
            ],
        }

    def disconnect_all(self, conversation: Conversation, now: float) -> None:
        conversation.before_change(now, self.config.consistency_delay_ms / 1000)
        for p in conversation.participants:
            p.disconnect(now, "peer" if p.purpose == "customer" else "client")
            if not self.config.acw_after_patch and p.in_acw:
                p.apply_wrapup({"code": "ININ-WRAP-UP-TIMEOUT", "name": "System wrap-up", "provisional": False}, now)
        conversation.remember(now)

    def token_allowed(self, client_id: str, now: float) -> tuple[bool, int]:
        """Count one token request of ``client_id``: (allowed, seconds until the window resets)."""
        limit = self.config.token_rate_limit_per_minute
        if limit <= 0:
            return True, 0
        start, count = self.token_windows.get(client_id, (now, 0))
        if now >= start + RATE_WINDOW_SECONDS:
            start, count = now, 0
        self.token_windows[client_id] = (start, count + 1)
        return count + 1 <= limit, max(1, math.ceil(start + RATE_WINDOW_SECONDS - now))

    def teardown(self, conversation: Conversation, now: float) -> None:
        conversation.before_change(now, self.config.consistency_delay_ms / 1000)
        for p in conversation.participants:
            p.disconnect(now, "system")
            if p.wrapup_required and p.wrapup is None:
                p.wrapup = {"code": "ININ-WRAP-UP-TIMEOUT", "name": "System wrap-up", "provisional": False}
        conversation.remember(now)
