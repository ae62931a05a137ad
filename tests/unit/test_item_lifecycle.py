"""``next_step`` from a table: every stage x every kind of observation, with the item facts that change the answer.

The table is the batched path's specification: a row says what happens to an item in a stage (and with a PATCH of
ours sent or not, its options, how long ago its PATCH was taken) when something is observed.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genesys_closer.shared.options import CloseOptions
from genesys_closer.shared.outcomes import CONFIRMED_BY_ANALYTICS, CONFIRMED_BY_SAMPLE, Outcome
from genesys_closer.worker.checks.item_lifecycle import (
    MAX_READ_FAILURES,
    OBSERVATIONS,
    TASK_STAGES,
    WAITING_STAGES,
    AnalyticsRow,
    BatchStopped,
    CheckTiming,
    ClosedElsewhere,
    Concluded,
    Decision,
    Drop,
    Finish,
    Hand,
    Ignore,
    Item,
    ItemRef,
    Join,
    Listed,
    LiveRead,
    NotInAnalytics,
    Observation,
    PatchTaken,
    Progress,
    Read,
    ReadFailed,
    ReadRefused,
    Settled,
    Stage,
    TaskStarted,
    Wait,
    next_step,
)

TIMING = CheckTiming(first_check_seconds=1.0, max_interval_seconds=5.0, timeout_seconds=60.0)
AT = 10_000.0  # when the read was made
REF = ItemRef("b" * 32, "00000000-0000-4000-8000-000000000001")

ENDED = AnalyticsRow(ended=True, web_messaging=True, at=AT)  # with conversationEnd; settled: see below
SEGMENTS_ENDED = AnalyticsRow(ended=True, web_messaging=True, at=AT, end_documented=False)  # no conversationEnd
TRUSTED_END = AnalyticsRow(ended=True, web_messaging=True, at=AT, settled=Settled.BY_ANALYTICS)
VERIFIED_END = AnalyticsRow(ended=True, web_messaging=True, at=AT, settled=Settled.VERIFIED)
DISAGREED_END = AnalyticsRow(ended=True, web_messaging=True, at=AT, settled=Settled.DISAGREED)
DISTRUSTED_END = AnalyticsRow(ended=True, web_messaging=True, at=AT, settled=Settled.READ_LIVE)
UNREAD_END = AnalyticsRow(ended=True, web_messaging=True, at=AT, settled=Settled.WAIT)
OPEN = AnalyticsRow(ended=False, web_messaging=True, at=AT)
OTHER_CHANNEL = AnalyticsRow(ended=False, web_messaging=False, at=AT)
ENDED_OTHER_CHANNEL = AnalyticsRow(ended=True, web_messaging=False, at=AT)
MISSING = NotInAnalytics(at=AT)
BATCHED, STANDALONE, SWEEP = TaskStarted(batched=True), TaskStarted(batched=False), TaskStarted(sweep_item=True)


class Row(NamedTuple):
    stage: Stage
    observation: Observation
    expected: Decision
    facts: dict[str, Any] = {}


def item(stage: Stage, *, patched: bool = False, patched_seconds_ago: float | None = None,
         options: CloseOptions | None = CloseOptions()) -> Item:  # noqa: B008 - frozen
    patched_at = None if patched_seconds_ago is None else AT - patched_seconds_ago
    return Item(REF, Progress(stage=stage, patched=patched, patched_at=patched_at), options)


PATCHED = {"patched": True}
OTHERS_ALLOWED = {"options": CloseOptions(allow_other_message_types=True)}
BAD_OPTIONS = {"options": None}


def ago(seconds: float, **facts: Any) -> dict[str, Any]:
    return {"patched": True, "patched_seconds_ago": seconds, **facts}


TABLE = [
    # -- new: no stage yet (or its progress is gone: finished) ---------------------------------------------------
    Row(Stage.NEW, BATCHED, Join(Stage.PRECHECK)),
    Row(Stage.NEW, SWEEP, Hand(Stage.PATCH)),  # the sweep's own read was its pre-check
    Row(Stage.NEW, BATCHED, Hand(Stage.DIRECT), PATCHED),  # an earlier direct-path attempt sent its PATCH
    Row(Stage.NEW, STANDALONE, Hand(Stage.DIRECT)),
    Row(Stage.NEW, Concluded(Outcome.CLOSED), Finish(Outcome.CLOSED)),
    Row(Stage.NEW, Listed(Stage.PRECHECK), Drop()),  # finished: its progress was forgotten
    Row(Stage.NEW, Listed(Stage.CONFIRM), Drop()),
    Row(Stage.NEW, ENDED, Ignore()),
    Row(Stage.NEW, MISSING, Ignore()),
    Row(Stage.NEW, ReadFailed(1), Ignore()),
    Row(Stage.NEW, ReadRefused(), Ignore()),
    Row(Stage.NEW, ClosedElsewhere(), Ignore()),
    Row(Stage.NEW, PatchTaken(), Ignore()),
    Row(Stage.NEW, BatchStopped(), Ignore()),
    # -- precheck: waits for a batched read before its PATCH ---------------------------------------------------
    # analytics never ends an item by itself (issue 18): a read of the conversation decides
    Row(Stage.PRECHECK, ENDED, Hand(Stage.DIRECT, live_read=LiveRead.LOOKED_ENDED)),
    Row(Stage.PRECHECK, ENDED, Hand(Stage.DIRECT, live_read=LiveRead.LOOKED_ENDED), PATCHED),
    Row(Stage.PRECHECK, SEGMENTS_ENDED, Hand(Stage.DIRECT, live_read=LiveRead.LOOKED_ENDED)),
    Row(Stage.PRECHECK, ENDED_OTHER_CHANNEL, Hand(Stage.DIRECT, live_read=LiveRead.LOOKED_ENDED)),
    Row(Stage.PRECHECK, OPEN, Hand(Stage.PATCH)),
    Row(Stage.PRECHECK, OTHER_CHANNEL, Hand(Stage.DIRECT, live_read=LiveRead.NOT_VISIBLY_WEB)),  # or no messageType
    Row(Stage.PRECHECK, OTHER_CHANNEL, Hand(Stage.PATCH), OTHERS_ALLOWED),
    Row(Stage.PRECHECK, ENDED, Hand(Stage.DIRECT), BAD_OPTIONS),  # its task refuses them
    Row(Stage.PRECHECK, MISSING, Hand(Stage.DIRECT)),  # analytics lags: a read of the conversation
    Row(Stage.PRECHECK, ReadFailed(1), Wait(1.0)),
    Row(Stage.PRECHECK, ReadFailed(2, retry_after_seconds=7.5), Wait(7.5)),
    Row(Stage.PRECHECK, ReadFailed(MAX_READ_FAILURES), Hand(Stage.DIRECT)),
    Row(Stage.PRECHECK, ReadRefused(), Hand(Stage.DIRECT)),
    Row(Stage.PRECHECK, BATCHED, Join(Stage.PRECHECK)),  # a re-driven copy waits there
    Row(Stage.PRECHECK, STANDALONE, Hand(Stage.DIRECT)),  # batched checks turned off meanwhile
    Row(Stage.PRECHECK, ClosedElsewhere(), Ignore()),
    Row(Stage.PRECHECK, PatchTaken(), Ignore()),
    Row(Stage.PRECHECK, Concluded(Outcome.FAILED), Finish(Outcome.FAILED)),
    Row(Stage.PRECHECK, Listed(Stage.PRECHECK), Read()),
    Row(Stage.PRECHECK, Listed(Stage.CONFIRM), Drop()),  # moved on
    Row(Stage.PRECHECK, BatchStopped(), Hand(Stage.DIRECT)),  # its task records cancelled / not_attempted
    # -- patch: its close task sends the PATCH -----------------------------------------------------------------
    Row(Stage.PATCH, BATCHED, Hand(Stage.PATCH)),
    Row(Stage.PATCH, BATCHED, Hand(Stage.DIRECT), PATCHED),  # its PATCH went out, the task was lost: read first
    Row(Stage.PATCH, STANDALONE, Hand(Stage.DIRECT)),
    Row(Stage.PATCH, ClosedElsewhere(), Finish(Outcome.ALREADY_CLOSED)),  # no second PATCH
    Row(Stage.PATCH, ClosedElsewhere(), Ignore(), PATCHED),  # ours may have landed: confirm it as usual
    Row(Stage.PATCH, PatchTaken(), Join(Stage.CONFIRM, 1.0, patched=True)),
    Row(Stage.PATCH, PatchTaken(answer_shows_end=False), Join(Stage.CONFIRM, 1.0, patched=True, answer_open=True)),
    Row(Stage.PATCH, PatchTaken(patched=False), Join(Stage.CONFIRM, 1.0, patched=False)),
    Row(Stage.PATCH, Concluded(Outcome.NOT_FOUND), Finish(Outcome.NOT_FOUND)),
    Row(Stage.PATCH, Listed(Stage.PRECHECK), Hand(Stage.PATCH)),  # a pump died before sending its task
    Row(Stage.PATCH, Listed(Stage.CONFIRM), Hand(Stage.PATCH)),
    Row(Stage.PATCH, ENDED, Ignore()),
    Row(Stage.PATCH, MISSING, Ignore()),
    Row(Stage.PATCH, ReadFailed(1), Ignore()),
    Row(Stage.PATCH, ReadRefused(), Ignore()),
    Row(Stage.PATCH, BatchStopped(), Ignore()),
    # -- confirm: PATCH taken, waits for a read that shows it ended --------------------------------------------
    # only conversationEnd confirms, and only as its read's sample allows (worker.checks.analytics_trust)
    Row(Stage.CONFIRM, TRUSTED_END, Finish(Outcome.CLOSED, 10.0, CONFIRMED_BY_ANALYTICS), ago(10)),
    Row(Stage.CONFIRM, TRUSTED_END, Finish(Outcome.ALREADY_CLOSED, 2.0, CONFIRMED_BY_ANALYTICS),
        ago(2, patched=False)),
    Row(Stage.CONFIRM, VERIFIED_END, Finish(Outcome.CLOSED, 10.0, CONFIRMED_BY_SAMPLE), ago(10)),
    Row(Stage.CONFIRM, DISAGREED_END, Hand(Stage.DIRECT, confirm_only=True, live_read=LiveRead.DISAGREED), ago(10)),
    Row(Stage.CONFIRM, DISTRUSTED_END, Hand(Stage.DIRECT, confirm_only=True, live_read=LiveRead.DISTRUSTED),
        ago(10)),
    Row(Stage.CONFIRM, ENDED, Hand(Stage.DIRECT, confirm_only=True, live_read=LiveRead.DISTRUSTED), ago(10)),
    Row(Stage.CONFIRM, UNREAD_END, Wait(5.0), ago(10)),  # its sample could not be read: read again
    Row(Stage.CONFIRM, SEGMENTS_ENDED, Hand(Stage.DIRECT, confirm_only=True, live_read=LiveRead.SEGMENTS_ONLY),
        ago(10)),
    Row(Stage.CONFIRM, OPEN, Wait(1.0), ago(1)),  # the first interval
    Row(Stage.CONFIRM, OPEN, Wait(1.5), ago(3)),  # growing: half the time since the PATCH
    Row(Stage.CONFIRM, OPEN, Wait(5.0), ago(30)),  # capped
    Row(Stage.CONFIRM, OTHER_CHANNEL, Wait(5.0), ago(30)),  # the channel was decided before the PATCH
    Row(Stage.CONFIRM, OPEN, Hand(Stage.DIRECT, confirm_only=True), ago(60)),  # a read of the conversation
    Row(Stage.CONFIRM, MISSING, Wait(5.0), ago(10)),
    Row(Stage.CONFIRM, MISSING, Hand(Stage.DIRECT, confirm_only=True), ago(61)),
    Row(Stage.CONFIRM, ReadFailed(1), Wait(1.0), ago(1)),
    Row(Stage.CONFIRM, ReadFailed(MAX_READ_FAILURES), Hand(Stage.DIRECT), ago(1)),
    Row(Stage.CONFIRM, ReadRefused(), Hand(Stage.DIRECT), ago(1)),
    Row(Stage.CONFIRM, BATCHED, Join(Stage.CONFIRM), ago(1)),  # a re-driven copy waits there
    Row(Stage.CONFIRM, STANDALONE, Hand(Stage.DIRECT), ago(1)),
    Row(Stage.CONFIRM, ClosedElsewhere(), Ignore(), ago(1)),
    Row(Stage.CONFIRM, PatchTaken(), Ignore(), ago(1)),
    Row(Stage.CONFIRM, Concluded(Outcome.UNCONFIRMED), Finish(Outcome.UNCONFIRMED), ago(1)),
    Row(Stage.CONFIRM, Listed(Stage.CONFIRM), Read(), ago(1)),
    Row(Stage.CONFIRM, Listed(Stage.PRECHECK), Drop(), ago(1)),
    Row(Stage.CONFIRM, BatchStopped(), Ignore(), ago(1)),  # patched: confirmed whatever its batch does
    # -- direct: its close task reads the conversation ---------------------------------------------------------
    Row(Stage.DIRECT, BATCHED, Hand(Stage.DIRECT)),
    Row(Stage.DIRECT, STANDALONE, Hand(Stage.DIRECT)),
    Row(Stage.DIRECT, Concluded(Outcome.CLOSED), Finish(Outcome.CLOSED)),
    Row(Stage.DIRECT, Listed(Stage.PRECHECK), Hand(Stage.DIRECT)),  # a pump died before sending its task
    Row(Stage.DIRECT, Listed(Stage.CONFIRM), Hand(Stage.DIRECT)),
    Row(Stage.DIRECT, ENDED, Ignore()),
    Row(Stage.DIRECT, MISSING, Ignore()),
    Row(Stage.DIRECT, ReadFailed(1), Ignore()),
    Row(Stage.DIRECT, ReadRefused(), Ignore()),
    Row(Stage.DIRECT, ClosedElsewhere(), Ignore()),
    Row(Stage.DIRECT, PatchTaken(), Ignore()),
    Row(Stage.DIRECT, BatchStopped(), Ignore()),
]


def test_the_table_covers_every_stage_and_observation() -> None:
    covered = {(row.stage, type(row.observation)) for row in TABLE}
    assert covered == set(itertools.product(Stage, OBSERVATIONS))
    listed = {(row.stage, row.observation.stage) for row in TABLE if isinstance(row.observation, Listed)}
    assert listed == set(itertools.product(Stage, WAITING_STAGES))  # in either set, for every stage


@pytest.mark.parametrize("row", TABLE, ids=lambda row: f"{row.stage.value}-{row.observation}-{row.facts}")
def test_next_step(row: Row) -> None:
    assert next_step(item(row.stage, **row.facts), row.observation, TIMING) == row.expected


ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
END = "[*]"


def transitions_in_table() -> set[tuple[str, str]]:
    """Every move the table makes: into a set (``Join``), to a task stage (``Hand``), to the end (``Finish``), and
    back into its own set (``Wait``); a re-driven copy joining its own set again or a hand-off sent again is no move."""
    moves = {(END, Stage.NEW.value)}
    for row in TABLE:
        source, decision = row.stage.value, row.expected
        if isinstance(decision, Join | Hand) and decision.stage is not row.stage:
            moves.add((source, decision.stage.value))
        elif isinstance(decision, Finish):
            moves.add((source, END))
        elif isinstance(decision, Wait):
            moves.add((source, source))
    return moves


def transitions_drawn() -> set[tuple[str, str]]:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    diagram = re.search(r"```mermaid\nstateDiagram-v2\n(.*?)```", text, re.DOTALL)
    assert diagram is not None, "docs/architecture.md draws the lifecycle as a mermaid stateDiagram-v2"
    edges = re.findall(r"^\s*(\S+)\s*-->\s*([^\s:]+)", diagram.group(1), re.MULTILINE)
    return {(source, target) for source, target in edges}


def test_the_architecture_drawing_is_the_table() -> None:
    drawn = transitions_drawn()
    assert {state for edge in drawn for state in edge} == {END} | {stage.value for stage in Stage}
    assert drawn == transitions_in_table()


def test_only_stored_stage_names_are_known() -> None:
    assert [Stage.stored(name) for name in (None, "precheck", "patch", "confirm", "direct", "renamed")] == [
        Stage.NEW, Stage.PRECHECK, Stage.PATCH, Stage.CONFIRM, Stage.DIRECT, Stage.DIRECT]


observations = st.one_of(
    st.builds(AnalyticsRow, ended=st.booleans(), web_messaging=st.booleans(), at=st.floats(0, 2 * AT),
              end_documented=st.booleans(), settled=st.none() | st.sampled_from(Settled)),
    st.builds(NotInAnalytics, at=st.floats(0, 2 * AT)),
    st.builds(ReadFailed, failures=st.integers(1, 10), retry_after_seconds=st.none() | st.floats(0, 3600)),
    st.just(ReadRefused()), st.builds(TaskStarted, batched=st.booleans(), sweep_item=st.booleans()),
    st.just(ClosedElsewhere()), st.builds(PatchTaken, patched=st.booleans(), answer_shows_end=st.booleans()),
    st.builds(Concluded, outcome=st.sampled_from(Outcome)), st.builds(Listed, stage=st.sampled_from(WAITING_STAGES)),
    st.just(BatchStopped()))
items = st.builds(lambda stage, patched, ago_s, allow: item(stage, patched=patched, patched_seconds_ago=ago_s,
                                                              options=CloseOptions(allow_other_message_types=allow)),
                  st.sampled_from(Stage), st.booleans(), st.none() | st.floats(0, AT), st.booleans())


@given(items, observations)
def test_decisions_are_well_formed(subject: Item, observation: Observation) -> None:
    """Whatever is observed: a set is joined only for a waiting stage, a task only runs a task stage, analytics never
    ends an item already_closed or not_web_messaging, and closed only with conversationEnd as its sample allowed,
    and nothing waits for a negative time."""
    decision = next_step(subject, observation, TIMING)
    if isinstance(decision, Join):
        assert decision.stage in WAITING_STAGES and decision.due_in_seconds >= 0
    if isinstance(decision, Hand):
        assert decision.stage in TASK_STAGES
    if isinstance(decision, Wait):
        assert 0 < decision.due_in_seconds <= 3600
    if isinstance(decision, Finish) and isinstance(observation, AnalyticsRow):
        assert subject.stage is Stage.CONFIRM and observation.ended and observation.end_documented
        assert observation.settled in {Settled.BY_ANALYTICS, Settled.VERIFIED}
        assert (decision.outcome is Outcome.CLOSED) == subject.progress.patched
    if isinstance(observation, AnalyticsRow | NotInAnalytics | ReadFailed | ReadRefused):
        assert subject.stage in WAITING_STAGES or isinstance(decision, Ignore)
