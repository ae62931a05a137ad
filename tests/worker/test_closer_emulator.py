"""The close algorithm against the real emulator over HTTP: every conversation kind, every fault."""

from __future__ import annotations

import pytest

from genesys_closer.config import ClosePolicy
from genesys_closer.emulator import EmulatorServer
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.shared.ids import InvalidConversationId
from genesys_closer.shared.outcomes import Outcome
from genesys_closer.worker.closing.closer import CloseOptions
from genesys_closer.worker.factory import Service, build_service
from genesys_closer.worker.genesys.errors import RateLimited
from tests.conftest import emulator_settings

KIND_OUTCOMES = [
    ("webmessaging", Outcome.CLOSED, 3),
    ("queued", Outcome.CLOSED, 3),
    ("bot", Outcome.CLOSED, 3),
    ("customer_left", Outcome.CLOSED, 3),
    ("wrapup", Outcome.ALREADY_CLOSED, 1),
    ("disconnected", Outcome.ALREADY_CLOSED, 1),
    ("sms", Outcome.NOT_WEB_MESSAGING, 1),
    ("whatsapp", Outcome.NOT_WEB_MESSAGING, 1),
    ("open", Outcome.NOT_WEB_MESSAGING, 1),
    ("stuck", Outcome.UNCONFIRMED, None),
]


@pytest.fixture
def quick_confirm(emulator: EmulatorServer) -> Service:
    """A confirmation timeout of 1 s (3 s in tests/conftest.py): a stuck conversation, which never confirms, ends
    unconfirmed (or escalates) after it. A close always reads once after the first delay (0.2 s, beyond the
    emulator's 150 ms consistency delay), so a conversation that did close is confirmed by that read."""
    return build_service(emulator_settings(emulator.base_url, confirm_timeout_seconds=1.0))


@pytest.mark.parametrize(("kind", "outcome", "calls"), KIND_OUTCOMES)
def test_every_kind_ends_in_the_right_outcome(quick_confirm: Service, admin: EmulatorAdmin, kind: str,
                                              outcome: Outcome, calls: int | None) -> None:
    service = quick_confirm
    [cid] = admin.create(1, kind)
    result = service.closer.close(cid, service.default_options)
    assert result.outcome is outcome, result
    if calls is not None:
        assert result.api_calls == calls
    assert result.correlation_ids
    row = admin.conversation(cid)
    expected_open = outcome in {Outcome.NOT_WEB_MESSAGING, Outcome.UNCONFIRMED}
    assert row["open_internally"] is expected_open
    if outcome is Outcome.CLOSED:
        assert {p["state"] for p in result.participant_states} == {"disconnected"}


def test_not_found(service: Service) -> None:
    result = service.closer.close("00000000-0000-4000-8000-000000000000")
    assert result.outcome is Outcome.NOT_FOUND and result.http_status == 404 and result.api_calls == 1


def test_other_message_types_when_allowed(service: Service, admin: EmulatorAdmin) -> None:
    [cid] = admin.create(1, "sms")
    result = service.closer.close(cid, CloseOptions(allow_other_message_types=True))
    assert result.outcome is Outcome.CLOSED


@pytest.mark.parametrize(("policy", "action"), [(ClosePolicy.PARTICIPANTS, "participants"),
                                                 (ClosePolicy.TEARDOWN, "teardown")])
def test_policies_close_what_the_patch_cannot(quick_confirm: Service, admin: EmulatorAdmin, policy: ClosePolicy,
                                              action: str) -> None:
    service = quick_confirm
    [cid] = admin.create(1, "stuck")
    result = service.closer.close(cid, CloseOptions(policy=policy))
    assert result.outcome is Outcome.CLOSED and result.action == action
    assert not admin.conversation(cid)["open_internally"]


def test_wrapup_code_for_agents_left_in_wrapup(service: Service, admin: EmulatorAdmin) -> None:
    [in_wrapup] = admin.create(1, "wrapup")
    [open_one] = admin.create(1, "webmessaging")
    options = CloseOptions(wrapup_code="0f6f0b8a-5b7e-4d3e-9d0b-1d5f0a1b2c3d", wrapup_notes="auto")
    first = service.closer.close(in_wrapup, options)
    assert first.outcome is Outcome.ALREADY_CLOSED and first.wrapups_applied == 1
    second = service.closer.close(open_one, options)
    assert second.outcome is Outcome.CLOSED and second.wrapups_applied == 1
    for cid in (in_wrapup, open_one):
        agent = next(p for p in admin.conversation(cid)["participants"] if p["purpose"] == "agent")
        assert agent["wrapup"] == {"code": options.wrapup_code, "notes": "auto"}


def test_skip_initial_get_for_sweep_candidates(service: Service, admin: EmulatorAdmin) -> None:
    [cid] = admin.create(1)
    result = service.closer.close(cid, CloseOptions(skip_initial_get=True))
    assert result.outcome is Outcome.CLOSED and result.api_calls == 2


def test_closing_twice_is_already_closed(service: Service, admin: EmulatorAdmin) -> None:
    [cid] = admin.create(1)
    assert service.closer.close(cid).outcome is Outcome.CLOSED
    assert service.closer.close(cid).outcome is Outcome.ALREADY_CLOSED
    assert admin.stats()["conversation_patches"] == 1


def test_racing_close_within_consistency_window(service: Service, admin: EmulatorAdmin) -> None:
    """Someone else closed it a moment ago: reads still say connected, the PATCH gets 409."""
    [cid] = admin.create(1)
    service.closer.close(cid, CloseOptions(skip_initial_get=True))
    admin.faults(consistency_delay_ms=1000)
    [other] = admin.create(1)
    service.client.disconnect_message_conversation(other)
    result = service.closer.close(other)
    assert result.outcome is Outcome.ALREADY_CLOSED


BAD_IDS = ["../x", "", "not-a-uuid", "x" * 10_000, None, 42, "%2e%2e%2fx", "3b47a74f-a827-4166-ae62-f6ba6d7268a\u0435"]


@pytest.mark.parametrize("raw", BAD_IDS, ids=lambda v: repr(v)[:20])
def test_bad_ids_make_no_request(service: Service, admin: EmulatorAdmin, raw: object) -> None:
    with pytest.raises(InvalidConversationId):
        service.closer.close(raw)
    assert admin.stats()["requests_total"] == 0


def test_transient_faults_are_retried(admin: EmulatorAdmin, emulator: EmulatorServer) -> None:
    """Fifteen closes (some 50 requests; the emulator's faults are seeded, its requests come one at a time)."""
    service = build_service(emulator_settings(emulator.base_url, retry_max_attempts=8))
    ids = admin.create(15)
    admin.faults(error_rate=0.15, drop_rate=0.05, spike_rate=0.05, spike_ms=100)
    outcomes = [service.closer.close(cid).outcome for cid in ids]
    assert outcomes == [Outcome.CLOSED] * 15
    stats = admin.stats()
    assert stats["conversations_open"] == 0
    assert sum(v for k, v in stats["responses_by_status"].items() if k.startswith("5")) > 0


def test_short_429_is_waited_out_inline(admin: EmulatorAdmin, service: Service) -> None:
    [cid] = admin.create(1)
    admin.faults(burst_429=1, burst_429_retry_after=1)
    result = service.closer.close(cid)
    assert result.outcome is Outcome.CLOSED
    assert result.api_calls == 4


def test_long_429_is_raised_for_a_deferred_retry(admin: EmulatorAdmin, service: Service) -> None:
    [cid] = admin.create(1)
    admin.faults(burst_429=1, burst_429_retry_after=30)
    with pytest.raises(RateLimited) as caught:
        service.closer.close(cid)
    assert caught.value.retry_after_seconds is not None and caught.value.retry_after_seconds >= 5


def test_token_revoked_midway_refreshes_once(admin: EmulatorAdmin, service: Service) -> None:
    first, second = admin.create(2)
    assert service.closer.close(first).outcome is Outcome.CLOSED
    admin.revoke_tokens()
    assert service.closer.close(second).outcome is Outcome.CLOSED
    assert admin.stats()["token_requests"] == 2


def test_missing_permission_is_forbidden(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    admin.add_client("weak", "pw", deny=["conversation:communication:disconnect"])
    service = build_service(emulator_settings(emulator.base_url, genesys_client_id="weak", genesys_client_secret="pw"))
    [cid] = admin.create(1)
    result = service.closer.close(cid)
    assert result.outcome is Outcome.FORBIDDEN
    assert result.error_code == "missing.any.permissions"
    assert "conversation:communication:disconnect" in (result.error or "")
    assert admin.conversation(cid)["open_internally"] is True


def test_wrong_secret_is_forbidden_not_retried(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    service = build_service(emulator_settings(emulator.base_url, genesys_client_secret="wrong"))
    [cid] = admin.create(1)
    result = service.closer.close(cid)
    assert result.outcome is Outcome.FORBIDDEN and "GENESYS_CLIENT_SECRET" in (result.error or "")
    assert admin.stats()["token_requests"] == 1



def test_a_fixed_stuck_conversation_takes_the_close(service: Service, admin: EmulatorAdmin) -> None:
    """The emulator's ``fix``: the cause of a stuck conversation is gone, a close (a retry) now closes it."""
    [cid] = admin.create(1, "stuck")
    admin.fix(cid)
    result = service.closer.close(cid, service.default_options)
    assert result.outcome is Outcome.CLOSED and not admin.conversation(cid)["open_internally"]
