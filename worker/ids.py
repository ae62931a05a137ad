"""Conversation IDs: validated as canonical UUIDs before any URL is built."""

from __future__ import annotations

import re
import uuid

from worker.errors import InvalidConversationId

MAX_RAW_LENGTH = 100
_CANONICAL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def parse_conversation_id(value: object) -> str:
    """Return the canonical lower-case UUID text of ``value`` or raise InvalidConversationId.

    Accepts only ASCII hex UUIDs in 8-4-4-4-12 form (surrounding whitespace is ignored, upper case is
    folded). Rejects everything else: ``None``, numbers, empty strings, path separators, URL-encoded text,
    braces/URN forms, Unicode look-alike digits and anything longer than 100 characters.
    """
    if not isinstance(value, str):
        raise InvalidConversationId(value, f"expected a string, got {type(value).__name__}")
    if len(value) > MAX_RAW_LENGTH:
        raise InvalidConversationId(value, f"longer than {MAX_RAW_LENGTH} characters")
    text = value.strip().lower()
    if not text:
        raise InvalidConversationId(value, "empty")
    if not text.isascii() or not _CANONICAL.fullmatch(text):
        raise InvalidConversationId(value, "not a UUID (expected 8-4-4-4-12 hexadecimal digits)")
    return str(uuid.UUID(text))
