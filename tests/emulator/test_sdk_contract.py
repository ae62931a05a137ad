"""Contract tests: the official Genesys SDK (PureCloudPlatformClientV2) as the client of the emulator.

The SDK is generated from Genesys' OpenAPI spec, so responses that deserialize into its models with the expected
values, and errors that surface as its ApiException, show that the emulator speaks the real wire format.
"""

from __future__ import annotations

import time
import urllib.error

import pytest
import requests
import urllib3

from genesys_closer.emulator import EmulatorConfig, EmulatorServer
from genesys_closer.emulator.admin import EmulatorAdmin
from tests.sdk import gc, rest
from tests.waiting import wait_until

pytestmark = pytest.mark.sdk


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(consistency_delay_ms=300, seed=99, rate_limit_per_minute=300)


@pytest.fixture
def sdk(emulator: EmulatorServer) -> object:
    return gc.ApiClient(host=emulator.base_url).get_client_credentials_token("demo-client", "demo-secret")


def test_login_with_client_credentials(sdk: object) -> None:
    assert isinstance(sdk.access_token, str) and len(sdk.access_token) > 20


def test_wrong_secret_is_refused(emulator: EmulatorServer) -> None:
    with pytest.raises(Exception, match=r"invalid_client|401"):
        gc.ApiClient(host=emulator.base_url).get_client_credentials_token("demo-client", "wrong")


def test_get_patch_and_read_back_after_consistency_delay(sdk: object, admin: EmulatorAdmin) -> None:
    [conversation_id] = admin.create(1, "webmessaging")
    api = gc.ConversationsApi(sdk)

    before = api.get_conversations_message(conversation_id)
    assert isinstance(before, gc.MessageConversation)
    assert before.id == conversation_id
    assert {p.purpose for p in before.participants} == {"customer", "acd", "agent"}
    customer = next(p for p in before.participants if p.purpose == "customer")
    assert isinstance(customer, gc.MessageMediaParticipant)
    assert customer.type == "webmessaging" and customer.state == "connected"
    assert customer.messages and isinstance(customer.messages[0], gc.MessageDetails)
    agent = next(p for p in before.participants if p.purpose == "agent")
    assert agent.user.id and agent.queue.id and agent.wrapup_required is True

    body = gc.Conversation()
    body.state = "disconnected"
    patched = api.patch_conversations_message(conversation_id, body)
    assert isinstance(patched, gc.Conversation) and patched.id == conversation_id

    stale = api.get_conversations_message(conversation_id)
    assert any(p.state == "connected" for p in stale.participants)  # eventual consistency
    time.sleep(0.4)
    after = api.get_conversations_message(conversation_id)
    assert all(p.state == "disconnected" for p in after.participants)
    assert all(p.end_time is not None for p in after.participants)
    assert next(p for p in after.participants if p.purpose == "agent").disconnect_type == "client"

    conversation = api.get_conversation(conversation_id)
    assert isinstance(conversation, gc.Conversation)
    assert conversation.end_time is not None and conversation.start_time is not None
    assert all(p.messages[0].state == "disconnected" for p in conversation.participants)


def test_participant_patch_and_teardown(sdk: object, admin: EmulatorAdmin) -> None:
    stuck, other = admin.create(2, "stuck")
    api = gc.ConversationsApi(sdk)
    participant = api.get_conversations_message(stuck).participants[0]
    request = gc.MediaParticipantRequest()
    request.state = "disconnected"
    assert api.patch_conversations_message_participant(stuck, participant.id, body=request) is None
    api.post_conversation_disconnect(other)
    time.sleep(0.4)
    states = [p["state"] for p in admin.conversation(other)["participants"]]
    assert set(states) == {"disconnected"}
    assert admin.conversation(stuck)["participants"][0]["state"] == "disconnected"


def test_404_arrives_as_api_exception(sdk: object) -> None:
    api = gc.ConversationsApi(sdk)
    with pytest.raises(rest.ApiException) as caught:
        api.get_conversations_message("00000000-0000-4000-8000-000000000000")
    assert caught.value.status == 404
    assert '"code": "not.found"' in caught.value.body
    assert caught.value.headers.get("ININ-Correlation-Id")


def test_429_without_retry_after_arrives_as_api_exception(sdk: object, admin: EmulatorAdmin) -> None:
    [conversation_id] = admin.create(1)
    admin.faults(burst_429=1, burst_429_retry_after=None)
    api = gc.ConversationsApi(sdk)
    with pytest.raises(rest.ApiException) as caught:
        api.get_conversations_message(conversation_id)
    assert caught.value.status == 429
    assert '"code": "too.many.requests"' in caught.value.body
    assert caught.value.headers.get("inin-ratelimit-allowed") == "300"


def test_429_with_retry_after_is_retried_by_the_sdk(sdk: object, admin: EmulatorAdmin) -> None:
    """urllib3 inside the SDK honours Retry-After transparently (fact sheet section 6)."""
    [conversation_id] = admin.create(1)
    admin.faults(burst_429=1, burst_429_retry_after=1)
    started = time.monotonic()
    result = gc.ConversationsApi(sdk).get_conversations_message(conversation_id)
    assert result.id == conversation_id
    assert time.monotonic() - started >= 0.9
    assert admin.stats()["responses_by_status"]["429"] == 1


def test_403_missing_permission(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    admin.add_client("no-disconnect", "pw", deny=["conversation:communication:disconnect"])
    [conversation_id] = admin.create(1)
    sdk = gc.ApiClient(host=emulator.base_url).get_client_credentials_token("no-disconnect", "pw")
    body = gc.Conversation()
    body.state = "disconnected"
    with pytest.raises(rest.ApiException) as caught:
        gc.ConversationsApi(sdk).patch_conversations_message(conversation_id, body)
    assert caught.value.status == 403
    assert "missing.any.permissions" in caught.value.body
    assert "conversation:communication:disconnect" in caught.value.body


def test_analytics_details_query_deserializes(sdk: object, admin: EmulatorAdmin) -> None:
    admin.create(3, "webmessaging", queue_id="11111111-2222-4333-8444-555555555555")
    admin.create(2, "sms")
    query = gc.ConversationQuery()
    query.interval = time.strftime("%Y-%m-%dT00:00:00.000Z/", time.gmtime(time.time() - 86400)) + time.strftime(
        "%Y-%m-%dT23:59:59.000Z", time.gmtime())
    query.order = "asc"
    query.order_by = "conversationStart"
    end_missing = gc.ConversationDetailQueryPredicate()
    end_missing.type = "dimension"
    end_missing.dimension = "conversationEnd"
    end_missing.operator = "notExists"
    conversation_filter = gc.ConversationDetailQueryFilter()
    conversation_filter.type = "and"
    conversation_filter.predicates = [end_missing]
    segment_predicates = []
    for dimension, value in [("mediaType", "message"), ("messageType", "webmessaging")]:
        predicate = gc.SegmentDetailQueryPredicate()
        predicate.type = "dimension"
        predicate.dimension = dimension
        predicate.operator = "matches"
        predicate.value = value
        segment_predicates.append(predicate)
    segment_filter = gc.SegmentDetailQueryFilter()
    segment_filter.type = "and"
    segment_filter.predicates = segment_predicates
    query.conversation_filters = [conversation_filter]
    query.segment_filters = [segment_filter]
    paging = gc.PagingSpec()
    paging.page_size = 2
    paging.page_number = 1
    query.paging = paging
    response = gc.AnalyticsApi(sdk).post_analytics_conversations_details_query(query)
    assert isinstance(response, gc.AnalyticsConversationQueryResponse)
    assert response.total_hits == 3
    assert len(response.conversations) == 2
    row = response.conversations[0]
    assert row.conversation_end is None and row.conversation_start is not None
    session = row.participants[0].sessions[0]
    assert session.media_type == "message" and session.message_type == "webmessaging"


# -- the open answers (issue: real orgs answer differently), each read with the official SDK ---------------------------
def details_query(page_size: int = 100, page_number: int = 1) -> object:
    query = gc.ConversationQuery()
    query.interval = time.strftime("%Y-%m-%dT00:00:00.000Z/", time.gmtime(time.time() - 86400)) + time.strftime(
        "%Y-%m-%dT23:59:59.000Z", time.gmtime())
    query.order, query.order_by = "asc", "conversationStart"
    paging = gc.PagingSpec()
    paging.page_size, paging.page_number = page_size, page_number
    query.paging = paging
    return query


def test_parked_conversation_and_type_on_the_customer_only(sdk: object, admin: EmulatorAdmin) -> None:
    [parked] = admin.create(1, "parked")
    conversation = gc.ConversationsApi(sdk).get_conversations_message(parked)
    by_purpose = {p.purpose: p for p in conversation.participants}
    agent = by_purpose["agent"]
    assert agent.state == "parked" and agent.park_time is not None and agent.resume_time > agent.park_time
    assert by_purpose["customer"].type == "webmessaging" and agent.type is None and by_purpose["acd"].type is None


def test_type_on_every_participant_when_asked(sdk: object, admin: EmulatorAdmin) -> None:
    admin.faults(participant_type_on="all")
    [cid] = admin.create(1)
    participants = gc.ConversationsApi(sdk).get_conversations_message(cid).participants
    assert {p.type for p in participants} == {"webmessaging"}


def test_bot_flow_participant_is_a_workflow(sdk: object, admin: EmulatorAdmin) -> None:
    [bot] = admin.create(1, "bot")
    purposes = {p.purpose for p in gc.ConversationsApi(sdk).get_conversations_message(bot).participants}
    assert purposes == {"customer", "workflow"}


def test_parked_and_wrapup_segments_deserialize(sdk: object, admin: EmulatorAdmin) -> None:
    [parked] = admin.create(1, "parked")
    [closed] = admin.create(1)
    body = gc.Conversation()
    body.state = "disconnected"
    gc.ConversationsApi(sdk).patch_conversations_message(closed, body)  # the agent is left in after-call work

    def read() -> dict[str, object]:
        return {r.conversation_id: r for r in
                gc.AnalyticsApi(sdk).post_analytics_conversations_details_query(details_query()).conversations}

    wait_until(lambda: read()[closed].conversation_end is not None, timeout=5)  # eventual consistency
    rows = read()
    parked_types = {s.segment_type for p in rows[parked].participants for x in p.sessions for s in x.segments}
    assert "parked" in parked_types
    agent = next(p for p in rows[closed].participants if p.purpose == "agent")
    wrapup = [s for x in agent.sessions for s in x.segments if s.segment_type == "wrapup"]
    assert wrapup and wrapup[0].segment_end is None and rows[closed].conversation_end is not None


def test_division_refusal_arrives_as_403_or_404(sdk: object, admin: EmulatorAdmin) -> None:
    [restricted] = admin.create(1, "restricted")
    api = gc.ConversationsApi(sdk)
    with pytest.raises(rest.ApiException) as caught:
        api.get_conversations_message(restricted)
    assert caught.value.status == 403 and "missing.division.permission" in caught.value.body
    admin.faults(restricted_status=404)
    with pytest.raises(rest.ApiException) as caught:
        api.get_conversations_message(restricted)
    assert caught.value.status == 404
    hits = gc.AnalyticsApi(sdk).post_analytics_conversations_details_query(details_query()).conversations or []
    assert restricted not in {r.conversation_id for r in hits}  # the client cannot see it in analytics either


@pytest.mark.parametrize("status", [409, 400, 404, 200])
def test_reclose_answers(sdk: object, admin: EmulatorAdmin, status: int) -> None:
    admin.faults(reclose_status=status)
    [closed] = admin.create(1, "disconnected")
    body = gc.Conversation()
    body.state = "disconnected"
    api = gc.ConversationsApi(sdk)
    if status == 200:
        answer = api.patch_conversations_message(closed, body)
        assert isinstance(answer, gc.Conversation) and answer.end_time is not None
        return
    with pytest.raises(rest.ApiException) as caught:
        api.patch_conversations_message(closed, body)
    assert caught.value.status == status


def test_wrapup_codes_are_validated(sdk: object, admin: EmulatorAdmin) -> None:
    admin.faults(wrapup_codes=["resolved"])
    [cid] = admin.create(1, "wrapup")
    agent = next(p for p in gc.ConversationsApi(sdk).get_conversations_message(cid).participants
                 if p.purpose == "agent")
    request = gc.MediaParticipantRequest()
    request.wrapup = gc.Wrapup()
    request.wrapup.code = "bogus"
    with pytest.raises(rest.ApiException) as caught:
        gc.ConversationsApi(sdk).patch_conversations_message_participant(cid, agent.id, body=request)
    assert caught.value.status == 400 and "invalid.value" in caught.value.body
    request.wrapup.code = "resolved"
    assert gc.ConversationsApi(sdk).patch_conversations_message_participant(cid, agent.id, body=request) is None


def test_paging_cap(sdk: object, admin: EmulatorAdmin) -> None:
    admin.faults(paging_cap=10)
    admin.create(3)
    with pytest.raises(rest.ApiException) as caught:
        gc.AnalyticsApi(sdk).post_analytics_conversations_details_query(details_query(page_size=5, page_number=3))
    assert caught.value.status == 400 and "Pagination may not exceed 10 results" in caught.value.body


def test_expired_token_and_token_endpoint_limit(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    [cid] = admin.create(1)
    sdk = gc.ApiClient(host=emulator.base_url).get_client_credentials_token("demo-client", "demo-secret")
    for token in emulator.state.tokens.values():
        token.expires_at = time.time() - 1
    with pytest.raises(rest.ApiException) as caught:
        gc.ConversationsApi(sdk).get_conversations_message(cid)
    assert caught.value.status == 401 and "credentials.expired" in caught.value.body
    admin.faults(token_rate_limit_per_minute=1)
    gc.ApiClient(host=emulator.base_url).get_client_credentials_token("demo-client", "demo-secret")
    # The SDK would wait out Retry-After (up to a minute) before a second token; the raw answer shows the limit:
    refused = requests.post(f"{emulator.base_url}/oauth/token", data={"grant_type": "client_credentials"},
                            auth=("demo-client", "demo-secret"), timeout=10)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


def test_analytics_multi_get_with_a_lag(sdk: object, admin: EmulatorAdmin) -> None:
    """GET /api/v2/analytics/conversations/details?id=...: unknown ids left out; analytics shows reality late."""
    api = gc.ConversationsApi(sdk)
    first, second = admin.create(2)
    answer = api.get_analytics_conversations_details(id=[first, second, "00000000-0000-4000-8000-000000000000"])
    assert isinstance(answer, gc.AnalyticsConversationWithoutAttributesMultiGetResponse)
    assert {row.conversation_id for row in answer.conversations} == {first, second}
    admin.faults(analytics_lag_ms=400)
    [late] = admin.create(1, age_minutes=0)  # it starts now: analytics learns of it after the lag
    assert not api.get_analytics_conversations_details(id=[late]).conversations  # not known to analytics yet
    wait_until(lambda: bool(api.get_analytics_conversations_details(id=[late]).conversations), timeout=5)
    body = gc.Conversation()
    body.state = "disconnected"
    api.patch_conversations_message(late, body)
    assert api.get_analytics_conversations_details(id=[late]).conversations[0].conversation_end is None  # lagging
    wait_until(lambda: api.get_analytics_conversations_details(id=[late]).conversations[0].conversation_end,
               timeout=5)
    admin.faults(analytics_max_ids=2)
    with pytest.raises(rest.ApiException) as caught:
        api.get_analytics_conversations_details(id=[first, second, late])
    assert caught.value.status == 400 and "at most 2" in caught.value.body


# -- analytics variants: analytics' word strays from the live conversation (issue 18) ---------------------------------
def _row(api: object, conversation_id: str) -> object:
    [row] = api.get_analytics_conversations_details(id=[conversation_id]).conversations
    return row


def _live_open(api: object, conversation_id: str) -> bool:
    participants = api.get_conversations_message(conversation_id).participants
    return any(p.state not in {"disconnected", "terminated"} for p in participants)


def test_analytics_rows_without_message_type(sdk: object, admin: EmulatorAdmin) -> None:
    """``AnalyticsSession.messageType`` is optional in the SDK: rows come without it, the query still filters."""
    admin.faults(analytics_message_type=False)
    [cid] = admin.create(1)
    api = gc.ConversationsApi(sdk)
    sessions = [s for p in _row(api, cid).participants for s in p.sessions]
    assert sessions and all(s.media_type == "message" and s.message_type is None for s in sessions)
    assert api.get_conversations_message(cid).participants[0].type == "webmessaging"  # live still says it
    hits = gc.AnalyticsApi(sdk).post_analytics_conversations_details_query(details_query()).conversations
    assert [s.message_type for r in hits for p in r.participants for s in p.sessions] == [None] * len(sessions)


def test_ended_rows_without_conversation_end(sdk: object, admin: EmulatorAdmin) -> None:
    """Every segment of every participant ended, and still no ``conversationEnd``."""
    admin.faults(analytics_conversation_end=False, acw_after_patch=False)
    [cid] = admin.create(1)
    api = gc.ConversationsApi(sdk)
    body = gc.Conversation()
    body.state = "disconnected"
    api.patch_conversations_message(cid, body)
    wait_until(lambda: not _live_open(api, cid), timeout=5)
    row = _row(api, cid)
    segments = [seg for p in row.participants for s in p.sessions for seg in s.segments]
    assert row.conversation_end is None and segments and all(seg.segment_end is not None for seg in segments)


def test_stuck_conversations_shown_ended_while_open(sdk: object, admin: EmulatorAdmin) -> None:
    """``always``: analytics shows a stuck conversation ended from the start, before and after our PATCH, while the
    live conversation stays open; a participant PATCH really closes it."""
    admin.faults(analytics_stuck_ended="always")
    [cid] = admin.create(1, "stuck")
    api = gc.ConversationsApi(sdk)
    row = _row(api, cid)
    assert row.conversation_end is not None and _live_open(api, cid)
    assert all(seg.segment_end for p in row.participants for s in p.sessions for seg in s.segments)
    body = gc.Conversation()
    body.state = "disconnected"
    api.patch_conversations_message(cid, body)  # ignored by a stuck conversation
    time.sleep(0.4)  # the consistency delay: a change would show by now
    assert _row(api, cid).conversation_end is not None and _live_open(api, cid)


def test_stuck_conversations_shown_ended_after_our_patch(sdk: object, admin: EmulatorAdmin) -> None:
    """``after_patch``: analytics tells the truth until a conversation PATCH reaches the stuck conversation, then
    shows it ended while it stays open."""
    admin.faults(analytics_stuck_ended="after_patch")
    stuck, normal = admin.create(1, "stuck")[0], admin.create(1)[0]
    api = gc.ConversationsApi(sdk)
    assert _row(api, stuck).conversation_end is None
    body = gc.Conversation()
    body.state = "disconnected"
    api.patch_conversations_message(stuck, body)
    assert _row(api, stuck).conversation_end is not None and _live_open(api, stuck)
    assert _row(api, normal).conversation_end is None  # only stuck conversations are affected
    with pytest.raises(urllib.error.HTTPError, match="400"):
        admin.faults(analytics_stuck_ended="sideways")  # an unknown mode is refused


def test_the_variants_are_command_line_flags() -> None:
    from genesys_closer.emulator.__main__ import build_parser

    args = build_parser().parse_args(["--analytics-no-message-type", "--analytics-no-conversation-end",
                                      "--analytics-stuck-ended", "after_patch"])
    assert (args.analytics_no_message_type, args.analytics_no_conversation_end, args.analytics_stuck_ended) == (
        True, True, "after_patch")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--analytics-stuck-ended", "sideways"])


# -- several orgs in one emulator (issue 20): a token sees only its own org; limits are per token, per org ----------
@pytest.fixture
def org_clients(emulator: EmulatorServer, admin: EmulatorAdmin) -> tuple[object, object]:
    """SDK clients of two more orgs: ``eu-prod`` allows 3 requests per minute per token, ``us-prod`` the default."""
    admin.add_org("eu-prod", "eu-client", "eu-secret", rate_limit_per_minute=3)
    admin.add_org("us-prod", "us-client", "us-secret")
    eu = gc.ApiClient(host=emulator.base_url).get_client_credentials_token("eu-client", "eu-secret")
    us = gc.ApiClient(host=emulator.base_url).get_client_credentials_token("us-client", "us-secret")
    return eu, us


def test_another_orgs_conversation_is_a_404_through_the_sdk(org_clients: tuple[object, object],
                                                            admin: EmulatorAdmin) -> None:
    eu, us = org_clients
    [theirs] = admin.create(1, org="eu-prod")
    [ours] = admin.create(1, org="us-prod")
    api = gc.ConversationsApi(us)
    body = gc.Conversation()
    body.state = "disconnected"
    for call in (lambda: api.get_conversations_message(theirs), lambda: api.get_conversation(theirs),
                 lambda: api.patch_conversations_message(theirs, body)):
        with pytest.raises(rest.ApiException) as caught:
            call()
        assert caught.value.status == 404 and '"code": "not.found"' in caught.value.body  # as for an unknown id
    assert admin.conversation(theirs, org="eu-prod")["open"]
    assert gc.ConversationsApi(eu).get_conversations_message(theirs).id == theirs  # its own org reads it
    rows = api.get_analytics_conversations_details(id=[theirs, ours]).conversations
    assert [row.conversation_id for row in rows] == [ours]
    hits = gc.AnalyticsApi(us).post_analytics_conversations_details_query(details_query()).conversations
    assert [row.conversation_id for row in hits] == [ours]


def test_limits_per_org_through_the_sdk(org_clients: tuple[object, object], admin: EmulatorAdmin) -> None:
    eu, us = org_clients
    [eu_id] = admin.create(1, org="eu-prod")
    [us_id] = admin.create(1, org="us-prod")
    eu_api, us_api = gc.ConversationsApi(eu), gc.ConversationsApi(us)
    for count in (1, 2, 3):
        eu_api.get_conversations_message(eu_id)
        assert eu.last_response.getheader("inin-ratelimit-allowed") == "3"
        assert eu.last_response.getheader("inin-ratelimit-count") == str(count)
    # The SDK's urllib3 would wait out Retry-After (the window's reset, up to a minute) and ask again; here it hands
    # the 429 back at once, so the test sees the answer itself.
    pool = eu.get_http_client().rest_client.pool_manager
    pool.connection_pool_kw["retries"] = urllib3.util.Retry(total=0, respect_retry_after_header=False)
    pool.clear()
    with pytest.raises(rest.ApiException) as caught:
        eu_api.get_conversations_message(eu_id)
    assert caught.value.status == 429 and '"code": "too.many.requests.retry.after"' in caught.value.body
    assert int(caught.value.headers["Retry-After"]) >= 1
    assert us_api.get_conversations_message(us_id).id == us_id  # the other org's token is far from its limit
    assert us.last_response.getheader("inin-ratelimit-allowed") == "300"
    assert us.last_response.getheader("inin-ratelimit-count") == "1"
    assert {r["org"] for r in admin.requests() if r["conversation_id"] == eu_id} == {"eu-prod"}
