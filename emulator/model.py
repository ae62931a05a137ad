"""Conversations as Genesys Cloud stores them, and their JSON renderings.

Kinds (``KINDS``) cover the cases the closer must handle: open web messaging with a connected agent, waiting in
queue, bot/flow only, customer left, agent in wrap-up, already disconnected, other message types, a "stuck"
conversation that ignores the conversation-level PATCH (only participant PATCHes or the teardown close it), a
"restricted" one in a division the OAuth client is not granted, and a "parked" one (an agent set it aside with a
resume time).
"""

from __future__ import annotations

import copy
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

WEB_MESSAGING = "webmessaging"
CLOSED_STATES = frozenset({"disconnected", "terminated"})
KINDS = (
    "webmessaging",
    "queued",
    "bot",
    "customer_left",
    "wrapup",
    "disconnected",
    "sms",
    "whatsapp",
    "open",
    "stuck",
    "restricted",
    "parked",
)
RESTRICTED_DIVISION_ID = "4c1d5e6f-0000-4000-8000-0000000d1v00"  # a division no OAuth client is granted
DEFAULT_QUEUE_ID = "6a1c2d3e-0000-4000-8000-00000000a11e"


def iso(epoch: float | None) -> str | None:
    """Genesys timestamp format: ``2026-05-01T10:00:00.000Z``."""
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> float:
    """Parse an ISO-8601 timestamp (``Z`` or offset) to epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Participant:
    id: str
    purpose: str
    state: str
    start_time: float
    connected_time: float | None = None
    end_time: float | None = None
    disconnect_type: str | None = None
    queue_id: str | None = None
    user_id: str | None = None
    wrapup_required: bool = False
    wrapup: dict[str, Any] | None = None
    wrapup_skipped: bool = False
    start_acw_time: float | None = None
    end_acw_time: float | None = None
    park_time: float | None = None
    resume_time: float | None = None
    direction: str = "inbound"
    messages: list[dict[str, Any]] = field(default_factory=list)

    def disconnect(self, now: float, disconnect_type: str) -> None:
        if self.state in CLOSED_STATES:
            return
        self.state = "disconnected"
        self.end_time = now
        self.disconnect_type = disconnect_type
        self.park_time = self.resume_time = None
        if self.wrapup_required and self.wrapup is None and not self.wrapup_skipped:
            self.start_acw_time = now

    def apply_wrapup(self, wrapup: dict[str, Any], now: float) -> None:
        self.wrapup = wrapup
        if self.start_acw_time is not None and self.end_acw_time is None:
            self.end_acw_time = now

    @property
    def in_acw(self) -> bool:
        """Disconnected, owing a wrap-up (after-call work)."""
        return self.start_acw_time is not None and self.end_acw_time is None and self.wrapup is None


@dataclass
class Conversation:
    id: str
    kind: str
    message_type: str
    start_time: float
    queue_id: str
    participants: list[Participant]
    last_message_time: float
    division_id: str = "4c1d5e6f-0000-4000-8000-00000000d1f5"
    ignores_conversation_patch: bool = False
    patched_at: float | None = None  # the first conversation-level PATCH (analytics variant ``after_patch``)
    # Eventual consistency: what readers see until ``stale_until``.
    stale_participants: list[Participant] | None = None
    stale_until: float = 0.0
    # What analytics knew when: (time, participants) after creation and after every change.
    history: list[tuple[float, list[Participant]]] = field(default_factory=list)

    def remember(self, now: float) -> None:
        """Note the participants as they are now, for analytics that lag (``analytics_view``)."""
        self.history.append((now, copy.deepcopy(self.participants)))

    def analytics_view(self, cutoff: float) -> list[Participant] | None:
        """The participants as analytics shows them when it lags to ``cutoff``; None if it does not know the
        conversation yet."""
        known = [participants for moment, participants in self.history if moment <= cutoff]
        return known[-1] if known else None

    @property
    def end_time(self) -> float | None:
        return conversation_end(self.participants)

    def visible_participants(self, now: float) -> list[Participant]:
        if self.stale_participants is not None and now < self.stale_until:
            return self.stale_participants
        return self.participants

    def before_change(self, now: float, delay_seconds: float) -> None:
        """Keep what readers saw before a change visible for ``delay_seconds``."""
        if delay_seconds <= 0:
            self.stale_participants = None
            return
        if self.stale_participants is None or now >= self.stale_until:
            self.stale_participants = copy.deepcopy(self.participants)
        self.stale_until = now + delay_seconds


def conversation_end(participants: list[Participant]) -> float | None:
    """Conversation.endTime: when the last participant left, or None while anyone is still in it."""
    if not participants or any(p.state not in CLOSED_STATES for p in participants):
        return None
    return max(p.end_time or 0.0 for p in participants)


def new_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def build_conversation(
    kind: str,
    now: float,
    rng: random.Random,
    *,
    age_seconds: float = 600.0,
    idle_seconds: float | None = None,
    queue_id: str | None = None,
    flow_purpose: str = "workflow",
) -> Conversation:
    """A conversation of ``kind`` that started ``age_seconds`` ago, last message ``idle_seconds`` ago."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    start = now - age_seconds
    idle = min(idle_seconds if idle_seconds is not None else age_seconds / 2, age_seconds)
    last_message = now - idle
    queue = queue_id or DEFAULT_QUEUE_ID
    message_type = kind if kind in {"sms", "whatsapp", "open"} else WEB_MESSAGING
    customer = Participant(
        id=new_id(rng),
        purpose="customer",
        state="connected",
        start_time=start,
        connected_time=start,
        messages=[
            {"messageId": new_id(rng), "messageStatus": "received", "messageTime": iso(start + 1)},
            {"messageId": new_id(rng), "messageStatus": "received", "messageTime": iso(last_message)},
        ],
    )
    acd = Participant(
        id=new_id(rng), purpose="acd", state="connected", start_time=start + 2, connected_time=start + 2,
        queue_id=queue,
    )
    agent = Participant(
        id=new_id(rng), purpose="agent", state="connected", start_time=start + 5, connected_time=start + 6,
        queue_id=queue, user_id=new_id(rng), wrapup_required=True,
    )
    participants = [customer, acd, agent]
    if kind == "queued":
        participants = [customer, acd]
    elif kind == "bot":
        participants = [customer, Participant(
            id=new_id(rng), purpose=flow_purpose, state="connected", start_time=start + 1, connected_time=start + 1,
        )]
    else:
        acd.disconnect(start + 6, "transfer")
    if kind == "customer_left":
        customer.disconnect(last_message + 1, "client")
    elif kind == "wrapup":
        customer.disconnect(last_message + 1, "client")
        agent.disconnect(last_message + 2, "client")
    elif kind == "disconnected":
        customer.disconnect(last_message + 1, "client")
        agent.disconnect(last_message + 2, "client")
        agent.apply_wrapup({"code": new_id(rng), "name": "Resolved", "durationSeconds": 5}, last_message + 7)
    elif kind == "parked":
        agent.state = "parked"
        agent.park_time = last_message + 1
        agent.resume_time = now + 3600
    return Conversation(
        id=new_id(rng),
        kind=kind,
        message_type=message_type,
        start_time=start,
        queue_id=queue,
        participants=participants,
        last_message_time=last_message,
        ignores_conversation_patch=kind == "stuck",
        division_id=RESTRICTED_DIVISION_ID if kind == "restricted" else "4c1d5e6f-0000-4000-8000-00000000d1f5",
    )


def _prune(document: dict[str, Any]) -> dict[str, Any]:
    """Genesys omits null fields."""
    return {key: value for key, value in document.items() if value is not None}


def _ref(kind: str, ident: str | None) -> dict[str, str] | None:
    return None if ident is None else {"id": ident, "selfUri": f"/api/v2/{kind}/{ident}"}


def render_message_conversation(conversation: Conversation, participants: list[Participant],
                                type_on: str = "customer") -> dict[str, Any]:
    """``MessageConversation``: the body of GET /api/v2/conversations/messages/{conversationId}. ``type_on`` says
    which participants carry the message ``type``: ``customer`` (only the customer) or ``all``."""
    rendered = []
    for p in participants:
        rendered.append(_prune({
            "id": p.id,
            "startTime": iso(p.start_time),
            "connectedTime": iso(p.connected_time),
            "endTime": iso(p.end_time),
            "purpose": p.purpose,
            "state": p.state,
            "direction": p.direction,
            "disconnectType": p.disconnect_type,
            "held": False,
            "wrapupRequired": p.wrapup_required,
            "wrapup": p.wrapup,
            "wrapupSkipped": p.wrapup_skipped if p.wrapup_required else None,
            "startAcwTime": iso(p.start_acw_time),
            "endAcwTime": iso(p.end_acw_time),
            "parkTime": iso(p.park_time),
            "resumeTime": iso(p.resume_time),
            "user": _ref("users", p.user_id),
            "queue": _ref("routing/queues", p.queue_id),
            "attributes": {},
            "provider": "PureCloud Messaging",
            "type": conversation.message_type if type_on == "all" or p.purpose == "customer" else None,
            "messages": p.messages or None,
        }))
    return {
        "id": conversation.id,
        "participants": rendered,
        "otherMediaUris": [],
        "divisions": [{"division": _ref("authorization/divisions", conversation.division_id), "entities": []}],
        "selfUri": f"/api/v2/conversations/messages/{conversation.id}",
    }


def render_conversation(conversation: Conversation, participants: list[Participant]) -> dict[str, Any]:
    """``Conversation``: the body of GET /api/v2/conversations/{conversationId} and of the messages PATCH."""
    rendered = []
    for p in participants:
        message_state = "disconnected" if p.state in CLOSED_STATES else p.state
        rendered.append(_prune({
            "id": p.id,
            "startTime": iso(p.start_time),
            "endTime": iso(p.end_time),
            "connectedTime": iso(p.connected_time),
            "purpose": p.purpose,
            "queueId": p.queue_id,
            "userId": p.user_id,
            "wrapupRequired": p.wrapup_required,
            "wrapupSkipped": p.wrapup_skipped if p.wrapup_required else None,
            "wrapup": p.wrapup,
            "startAcwTime": iso(p.start_acw_time),
            "attributes": {},
            "messages": [_prune({
                "state": message_state,
                "id": p.id,
                "direction": p.direction,
                "disconnectType": p.disconnect_type,
                "connectedTime": iso(p.connected_time),
                "disconnectedTime": iso(p.end_time),
                "provider": "PureCloud Messaging",
                "type": conversation.message_type,
                "messages": p.messages or None,
            })],
        }))
    return _prune({
        "id": conversation.id,
        "startTime": iso(conversation.start_time),
        "endTime": iso(conversation_end(participants)),
        "participants": rendered,
        "recordingState": "none",
        "divisions": [{"division": _ref("authorization/divisions", conversation.division_id), "entities": []}],
        "selfUri": f"/api/v2/conversations/{conversation.id}",
    })


def shown_ended(participants: list[Participant], at: float) -> list[Participant]:
    """The participants as a view that has them all leave at ``at`` (the live conversation is not changed)."""
    ended = copy.deepcopy(participants)
    for p in ended:
        if p.state not in CLOSED_STATES:
            p.state, p.end_time, p.disconnect_type = "disconnected", at, "system"
            p.park_time = p.resume_time = None
    return ended


def render_analytics(conversation: Conversation, participants: list[Participant], *, message_type: bool = True,
                     with_end: bool = True) -> dict[str, Any]:
    """``AnalyticsConversationWithoutAttributes``: one row of the conversation details query. ``message_type``
    False leaves ``messageType`` out of every session and ``with_end`` False leaves ``conversationEnd`` out
    (both optional in the SDK's models)."""
    rows = []
    for p in participants:
        interact_end = p.park_time if p.state == "parked" else p.end_time
        segments = [_prune({
            "segmentStart": iso(p.start_time),
            "segmentEnd": iso(interact_end),
            "segmentType": "interact",
            "queueId": p.queue_id,
            "disconnectType": p.disconnect_type,
            "wrapUpCode": (p.wrapup or {}).get("code") if p.start_acw_time is None else None,
        })]
        if p.state == "parked":
            segments.append(_prune({"segmentStart": iso(p.park_time), "segmentType": "parked",
                                    "queueId": p.queue_id}))
        if p.start_acw_time is not None:  # after-call work: a wrapup segment, open until the wrap-up is given
            segments.append(_prune({"segmentStart": iso(p.start_acw_time), "segmentEnd": iso(p.end_acw_time),
                                    "segmentType": "wrapup", "queueId": p.queue_id,
                                    "wrapUpCode": (p.wrapup or {}).get("code")}))
        rows.append(_prune({
            "participantId": p.id,
            "purpose": p.purpose,
            "userId": p.user_id,
            "sessions": [_prune({
                "sessionId": p.id,
                "mediaType": "message",
                "messageType": conversation.message_type if message_type else None,
                "direction": p.direction,
                "provider": "PureCloud Messaging",
                "segments": segments,
            })],
        }))
    return _prune({
        "conversationId": conversation.id,
        "conversationStart": iso(conversation.start_time),
        "conversationEnd": iso(conversation_end(participants)) if with_end else None,
        "originatingDirection": "inbound",
        "divisionIds": [conversation.division_id],
        "participants": rows,
    })
