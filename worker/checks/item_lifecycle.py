"""A batch item's lifecycle on the batched path, written down once: its stages, what can be observed of it, and the
one pure function that decides its next step (``next_step``). No I/O: ``worker.checks.batched_checks`` (the pump) and
``worker.running.close_run`` (the item's close task) observe, ask ``next_step``, and carry the decision out.

Stages (``Stage``; stored in the item's progress hash, see ``worker.checks.item_progress``)::

    new ──task──> precheck ──analytics read──> patch ──task: PATCH──> confirm ──analytics read──> finished
     │               ├── looks ended / not (visibly) web messaging ──> direct ──task: a read decides──> finished
     │               └── unknown to analytics, batch stopped, reads failing ──> direct ──task──> finished
     └── sweep item ──> patch    confirm: not ended in time, segments ended without conversationEnd, a sampled
                                          read disagreed, analytics distrusted, reads failing ──> direct

Analytics never decides an outcome alone (issue 18, ``closing.analytics_state``): ``already_closed`` and
``not_web_messaging`` come from a read of the conversation (the direct path), and ``closed`` from analytics'
``conversationEnd`` only as a sampled confirmation: the pump reads a sample of the items a confirmation read shows
ended live (``worker.checks.analytics_trust``) and tells each item how it came out (``AnalyticsRow.settled``).

``precheck`` and ``confirm`` wait in a fleet-wide set for a batched read; ``patch`` and ``direct`` are run by the
item's close task (the pump sends one). ``direct`` is the standalone close (GET, PATCH, GET), or only its
confirming read when our PATCH was taken (``confirm_only``). Finished is not a stage: the outcome is recorded
(``Finish``) and the item's progress forgotten.

Observations come in two kinds that never mix: what an analytics read showed (``AnalyticsRow``,
``NotInAnalytics``, ``ReadFailed``, ``ReadRefused``), and what the item's own task saw or did live
(``TaskStarted``, ``ClosedElsewhere``, ``PatchTaken``, ``Concluded``). The pump's bookkeeping observations
(``Listed``, ``BatchStopped``) are neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from genesys_closer.config.settings import WorkerSettings
from genesys_closer.shared.options import CloseOptions
from genesys_closer.shared.outcomes import CONFIRMED_BY_ANALYTICS, CONFIRMED_BY_SAMPLE, Outcome
from genesys_closer.worker.closing.analytics_state import row_confirms_end, row_ended, row_is_web_messaging

MAX_READ_FAILURES = 3  # failed batched reads before an item takes the direct path


class Stage(StrEnum):
    """Where a batch item is. The value is what the progress hash stores (``new`` is never stored: no stage)."""

    NEW = "new"  # no stage yet (or a direct-path close that never took the batched path)
    PRECHECK = "precheck"  # waits for a batched analytics read before its PATCH
    PATCH = "patch"  # its close task sends the PATCH
    CONFIRM = "confirm"  # PATCH taken; waits for a batched analytics read that shows it ended
    DIRECT = "direct"  # its close task reads the conversation itself (the standalone close)

    @classmethod
    def stored(cls, value: str | None) -> Stage:
        """The stage a progress hash names. Absent: ``NEW``; a name this version does not know: ``DIRECT`` (a read
        of the conversation decides, the safe path)."""
        if value is None:
            return cls.NEW
        try:
            return cls(value)
        except ValueError:
            return cls.DIRECT


class LiveRead(StrEnum):
    """Why a batch item's direct path reads its conversation instead of trusting analytics (kept in its progress)."""

    LOOKED_ENDED = "looked_ended"  # pre-check: the row looked ended (a read finding it open is a disagreement)
    NOT_VISIBLY_WEB = "not_visibly_web"  # pre-check: another channel, or no messageType
    SEGMENTS_ONLY = "segments_only"  # confirmation: every segment ended, no conversationEnd
    DISTRUSTED = "distrusted"  # confirmation: the fleet distrusts analytics (or the sample was not read)
    DISAGREED = "disagreed"  # confirmation: its sampled read showed a participant still connected

    @classmethod
    def stored(cls, value: str | None) -> LiveRead | None:
        return next((member for member in cls if member.value == value), None)


class Settled(StrEnum):
    """How an item a confirmation read showed ended (``conversationEnd``) came out of its read's sample."""

    BY_ANALYTICS = "by_analytics"  # the sample was clean (or verification is off): analytics confirms it
    VERIFIED = "verified"  # sampled, and its live read agreed
    DISAGREED = "disagreed"  # sampled, and its live read shows a participant still connected
    READ_LIVE = "read_live"  # the fleet distrusts analytics, or its sample disagreed or was not read
    WAIT = "wait"  # no sample could be read: read again later


WAITING_STAGES = (Stage.PRECHECK, Stage.CONFIRM)  # stages with a set of items due for a batched read
TASK_STAGES = (Stage.PATCH, Stage.DIRECT)  # stages the item's close task runs


@dataclass(frozen=True)
class CheckTiming:
    chunk_size: int = 100
    gather_seconds: float = 5.0  # how long a due item may wait for others to share its read
    first_check_seconds: float = 1.0
    max_interval_seconds: float = 5.0
    timeout_seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> CheckTiming:
        return cls(settings.analytics_chunk_size, settings.batched_gather_seconds,
                   settings.confirm_analytics_first_check_seconds, settings.confirm_analytics_max_interval_seconds,
                   settings.confirm_analytics_timeout_seconds)

    @property
    def min_chunk(self) -> int:
        """A read is made at once for this many due items (a fifth of a chunk): a read's share per item then stays
        at most 5% of a call at any rate, and a slower stream of items waits at most ``gather_seconds``."""
        return max(1, self.chunk_size // 5)

    def next_check(self, since_patch: float) -> float:
        """Seconds until the next confirmation read of an item patched ``since_patch`` seconds ago."""
        return min(max(since_patch / 2, self.first_check_seconds, 0.2), self.max_interval_seconds)


# -- records ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemRef:
    """Which close: a batch item (``batch_id``) or a standalone close (``batch_id`` None)."""

    batch_id: str | None
    conversation_id: str

    @property
    def token(self) -> str:
        """How the item is named in the stage sets."""
        return f"{self.batch_id}:{self.conversation_id}"


@dataclass(frozen=True)
class Progress:
    """An item's progress hash as read (``worker.checks.item_progress.ItemProgress`` writes it)."""

    stage: Stage = Stage.NEW
    patched: bool = False  # a PATCH of ours went out (or was about to)
    patched_at: float | None = None  # when the confirmation clock started
    api_calls: float = 0.0  # calls so far, a batched read counting as its share
    confirm_only: bool = False  # the direct path only confirms (our PATCH was taken; analytics did not show it)
    read_failures: int = 0
    first_attempt_at: float | None = None  # the direct path's first retryable failure (its retry window)
    live_read: LiveRead | None = None  # why the direct path reads the conversation instead of trusting analytics
    answer_open: bool = False  # our PATCH's answer did not show the conversation ended: its confirmation is sampled
    task_id: str | None = None  # the close task that put it in its waiting stage (Flower shows that task's end)


@dataclass(frozen=True)
class Item:
    """One item as the lifecycle sees it: which, how far, and the close options it runs with (None: its batch's
    options do not parse; its task refuses them)."""

    ref: ItemRef
    progress: Progress = Progress()
    options: CloseOptions | None = field(default_factory=CloseOptions)

    @property
    def stage(self) -> Stage:
        return self.progress.stage

    def at(self, stage: Stage) -> Item:
        """The item as its task sees it while carrying out a move to ``stage``."""
        return replace(self, progress=replace(self.progress, stage=stage))


# -- observations ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnalyticsRow:
    """An analytics read described the conversation (read at ``at``): whether it looks ended, whether it carries
    ``conversationEnd`` (the documented end), whether its customer session is visibly web messaging, and, for an
    item a confirmation read shows ended, how its read's sample came out (``settled``)."""

    ended: bool
    web_messaging: bool
    at: float
    row: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    end_documented: bool = True
    settled: Settled | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any], at: float, settled: Settled | None = None) -> AnalyticsRow:
        return cls(ended=row_ended(row), web_messaging=row_is_web_messaging(row), at=at, row=row,
                   end_documented=row_confirms_end(row), settled=settled)


@dataclass(frozen=True)
class NotInAnalytics:
    """An analytics read did not describe the conversation (analytics lags; read at ``at``)."""

    at: float


@dataclass(frozen=True)
class ReadFailed:
    """The batched read failed after its inline retries; the item's ``failures``-th failed read."""

    failures: int
    retry_after_seconds: float | None = None


@dataclass(frozen=True)
class ReadRefused:
    """The batched read was refused for good (a permission, a bad request)."""


@dataclass(frozen=True)
class TaskStarted:
    """The item's close task runs. ``batched``: the batched path applies (batched checks on, a batch item, no
    wrap-up code); ``sweep_item``: a sweep candidate (the sweep's own read was its pre-check)."""

    batched: bool = True
    sweep_item: bool = False


@dataclass(frozen=True)
class ClosedElsewhere:
    """Before its PATCH: another close of ours (another batch) has recorded this conversation closed."""


@dataclass(frozen=True)
class PatchTaken:
    """Genesys took the batched path's PATCH (``patched`` False: its answer showed the conversation had ended
    before; ``answer_shows_end`` False: the answer did not show every participant gone)."""

    patched: bool = True
    answer_shows_end: bool = True


@dataclass(frozen=True)
class Concluded:
    """The item's task ran a close to its end (an outcome of its own)."""

    outcome: Outcome


@dataclass(frozen=True)
class Listed:
    """The pump found the item due in the set of ``stage``."""

    stage: Stage


@dataclass(frozen=True)
class BatchStopped:
    """The item's batch was cancelled or stopped."""


AnalyticsObservation = AnalyticsRow | NotInAnalytics | ReadFailed | ReadRefused
TaskObservation = TaskStarted | ClosedElsewhere | PatchTaken | Concluded
PumpObservation = Listed | BatchStopped
Observation = AnalyticsObservation | TaskObservation | PumpObservation
OBSERVATIONS = (AnalyticsRow, NotInAnalytics, ReadFailed, ReadRefused, TaskStarted, ClosedElsewhere, PatchTaken,
                Concluded, Listed, BatchStopped)


# -- decisions -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Join:
    """Wait in ``stage``'s set for a batched read, due in ``due_in_seconds`` (an item already there keeps its
    place). ``patched`` not None: the PATCH was taken now (recorded, and the confirmation clock starts)."""

    stage: Stage
    due_in_seconds: float = 0.0
    patched: bool | None = None
    answer_open: bool = False  # our PATCH's answer did not show the end: its confirmation is always sampled


@dataclass(frozen=True)
class Hand:
    """Move to ``stage`` (``patch`` or ``direct``), which the item's close task runs: the pump sends one, a task
    runs it itself. ``confirm_only``: the direct path only confirms our taken PATCH."""

    stage: Stage
    confirm_only: bool = False
    live_read: LiveRead | None = None  # why a read decides instead of analytics


@dataclass(frozen=True)
class Wait:
    """Stay in the set, next read in ``due_in_seconds``."""

    due_in_seconds: float


@dataclass(frozen=True)
class Read:
    """Due: make the batched read."""


@dataclass(frozen=True)
class Finish:
    """Record ``outcome`` and forget the item. ``confirm_seconds``: how long after its PATCH a read confirmed it."""

    outcome: Outcome
    confirm_seconds: float | None = None
    confirmed_by: str | None = None  # for an outcome a batched read decided: analytics, or its sample's read


@dataclass(frozen=True)
class Drop:
    """A stale set entry (finished, or moved on): remove it."""


@dataclass(frozen=True)
class Ignore:
    """The observation says nothing about an item in this stage: nothing changes."""


Decision = Join | Hand | Wait | Read | Finish | Drop | Ignore


# -- the one transition function -------------------------------------------------------------------------------
def next_step(item: Item, observation: Observation, timing: CheckTiming = CheckTiming()) -> Decision:
    """What happens to ``item`` after ``observation``. Pure; every stage change of a batch item goes through here."""
    stage, progress = item.stage, item.progress
    match observation:
        case TaskStarted(batched=batched, sweep_item=sweep_item):
            return _task_started(item, batched, sweep_item)
        case Concluded(outcome=outcome):
            return Finish(outcome)
        case ClosedElsewhere():
            return Finish(Outcome.ALREADY_CLOSED) if stage is Stage.PATCH and not progress.patched else Ignore()
        case PatchTaken(patched=patched, answer_shows_end=shows_end):
            return Join(Stage.CONFIRM, timing.first_check_seconds, patched=patched, answer_open=not shows_end) \
                if stage is Stage.PATCH else Ignore()
        case Listed(stage=listed_in):
            if stage is listed_in:
                return Read()
            return Hand(stage) if stage in TASK_STAGES else Drop()  # a pump died between its stage and its task
        case BatchStopped():
            return Hand(Stage.DIRECT) if stage is Stage.PRECHECK else Ignore()  # the task records why
        case ReadFailed(failures=failures, retry_after_seconds=retry_after):
            if stage not in WAITING_STAGES:
                return Ignore()
            if failures >= MAX_READ_FAILURES:
                return Hand(Stage.DIRECT)  # the direct path's retry budget and outcomes apply
            return Wait(max(retry_after or 0.0, float(failures)))
        case ReadRefused():
            return Hand(Stage.DIRECT) if stage in WAITING_STAGES else Ignore()
        case AnalyticsRow() | NotInAnalytics():
            if stage is Stage.PRECHECK:
                return _after_precheck(item, observation)
            if stage is Stage.CONFIRM:
                return _after_confirm(item, observation, timing)
            return Ignore()
    raise TypeError(f"not an observation: {observation!r}")


def _task_started(item: Item, batched: bool, sweep_item: bool) -> Decision:
    stage = item.stage
    if not batched:
        return Hand(Stage.DIRECT)  # wrap-up codes need the participants; batched checks off; a standalone close
    if stage in WAITING_STAGES:
        return Join(stage)  # a re-driven copy: it waits there (keeping its place)
    if stage is Stage.NEW and not item.progress.patched:
        return Hand(Stage.PATCH) if sweep_item else Join(Stage.PRECHECK)
    if stage is Stage.PATCH and not item.progress.patched:
        return Hand(Stage.PATCH)
    # direct; an earlier direct-path attempt sent its PATCH; or a copy of this PATCH task sent its PATCH and was lost
    # before its item joined the confirm set (a Redis restart): a read first, a PATCH only if it is still open
    return Hand(Stage.DIRECT)


def _closed(item: Item) -> Outcome:
    return Outcome.CLOSED if item.progress.patched else Outcome.ALREADY_CLOSED


def _after_precheck(item: Item, observation: AnalyticsRow | NotInAnalytics) -> Decision:
    """Only an open, visibly web messaging row goes to the PATCH; anything else is decided by a read."""
    if not isinstance(observation, AnalyticsRow) or item.options is None:
        return Hand(Stage.DIRECT)  # not known to analytics yet: the direct path reads the conversation
    if observation.ended:
        return Hand(Stage.DIRECT, live_read=LiveRead.LOOKED_ENDED)  # never already_closed on analytics' word
    if not item.options.allow_other_message_types and not observation.web_messaging:
        return Hand(Stage.DIRECT, live_read=LiveRead.NOT_VISIBLY_WEB)  # never not_web_messaging on its word
    return Hand(Stage.PATCH)


def _after_confirm(item: Item, observation: AnalyticsRow | NotInAnalytics, timing: CheckTiming) -> Decision:
    patched_at = item.progress.patched_at
    since = observation.at - (observation.at if patched_at is None else patched_at)
    if isinstance(observation, AnalyticsRow) and observation.ended:
        if not observation.end_documented:
            return Hand(Stage.DIRECT, confirm_only=True, live_read=LiveRead.SEGMENTS_ONLY)
        match observation.settled:
            case Settled.BY_ANALYTICS:
                return Finish(_closed(item), round(since, 4), CONFIRMED_BY_ANALYTICS)
            case Settled.VERIFIED:
                return Finish(_closed(item), round(since, 4), CONFIRMED_BY_SAMPLE)
            case Settled.DISAGREED:
                return Hand(Stage.DIRECT, confirm_only=True, live_read=LiveRead.DISAGREED)
            case Settled.WAIT:
                return Wait(timing.next_check(since))
            case _:  # distrusted, or not sampled: a read confirms
                return Hand(Stage.DIRECT, confirm_only=True, live_read=LiveRead.DISTRUSTED)
    if since >= timing.timeout_seconds:
        return Hand(Stage.DIRECT, confirm_only=True)  # a read of the conversation (and escalation per policy)
    return Wait(timing.next_check(since))
