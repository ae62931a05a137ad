"""Genesys IDs (conversations, participants, queues): validated as canonical UUIDs before any URL is built."""

from __future__ import annotations

import re
import uuid

from genesys_closer.config.errors import CloserError


class InvalidId(CloserError, ValueError):
    """An ID (participant, queue, batch...) that is not in its expected form. Raised before any request."""

    def __init__(self, value: object, reason: str = "not a UUID", what: str = "id") -> None:
        super().__init__(value, reason, what)
        self.value = value
        self.reason = reason
        self.what = what

    def __str__(self) -> str:
        shown = repr(self.value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f"invalid {self.what} {shown}: {self.reason}"


class InvalidConversationId(InvalidId):
    """A conversation ID is not a UUID. Raised before any URL is built."""

    def __init__(self, value: object, reason: str = "not a UUID") -> None:
        super().__init__(value, reason, "conversation id")

    def __reduce__(self) -> tuple[type[InvalidConversationId], tuple[object, str]]:
        return type(self), (self.value, self.reason)


MAX_RAW_LENGTH = 100
_CANONICAL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _problem(value: object) -> tuple[str | None, str]:
    """(canonical text, '') for a valid UUID, else (None, the reason)."""
    if not isinstance(value, str):
        return None, f"expected a string, got {type(value).__name__}"
    if len(value) > MAX_RAW_LENGTH:
        return None, f"longer than {MAX_RAW_LENGTH} characters"
    text = value.strip().lower()
    if not text:
        return None, "empty"
    if not text.isascii() or not _CANONICAL.fullmatch(text):
        return None, "not a UUID (expected 8-4-4-4-12 hexadecimal digits)"
    return str(uuid.UUID(text)), ""


def parse_uuid(value: object, what: str) -> str:
    """The canonical lower-case UUID text of ``value`` or InvalidId naming ``what`` (``participant id``...)."""
    canonical, reason = _problem(value)
    if canonical is None:
        raise InvalidId(value, reason, what)
    return canonical


def parse_conversation_id(value: object) -> str:
    """Return the canonical lower-case UUID text of ``value`` or raise InvalidConversationId.

    Accepts only ASCII hex UUIDs in 8-4-4-4-12 form (surrounding whitespace is ignored, upper case is
    folded). Rejects everything else: ``None``, numbers, empty strings, path separators, URL-encoded text,
    braces/URN forms, Unicode look-alike digits and anything longer than 100 characters.
    """
    canonical, reason = _problem(value)
    if canonical is None:
        raise InvalidConversationId(value, reason)
    return canonical
