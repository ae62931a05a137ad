"""The Genesys Data Action shipped in integrations/genesys: it loads into the official SDK's models for actions
(``PostActionInput``, the body of ``POST /api/v2/integrations/actions``) and no field is dropped on the way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

gc = pytest.importorskip("PureCloudPlatformClientV2")

ACTION = Path(__file__).resolve().parents[2] / "integrations" / "genesys" / "close-conversation.action.json"


def test_every_field_survives_the_sdk_model() -> None:
    document = json.loads(ACTION.read_text())
    client = gc.ApiClient()
    model = client._ApiClient__deserialize(document, "PostActionInput")
    assert isinstance(model, gc.PostActionInput)
    assert isinstance(model.config.request, gc.RequestConfig) and isinstance(model.contract.input, gc.PostInputContract)
    assert client.sanitize_for_serialization(model) == document  # nothing the SDK does not know


def test_the_action_calls_the_intake_as_documented() -> None:
    document = json.loads(ACTION.read_text())
    request = document["config"]["request"]
    assert request["requestType"] == "POST" and "/v1/closes" in request["requestUrlTemplate"]
    assert request["headers"]["Authorization"] == "Bearer ${credentials.token}"
    body = json.loads(request["requestTemplate"].replace("${input.conversationId}", "x"))
    assert set(body) <= {"conversationId", "wrapupCode", "label"}  # the intake refuses unknown fields
    assert document["contract"]["input"]["inputSchema"]["required"] == ["conversationId"]
