"""What a sweep looks for (``SweepFilters``), parsed and checked without I/O: producers check a sweep's filters with
this module before they queue it, and the worker checks them again before it queries Genesys."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from genesys_closer.shared.ids import parse_uuid

MAX_LOOKBACK_DAYS = 90.0
_NUMBERS = ("min_age_minutes", "idle_minutes", "lookback_days", "interval_days")
_FLAGS = ("skip_connected_agent", "include_parked")
_TIMES = ("started_after", "started_before")


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SweepFilters:
    min_age_minutes: float = 0.0
    idle_minutes: float | None = None
    queue_ids: tuple[str, ...] = ()
    started_after: str | None = None
    started_before: str | None = None
    skip_connected_agent: bool = False
    include_parked: bool = False
    max_count: int | None = None
    lookback_days: float = 30.0
    interval_days: float = 7.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepFilters:
        """Filters from a request; ValueError (naming the filter) for an unknown name or a wrong value."""
        known = [f.name for f in fields(cls)]
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown sweep filter(s): {', '.join(sorted(map(str, unknown)))[:200]}; "
                             f"valid: {', '.join(known)}")
        values = dict(data)
        for name in (n for n in _NUMBERS if n in values):
            value = values[name]
            if name == "idle_minutes" and value is None:
                continue  # the only number that may be absent
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"sweep filter {name} must be a number, at least 0; got {repr(value)[:60]}")
        for name in _FLAGS:
            flag = values.get(name, False)
            if flag is not True and flag is not False:
                raise ValueError(f"sweep filter {name} must be true or false")
        count = values.get("max_count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ValueError(f"sweep filter max_count must be a whole number, at least 1; got {repr(count)[:60]}")
        queue_ids = values.get("queue_ids") or ()
        if isinstance(queue_ids, str | bytes | dict) or not hasattr(queue_ids, "__iter__"):
            raise ValueError("sweep filter queue_ids must be a list of queue ids")
        values["queue_ids"] = tuple(parse_uuid(q, "queue id") for q in queue_ids)
        for name in _TIMES:
            if values.get(name) is not None:
                if not isinstance(values[name], str):
                    raise ValueError(f"sweep filter {name} must be an ISO 8601 time")
                parse_time(values[name])
        filters = cls(**values)
        if filters.interval_days <= 0 or filters.lookback_days <= 0:
            raise ValueError("lookback_days and interval_days must be positive")
        if filters.lookback_days > MAX_LOOKBACK_DAYS:
            raise ValueError(f"lookback_days may be at most {MAX_LOOKBACK_DAYS:g}")
        return filters

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["queue_ids"] = list(self.queue_ids)
        return data
