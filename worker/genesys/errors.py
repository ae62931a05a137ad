"""The Genesys client's part of the one error hierarchy (its root, ``CloserError``, is in ``config.errors``).

    CloserError
     ├── ConfigError                 invalid configuration (names the variable)                 config.errors
     ├── InvalidId                   an ID not in its form (participant, queue, batch), no request made
     │    └── InvalidConversationId  rejected before any URL is built
     └── GenesysError                an HTTP exchange with Genesys Cloud failed
          ├── RetryableError         worth trying again (carries retry_after_seconds)
          │    ├── RateLimited       429, or the fleet-wide limiter asked for a long wait
          │    ├── ServerError       5xx
          │    └── TransportError    timeout, refused or dropped connection
          └── PermanentError         never retried
               ├── BadRequest        400 / 409 / other 4xx
               ├── AuthenticationFailed  401 after one token refresh, or invalid_client
               ├── Forbidden         403 (missing permission)
               └── NotFound          404

Every error passes all of its constructor arguments to ``Exception.__init__`` so that it pickles
(Celery serializes task exceptions). None of them ever holds an access token or a secret.
"""

from __future__ import annotations

from typing import Any

from genesys_closer.config.errors import CloserError


class GenesysError(CloserError):
    """An HTTP exchange with Genesys Cloud failed."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        code: str | None = None,
        correlation_id: str | None = None,
        retry_after_seconds: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, status, code, correlation_id, retry_after_seconds, body)
        self.message = message
        self.status = status
        self.code = code
        self.correlation_id = correlation_id
        self.retry_after_seconds = retry_after_seconds
        self.body = body or {}

    def __str__(self) -> str:
        parts = [f"HTTP {self.status}" if self.status else "no HTTP status"]
        if self.code:
            parts.append(self.code)
        text = f"{' '.join(parts)}: {self.message}"
        if self.correlation_id:
            text += f" (correlation id {self.correlation_id})"
        return text


class RetryableError(GenesysError):
    """Worth trying again later."""


class RateLimited(RetryableError):
    """HTTP 429, or a long fleet-wide wait imposed by the shared rate limiter."""


class ServerError(RetryableError):
    """HTTP 5xx."""


class TransportError(RetryableError):
    """Timeout, refused or dropped connection: no HTTP response."""


class PermanentError(GenesysError):
    """Trying again cannot succeed."""


class BadRequest(PermanentError):
    """HTTP 400, 409 or another 4xx that is not listed below."""


class AuthenticationFailed(PermanentError):
    """HTTP 401 after one token refresh, or the OAuth client was refused (invalid_client)."""


class Forbidden(PermanentError):
    """HTTP 403: the OAuth client lacks a permission."""


class NotFound(PermanentError):
    """HTTP 404."""
