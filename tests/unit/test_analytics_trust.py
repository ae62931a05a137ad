"""Analytics never decides an outcome alone: the pre-check and confirmation steps from every kind of row (faithful
and the emulator's variants), and the sampled verification's decisions, table-driven."""

from __future__ import annotations

import random
import time

import pytest

from genesys_closer.emulator.model import KINDS, build_conversation, render_analytics, shown_ended
from genesys_closer.worker.checks.analytics_trust import TrustMode, Verdict, pick_sample, sample_size, settle
from genesys_closer.worker.closing.analytics_state import ConfirmStep, PrecheckStep, confirm_step, precheck_step

OPEN_WEB = {"webmessaging", "queued", "bot", "customer_left", "parked", "stuck", "restricted"}
ENDED = {"wrapup", "disconnected"}
OTHER = {"sms", "whatsapp", "open"}


def rows(kind: str, **variant: bool) -> dict[str, object]:
    conversation = build_conversation(kind, time.time(), random.Random(3))
    return render_analytics(conversation, conversation.participants, **variant)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", [{}, {"message_type": False}, {"with_end": False}])
def test_precheck_never_skips_work_on_analytics_word(kind: str, variant: dict[str, bool]) -> None:
    """Open, visibly web messaging: the PATCH. Anything else (ended, segments ended, another channel, no
    messageType): a live read, never already_closed or not_web_messaging."""
    assert set(KINDS) == OPEN_WEB | ENDED | OTHER
    step = precheck_step(rows(kind, **variant), allow_other_message_types=False)
    visibly_web = variant.get("message_type", True) and kind not in OTHER
    expected = PrecheckStep.PATCH if kind in OPEN_WEB and visibly_web else PrecheckStep.READ_LIVE
    assert step is expected
    allowed = precheck_step(rows(kind, **variant), allow_other_message_types=True)
    assert allowed is (PrecheckStep.READ_LIVE if kind in ENDED else PrecheckStep.PATCH)


def test_a_row_analytics_does_not_have_is_read_live() -> None:
    assert precheck_step(None, allow_other_message_types=False) is PrecheckStep.NOT_IN_ANALYTICS
    assert confirm_step(None) is ConfirmStep.NOT_YET


@pytest.mark.parametrize(("kind", "with_end", "expected"), [
    ("disconnected", True, ConfirmStep.ENDED),       # conversationEnd: analytics' documented word
    ("wrapup", True, ConfirmStep.ENDED),
    ("disconnected", False, ConfirmStep.READ_LIVE),  # every segment ended, no conversationEnd: an inference
    ("wrapup", False, ConfirmStep.READ_LIVE),
    ("webmessaging", True, ConfirmStep.NOT_YET),
    ("webmessaging", False, ConfirmStep.NOT_YET),
])
def test_only_conversation_end_confirms(kind: str, with_end: bool, expected: ConfirmStep) -> None:
    assert confirm_step(rows(kind, with_end=with_end)) is expected


def test_a_stuck_conversation_shown_ended_looks_like_any_ended_one() -> None:
    """Why sampling exists: the row of a stuck conversation analytics shows ended cannot be told apart."""
    conversation = build_conversation("stuck", time.time(), random.Random(3))
    row = render_analytics(conversation, shown_ended(conversation.participants, time.time()))
    assert confirm_step(row) is ConfirmStep.ENDED
    assert precheck_step(row, allow_other_message_types=False) is PrecheckStep.READ_LIVE
    assert all(p.state == "connected" for p in conversation.participants[2:])  # the live one is untouched


@pytest.mark.parametrize(("ended", "share", "mode", "expected"), [
    (0, 0.02, TrustMode.TRUSTED, 0),
    (1, 0.02, TrustMode.TRUSTED, 1),       # at least one per read
    (100, 0.02, TrustMode.TRUSTED, 2),
    (100, 0.025, TrustMode.TRUSTED, 3),    # rounded up
    (30, 1.0, TrustMode.TRUSTED, 30),
    (30, 0.0, TrustMode.TRUSTED, 0),       # verification off
    (30, 0.0, TrustMode.PROBATION, 1),     # trust comes back only after a clean sample
    (30, 0.5, TrustMode.COOLING, 0),       # every one is read live anyway
])
def test_sample_size(ended: int, share: float, mode: TrustMode, expected: int) -> None:
    assert sample_size(ended, share, mode) == expected
    assert len(pick_sample([str(i) for i in range(ended)], share, mode)) == expected


A, D, U = Verdict.AGREED, Verdict.DISAGREED, Verdict.UNKNOWN


@pytest.mark.parametrize(("mode", "verdicts", "by_analytics", "verified", "disagreed", "read_live", "wait", "clean"), [
    (TrustMode.TRUSTED, {"a": A}, "bc", "a", "", "", "", True),
    (TrustMode.PROBATION, {"a": A, "b": A}, "c", "ab", "", "", "", True),
    (TrustMode.TRUSTED, {"a": A, "b": D}, "", "a", "b", "c", "", False),  # one disagreement: none by analytics
    (TrustMode.PROBATION, {"a": D}, "", "", "a", "bc", "", False),
    (TrustMode.TRUSTED, {"a": A, "b": U}, "c", "a", "", "b", "", True),
    (TrustMode.TRUSTED, {"a": U}, "", "", "", "a", "bc", False),  # nothing verified: the rest read again later
    (TrustMode.TRUSTED, {}, "abc", "", "", "", "", False),  # ANALYTICS_VERIFY_SHARE=0
    (TrustMode.COOLING, {}, "", "", "", "abc", "", False),  # distrusted: every one read live
])
def test_settle(mode: TrustMode, verdicts: dict[str, Verdict], by_analytics: str, verified: str, disagreed: str,
                read_live: str, wait: str, clean: bool) -> None:
    result = settle(mode, list("abc"), verdicts)
    assert (result.by_analytics, result.verified, result.disagreed) == (list(by_analytics), list(verified),
                                                                         list(disagreed))
    assert (sorted(result.read_live), result.wait, result.clean) == (list(read_live), list(wait), clean)
    decided = [*result.by_analytics, *result.verified, *result.disagreed, *result.read_live, *result.wait]
    assert sorted(decided) == list("abc")  # every item gets exactly one next step
