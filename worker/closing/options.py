"""Close options: the operator's defaults (settings) and what a single task may ask for.

No I/O and no worker dependencies: producers validate options with this module before they enqueue anything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from genesys_closer.config.settings import ClosePolicy, WorkerSettings

OPTION_NAMES = frozenset({"policy", "allow_other_message_types", "wrapup_code", "wrapup_notes",
                          "skip_initial_get"})


@dataclass(frozen=True)
class CloseOptions:
    policy: ClosePolicy = ClosePolicy.FAIL
    allow_other_message_types: bool = False
    wrapup_code: str | None = None
    wrapup_notes: str = "Closed by genesys-closer"
    skip_initial_get: bool = False
    previously_patched: bool = False

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> CloseOptions:
        return cls(policy=settings.close_policy,
                   allow_other_message_types=settings.close_allow_other_message_types,
                   wrapup_code=settings.close_wrapup_code, wrapup_notes=settings.close_wrapup_notes)

    def with_overrides(self, overrides: dict[str, Any]) -> CloseOptions:
        """Apply per-task options; unknown names or wrong types raise ValueError (never silently ignored)."""
        unknown = set(overrides) - OPTION_NAMES
        if unknown:
            raise ValueError(f"unknown close option(s): {', '.join(sorted(map(str, unknown)))}")
        changes: dict[str, Any] = {}
        for name, value in overrides.items():
            if name == "policy":
                changes[name] = ClosePolicy(value)
            elif name in {"allow_other_message_types", "skip_initial_get"}:
                if not isinstance(value, bool):
                    raise ValueError(f"close option {name} must be true or false")
                changes[name] = value
            elif value is not None and (not isinstance(value, str) or len(value) > 500):
                raise ValueError(f"close option {name} must be a string of at most 500 characters")
            else:
                changes[name] = value
        return replace(self, **changes)
