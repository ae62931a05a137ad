"""One logging setup for workers, beat, Flower and the CLI: text or JSON lines, secrets redacted everywhere.

Redaction runs on every handler, so it covers third-party loggers too: the client secret (as a literal),
``Bearer``/``Basic`` credentials, ``access_token``/``client_secret``/``password`` fields and passwords in URLs.
Lines about a close carry ``conversation_id``, ``batch_id`` and ``correlation_id``, and every line written while a
task of an org runs carries that ``org`` (set by the task with ``org_context``; in text lines only when it is not
``default``, so single-org logs read as before).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

CONTEXT_FIELDS = ("conversation_id", "batch_id", "correlation_id", "outcome", "api_calls", "org")
CURRENT_ORG: contextvars.ContextVar[str | None] = contextvars.ContextVar("genesys_closer_org", default=None)


@contextlib.contextmanager
def org_context(org: str) -> Iterator[None]:
    """Every log line written inside carries ``org``."""
    token = CURRENT_ORG.set(org)
    try:
        yield
    finally:
        CURRENT_ORG.reset(token)
REDACTED = "[REDACTED]"
_PATTERNS = [
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"), rf"\1 {REDACTED}"),
    (re.compile(r'(?i)(["\']?(?:access_token|client_secret|authorization|password|secret)["\']?\s*[:=]\s*["\']?)'
                r'[^"\'\s,}&]+'), rf"\1{REDACTED}"),
    (re.compile(r"(?i)(rediss?://[^:/@\s]*:)[^@\s]+@"), rf"\1{REDACTED}@"),
]


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.literals = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for literal in self.literals:
            text = text.replace(literal, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


class RedactingFilter(logging.Filter):
    """Renders each record's message (and traceback) once, redacted, before any formatter sees it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redact = redactor
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        record.exc_info = None
        if getattr(record, "org", None) is None:
            record.org = CURRENT_ORG.get()
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, None)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*CONTEXT_FIELDS, "task_id", "task_name"):
            value = getattr(record, name, None)
            if value not in (None, "", "???"):
                data[name] = value
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        org = getattr(record, "org", None)
        shown = ("org", *CONTEXT_FIELDS[:3]) if org not in (None, "default") else CONTEXT_FIELDS[:3]
        context = " ".join(f"{name}={getattr(record, name)}" for name in shown if getattr(record, name, None))
        return f"{text} [{context}]" if context else text


def configure_logging(level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """Replace the root handlers with one redacting stderr handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(Redactor(secrets)))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
