"""The emulator's state: OAuth clients and tokens, conversations, per-token rate windows, faults and statistics.

All mutation happens under one lock; the HTTP layer (``server.py``) only parses and renders.
"""

from __future__ import annotations

import copy
import math
import random
import secrets
import threading
import time
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

    def update(self, changes: dict[str, Any], now: float) -> None:
        for key, value in changes.items():
            if key == "unavailable_seconds":
                self.unavailable_until = now + float(value)
            elif key == "storm_429_seconds":
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


@dataclass
class OAuthClient:
    client_id: str
    secret: str
    permissions: frozenset[str]


@dataclass
class Token:
    client_id: str
    expires_at: float
    window_start: float = 0.0
    window_count: int = 0


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
        self.conversations: dict[str, Conversation] = {}
        self.token_windows: dict[str, tuple[float, int]] = {}
        self.add_client(
            self.config.client_id,
            self.config.client_secret,
            ALL_PERMISSIONS - set(self.config.denied_permissions),
        )
        self.reset_stats()

    # -- statistics ---------------------------------------------------------------------------------------------
    def reset_stats(self) -> None:
        self.requests_total = 0
        self.token_requests = 0
        self.connections_dropped = 0
        self.responses_by_status: Counter[str] = Counter()
        self.requests_by_route: Counter[str] = Counter()
        self.patches_by_conversation: Counter[str] = Counter()
        self.request_log: list[tuple[float, str, str, int, str | None, str | None]] = []

    def record(self, method: str, route: str, status: int, conversation_id: str | None,
               client_id: str | None) -> None:
        """Count one Genesys API or OAuth request (admin calls are never recorded)."""
        self.requests_total += 1
        self.requests_by_route[f"{method} {route}"] += 1
        if status == 0:
            self.connections_dropped += 1
        else:
            self.responses_by_status[str(status)] += 1
        if len(self.request_log) < REQUEST_LOG_LIMIT:
            self.request_log.append((self.clock(), method, route, status, conversation_id, client_id))

    def stats(self) -> dict[str, Any]:
        now = self.clock()
        open_count = closed_count = 0
        for conversation in self.conversations.values():
            if conversation.message_type != WEB_MESSAGING:
                continue
            visible = conversation.visible_participants(now)
            if all(p.state in CLOSED_STATES for p in visible):
                closed_count += 1
            else:
                open_count += 1
        duplicate_patches = sum(n - 1 for n in self.patches_by_conversation.values() if n > 1)
        return {
            "requests_total": self.requests_total,
            "responses_by_status": dict(self.responses_by_status),
            "requests_by_route": dict(self.requests_by_route),
            "token_requests": self.token_requests,
            "connections_dropped": self.connections_dropped,
            "conversations_open": open_count,
            "conversations_closed": closed_count,
            "conversations_total": len(self.conversations),
            "conversation_patches": sum(self.patches_by_conversation.values()),
            "duplicate_conversation_patches": duplicate_patches,
            "tokens_active": sum(1 for t in self.tokens.values() if t.expires_at > now),
            "rate_limit_per_minute": self.config.rate_limit_per_minute,
            "consistency_delay_ms": self.config.consistency_delay_ms,
            "faults": self.faults_view(),
        }

    def faults_view(self) -> dict[str, Any]:
        view = asdict(self.faults)
        view["unavailable_seconds"] = max(0.0, view.pop("unavailable_until") - self.clock())
        view["storm_429_seconds"] = max(0.0, view.pop("storm_429_until") - self.clock())
        view.update({name: getattr(self.config, name) for name in CONFIG_FAULTS})
        return view

    def set_faults(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Fault injection and the configurable answers (``CONFIG_FAULTS``), each coerced to its field's type."""
        self.faults.update(changes, self.clock())
        options = {name: type(getattr(self.config, name))(changes[name]) for name in CONFIG_FAULTS if name in changes}
        if options:
            self.config = replace(self.config, **options)  # validated by EmulatorConfig.__post_init__
        return self.faults_view()

    # -- OAuth -------------------------------------------------------------------------------------------------
    def add_client(self, client_id: str, secret: str, permissions: frozenset[str] | set[str]) -> None:
        self.clients[client_id] = OAuthClient(client_id, secret, frozenset(permissions))

    def issue_token(self, client_id: str) -> tuple[str, int]:
        token = secrets.token_urlsafe(32)
        ttl = self.config.token_ttl_seconds
        self.tokens[token] = Token(client_id=client_id, expires_at=self.clock() + ttl)
        return token, ttl

    def revoke_tokens(self, client_id: str | None = None) -> int:
        doomed = [t for t, info in self.tokens.items() if client_id in (None, info.client_id)]
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
        return token.window_count <= self.config.rate_limit_per_minute, token.window_count, reset

    # -- conversations -----------------------------------------------------------------------------------------
    def create_conversations(self, count: int, kind: str, *, age_seconds: float = 600.0,
                             idle_seconds: float | None = None, queue_id: str | None = None) -> list[str]:
        now = self.clock()
        ids = []
        for _ in range(count):
            conversation = build_conversation(kind, now, self.rng, age_seconds=age_seconds,
                                              idle_seconds=idle_seconds, queue_id=queue_id,
                                              flow_purpose=self.config.flow_purpose)
            # Analytics has known it since it started (a conversation created "now" is unknown for the lag).
            conversation.remember(conversation.start_time)
            self.conversations[conversation.id] = conversation
            ids.append(conversation.id)
        return ids

    def describe(self, conversation: Conversation) -> dict[str, Any]:
        now = self.clock()
        visible = conversation.visible_participants(now)
        return {
            "id": conversation.id,
            "kind": conversation.kind,
            "message_type": conversation.message_type,
            "open": not all(p.state in CLOSED_STATES for p in visible),
            "open_internally": not all(p.state in CLOSED_STATES for p in conversation.participants),
            "patches": self.patches_by_conversation.get(conversation.id, 0),
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
