"""The fleet's trust in analytics confirmations, kept in a real Redis: a disagreement starts a cooling-off, the
cooling-off ends in probation, and only a clean sample restores trust."""

from __future__ import annotations

import logging

import pytest
import redis

from genesys_closer.worker.analytics_trust import FleetTrust, TrustMode, Verdict


def test_distrust_cooling_probation_and_back(redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    trust = FleetTrust(redis_client, cooling_seconds=60, clock=lambda: now[0])
    other_process = FleetTrust(redis_client, cooling_seconds=60, clock=lambda: now[0])
    assert trust.state().mode is TrustMode.TRUSTED
    with caplog.at_level(logging.WARNING, logger="genesys_closer.worker"):
        trust.disagreed("3b47a74f-a827-4166-ae62-f6ba6d7268ae", "confirmation")
    assert "analytics disagrees with the live conversation" in caplog.text
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
