"""Close options: the operator's defaults (settings) and what one request may ask for.

A request (a task's keyword arguments) can only narrow what the worker's configuration allows: a policy must be in
``CLOSE_ALLOWED_POLICIES`` (by default the configured ``CLOSE_POLICY`` and the narrower ones), other message types
only when ``CLOSE_ALLOW_OTHER_MESSAGE_TYPES`` is on, and internal switches (``skip_initial_get``) are never taken
from a request: the worker sets them itself (sweep candidates).

No I/O and no worker dependencies: producers validate options with this module before they enqueue anything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from genesys_closer.config.settings import ClosePolicy, WorkerSettings

REQUEST_OPTION_NAMES = frozenset({"policy", "allow_other_message_types", "wrapup_code", "wrapup_notes"})
MAX_TEXT_OPTION = 500


class OptionRefused(ValueError):
    """A request asked for more than this worker's configuration allows."""


@dataclass(frozen=True)
class OptionLimits:
    """What a request may ask for, from the worker's configuration."""

    allowed_policies: frozenset[ClosePolicy] = frozenset(ClosePolicy)
    allow_other_message_types: bool = True

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> OptionLimits:
        return cls(frozenset(settings.allowed_policies), settings.close_allow_other_message_types)


def _names(names: set[Any]) -> str:
    shown = [repr(name)[:60] for name in sorted(names, key=repr)[:5]]
    return ", ".join(shown) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


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

    def with_overrides(self, overrides: dict[str, Any], limits: OptionLimits | None = None) -> CloseOptions:
        """Apply a request's options. Unknown names or wrong types raise ValueError; with ``limits`` (the worker)
        anything wider than the configuration raises OptionRefused. Nothing is ever silently ignored."""
        unknown = set(overrides) - REQUEST_OPTION_NAMES
        if unknown:
            raise ValueError(f"unknown close option(s): {_names(unknown)}")
        changes: dict[str, Any] = {}
        for name, value in overrides.items():
            if name == "policy":
                try:
                    changes[name] = ClosePolicy(value)
                except ValueError:
                    raise ValueError(f"close option policy must be one of {', '.join(ClosePolicy)}, "
                                     f"got {repr(value)[:60]}") from None
            elif name == "allow_other_message_types":
                if not isinstance(value, bool):
                    raise ValueError(f"close option {name} must be true or false")
                changes[name] = value
            elif value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT_OPTION):
                raise ValueError(f"close option {name} must be a string of at most {MAX_TEXT_OPTION} characters")
            else:
                changes[name] = value
        if limits is not None:
            policy = changes.get("policy")
            if policy is not None and policy not in limits.allowed_policies:
                allowed = ", ".join(p.value for p in ClosePolicy if p in limits.allowed_policies)
                raise OptionRefused(f"policy {policy.value!r} is not allowed on this worker (allowed: {allowed}; "
                                    "see CLOSE_ALLOWED_POLICIES)")
            if changes.get("allow_other_message_types") and not limits.allow_other_message_types:
                raise OptionRefused("allow_other_message_types is not allowed on this worker "
                                    "(CLOSE_ALLOW_OTHER_MESSAGE_TYPES is off)")
        return replace(self, **changes)

    def for_sweep_candidate(self) -> CloseOptions:
        """A sweep candidate is already known to be open web messaging: its close skips the first read."""
        return replace(self, skip_initial_get=True)
