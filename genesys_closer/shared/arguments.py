"""Checks for the values callers pass to the producer API and the batch writer: each wrong value is a ValueError
that names the argument and what it accepts, raised before anything is written or sent (a wrong value must never
leave a batch or a close that waits forever). No I/O."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from genesys_closer.config.errors import CloserError
from genesys_closer.config.orgs import check_org_name


class InvalidArgument(CloserError, ValueError):
    """A value the API does not accept; the message names the argument and the values it takes."""


MAX_LIMIT = 1000  # the longest list a listing call returns (the rejected log keeps 1000)


def _shown(value: object) -> str:
    return repr(value)[:60]


def one_of(name: str, value: object, valid: tuple[str, ...]) -> str:
    """``value`` when it is one of ``valid``; otherwise ValueError naming the valid values."""
    if isinstance(value, str) and value in valid:
        return value
    raise InvalidArgument(f"{name} must be one of {', '.join(repr(v) for v in valid)}; got {_shown(value)}")


def text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string; got {type(value).__name__}")
    return value


def flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name} must be True or False; got {_shown(value)}")
    return value


def seconds(name: str, value: object, *, maximum: float | None = None, positive: bool = False) -> float:
    """A finite number of seconds, at least 0 (above 0 with ``positive``), at most ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(f"{name} must be a number of seconds; got {_shown(value)}")
    low_ok = value > 0 if positive else value >= 0
    if not low_ok or (maximum is not None and value > maximum):
        low = "above 0" if positive else "at least 0"
        high = f" and at most {maximum:g}" if maximum is not None else ""
        raise InvalidArgument(f"{name} must be {low}{high} seconds; got {_shown(value)}")
    return float(value)


def optional_seconds(name: str, value: object, **bounds: Any) -> float | None:
    return None if value is None else seconds(name, value, **bounds)


def whole_number(name: str, value: object, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidArgument(f"{name} must be a whole number from {minimum} to {maximum}; got {_shown(value)}")
    return value


def limit(name: str, value: object) -> int:
    """How many items a listing call returns."""
    return whole_number(name, value, 1, MAX_LIMIT)


def mapping(name: str, value: object) -> dict[str, Any]:
    """A dict with string keys (None for an empty one)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise InvalidArgument(f"{name} must be a dict of names to values; got {type(value).__name__}")
    return dict(value)


def callback(name: str, value: object) -> Callable[..., Any] | None:
    if value is not None and not callable(value):
        raise InvalidArgument(f"{name} must be a function or None; got {_shown(value)}")
    return value


def known_names(what: str, names: Mapping[str, object], valid: tuple[str, ...]) -> None:
    unknown = sorted(set(names) - set(valid))
    if unknown:
        raise InvalidArgument(f"unknown {what} {', '.join(repr(n)[:60] for n in unknown[:5])}; "
                         f"valid: {', '.join(valid) or 'none'}")


def org(value: object) -> str:
    """An org name (None: ``default``): 1 to 40 characters of a-z, 0-9 and '-'. Which orgs exist is the workers'
    configuration; a close for an org no worker serves ends ``invalid_request`` before any Genesys call."""
    try:
        return check_org_name(value)
    except ValueError as exc:
        raise InvalidArgument(f"org: {exc}") from None
