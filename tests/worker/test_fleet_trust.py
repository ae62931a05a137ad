"""The fleet's trust in analytics confirmations, kept in a real Redis: a disagreement starts a cooling-off, the
cooling-off ends in probation, and only a clean sample restores trust."""

from __future__ import annotations

import logging

import pytest
import redis
from prometheus_client import REGISTRY

from genesys_closer.worker.checks.analytics_trust import (
    MAX_SAMPLE_READS,
    ConfirmVerifier,
    FleetTrust,
    TrustMode,
    Verdict,
)
from genesys_closer.worker.genesys.client import CallTally


def test_distrust_cooling_probation_and_back(redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    trust = FleetTrust(redis_client, cooling_seconds=60, clock=lambda: now[0])
    other_process = FleetTrust(redis_client, cooling_seconds=60, clock=lambda: now[0])
    assert trust.state().mode is TrustMode.TRUSTED
    with caplog.at_level(logging.WARNING, logger="genesys_closer.worker"):
        trust.disagreed("3b47a74f-a827-4166-ae62-f6ba6d7268ae", "confirmation")
    assert "analytics disagrees with the live conversation" in caplog.text
    assert REGISTRY.get_sample_value("genesys_closer_analytics_trusted", {"org": "default"}) == 0
    assert (REGISTRY.get_sample_value("genesys_closer_analytics_distrusts_total", {"org": "default"}) or 0) >= 1
    state = other_process.state()  # fleet-wide
    assert state.mode is TrustMode.COOLING and state.until == 1060.0 and "3b47a74f" in state.reason
    assert "DISTRUSTED" in state.describe(now[0])
    trust.sampled({"x": Verdict.AGREED}, TrustMode.COOLING)  # a clean sample while cooling changes nothing
    now[0] = 1061.0
    assert trust.state().mode is TrustMode.PROBATION
    trust.sampled({"x": Verdict.AGREED, "y": Verdict.UNKNOWN}, TrustMode.PROBATION)  # not clean: one unknown
    assert trust.state().mode is TrustMode.PROBATION
    trust.disagreed("3b47a74f-a827-4166-ae62-f6ba6d7268ae", "pre-check")  # probation -> cooling again
    assert trust.state().mode is TrustMode.COOLING
    now[0] = 1200.0
    trust.sampled({"x": Verdict.AGREED}, TrustMode.PROBATION)
    assert other_process.state().mode is TrustMode.TRUSTED
    assert REGISTRY.get_sample_value("genesys_closer_analytics_trusted", {"org": "default"}) == 1


def test_a_clean_sample_does_not_end_a_cooling_off_set_meanwhile(redis_client: redis.Redis) -> None:
    """The restore is atomic: a probation's clean sample racing a new disagreement leaves the new cooling-off."""
    now = [0.0]
    trust = FleetTrust(redis_client, cooling_seconds=10, clock=lambda: now[0])
    trust.disagreed("3b47a74f-a827-4166-ae62-f6ba6d7268ae", "confirmation")
    now[0] = 11.0
    mode = trust.state().mode  # probation, as the pump saw it before its sample's reads
    trust.disagreed("3b47a74f-a827-4166-ae62-f6ba6d7268ae", "confirmation")  # another process, meanwhile
    trust.sampled({"x": Verdict.AGREED}, mode)
    assert trust.state().mode is TrustMode.COOLING


class LiveReads:
    """A scripted Genesys client: the live conversation of each id (closed or still open)."""

    def __init__(self, open_ids: set[str]) -> None:
        self.open_ids = open_ids
        self.reads: list[str] = []

    def get_message_conversation(self, cid: str, tally: CallTally | None = None) -> dict[str, object]:
        self.reads.append(cid)
        if tally is not None:
            tally.api_calls += 1
        state = "connected" if cid in self.open_ids else "disconnected"
        return {"id": cid, "participants": [{"id": "p", "purpose": "customer", "state": state}]}


def verifier(redis_client: redis.Redis, live: LiveReads, share: float) -> ConfirmVerifier:
    trust = FleetTrust(redis_client, cooling_seconds=60)
    return ConfirmVerifier(trust, live, lambda call: call(), share,  # type: ignore[arg-type]
                           rng=lambda tokens, n: list(tokens)[:n])


def test_a_clean_sample_confirms_the_rest_by_analytics(redis_client: redis.Redis) -> None:
    live = LiveReads(set())
    result = verifier(redis_client, live, 0.02).verify({f"t{i}": f"c{i}" for i in range(50)})
    assert live.reads == ["c0"] and result.settlement.verified == ["t0"] and len(result.settlement.by_analytics) == 49
    assert result.calls == {"t0": 1.0} and result.settlement.clean


def test_a_disagreeing_sample_makes_the_fleet_confirm_live(redis_client: redis.Redis) -> None:
    live = LiveReads({"c1"})
    check = verifier(redis_client, live, 0.02)
    ended = {f"t{i}": f"c{i}" for i in range(5)}
    result = check.verify(ended, must_verify={"t1"})  # its PATCH's answer did not show it ended
    assert live.reads == ["c1", "c0"]  # the item that must be verified, then the random sample
    assert result.settlement.disagreed == ["t1"] and result.settlement.by_analytics == []
    assert sorted(result.settlement.read_live) == ["t2", "t3", "t4"]
    assert check.trust.state().mode is TrustMode.COOLING
    again = check.verify({"t9": "c9"})  # the next read while cooling: no sample, every item read live
    assert again.settlement.read_live == ["t9"] and live.reads == ["c1", "c0"]


def test_at_most_a_few_live_reads_per_analytics_read(redis_client: redis.Redis) -> None:
    live = LiveReads(set())
    ended = {f"t{i}": f"c{i}" for i in range(30)}
    result = verifier(redis_client, live, 1.0).verify(ended)
    assert len(live.reads) == MAX_SAMPLE_READS and len(result.settlement.verified) == MAX_SAMPLE_READS
    assert len(result.settlement.read_live) == 30 - MAX_SAMPLE_READS  # left to their own tasks' reads
