"""The documented set of close outcomes and the outcome record every close produces."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from genesys_closer.config.orgs import DEFAULT_ORG

CONFIRMED_BY_READ = "conversation"  # a read of the conversation itself (GET .../messages/{id})
CONFIRMED_BY_ANALYTICS = "analytics"  # a batched analytics read (GET /api/v2/analytics/conversations/details?id=)
CONFIRMED_BY_SAMPLE = "analytics+conversation"  # analytics showed it ended, and its sampled read of it agreed
CONFIRMED_BY_READ_DISTRUSTED = "conversation:analytics-distrusted"  # read because the fleet distrusted analytics
CONFIRMED_BY_READ_DISAGREED = "conversation:analytics-disagreed"  # analytics showed it ended, a read did not


class Outcome(StrEnum):
    CLOSED = "closed"                        # we disconnected it and a read confirmed every participant left
    ALREADY_CLOSED = "already_closed"        # every participant was already disconnected/terminated
    NOT_FOUND = "not_found"                  # 404: no such conversation in this org/region
    NOT_WEB_MESSAGING = "not_web_messaging"  # refused: another channel (sms, whatsapp, open, ...)
    FORBIDDEN = "forbidden"                  # 403 or 401: the OAuth client lacks a permission
    UNCONFIRMED = "unconfirmed"              # disconnect sent, but reads still show a participant connected
    FAILED = "failed"                        # a permanent error or retries exhausted
    INVALID_ID = "invalid_id"                # not a UUID: rejected before any request
    INVALID_REQUEST = "invalid_request"      # the message asked for what this worker refuses (bounds, options)
    CANCELLED = "cancelled"                  # its batch was cancelled before it ran
    NOT_ATTEMPTED = "not_attempted"          # no request made: its batch was stopped or the circuit breaker is open

    @property
    def succeeded(self) -> bool:
        return self in {Outcome.CLOSED, Outcome.ALREADY_CLOSED}


@dataclass
class CloseResult:
    """The outcome record: JSON-safe, never holds a token or secret."""

    conversation_id: str
    outcome: Outcome
    api_calls: float = 0  # API requests this close cost; a batched read counts as its share (1/n of n items)
    attempts: int = 1
    started_at: float = 0.0
    finished_at: float = 0.0
    participant_states: list[dict[str, str]] = field(default_factory=list)
    correlation_ids: list[str] = field(default_factory=list)
    wrapups_applied: int = 0
    wrapups_pending: int = 0  # agents left owing a wrap-up (after-call work) when no CLOSE_WRAPUP_CODE applied one
    confirm_seconds: float | None = None
    action: str | None = None
    confirmed_by: str | None = None  # what showed the outcome: "conversation" (a read of it) or "analytics"
    error: str | None = None
    error_code: str | None = None
    http_status: int | None = None
    batch_id: str | None = None
    org: str = DEFAULT_ORG  # the Genesys org it belongs to (records are kept per org: the store's keys hold it)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        return data

    def stored(self, *, in_batch: bool = False) -> dict[str, Any]:
        """The record as kept in Redis: fields at their defaults are left out (``from_dict`` restores them), times
        are kept to the millisecond, a batch item does not repeat its batch id (its batch holds it), and no record
        repeats its org (it is kept under its org's keys, whose store gives it back)."""
        defaults = {"api_calls": 0, "attempts": 1, "wrapups_applied": 0, "wrapups_pending": 0}
        data = {name: value for name, value in self.as_dict().items()
                if name in {"conversation_id", "outcome"}
                or (value not in (None, [], "") and defaults.get(name, object()) != value)}
        for name in ("started_at", "finished_at"):
            if name in data:
                data[name] = round(data[name], 3)
        if isinstance(data.get("api_calls"), float):
            data["api_calls"] = round(data["api_calls"], 4)
        if in_batch:
            data.pop("batch_id", None)
        data.pop("org", None)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CloseResult:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["outcome"] = Outcome(known["outcome"])
        return cls(**known)


def summarize_participants(conversation: dict[str, Any]) -> list[dict[str, str]]:
    """Purpose and state of each participant, for the outcome record."""
    participants = conversation.get("participants")
    if not isinstance(participants, list):
        return []
    return [{"purpose": str(p.get("purpose", "")), "state": str(p.get("state", ""))}
            for p in participants if isinstance(p, dict)]
