"""The Genesys Data Actions shipped in integrations/genesys:

* ``close-conversation.custom.json``, for Admin > Integrations > Actions > *Import*: shaped like the ``.custom.json``
  exports Genesys publishes (its top-level keys are those of a published export, ``integrationType`` and
  ``actionType: custom`` included), and every other field loads into the official SDK's action model;
* ``close-conversation.action.json``, the body of ``POST /api/v2/integrations/actions`` (``PostActionInput``).

Both send the same request, with the input escaped for JSON by ``$esc.jsonString``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.sdk import gc

FOLDER = Path(__file__).resolve().parents[2] / "integrations" / "genesys"
EXPORT = FOLDER / "close-conversation.custom.json"
API_BODY = FOLDER / "close-conversation.action.json"
# The top-level keys of a published export: GenesysCloudBlueprints/terminate-voice-calls-with-no-queue,
# PutConversationTag.custom.json (commit daececd0a36bafcb0b711d62fc833fb42f932ffc), read 2026-12-01.
PUBLISHED_EXPORT_KEYS = ["name", "integrationType", "actionType", "config", "contract", "secure"]
EXPORT_ONLY = {"integrationType", "actionType"}  # what an export adds to the SDK's action model
WEB_SERVICES_DATA_ACTIONS = "custom-rest-actions"  # integrationType of Web Services Data Actions


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def as_sdk_model(document: dict[str, Any]) -> Any:
    client = gc.ApiClient()
    model = client._ApiClient__deserialize(document, "PostActionInput")
    assert isinstance(model, gc.PostActionInput)
    assert isinstance(model.config.request, gc.RequestConfig) and isinstance(model.contract.input, gc.PostInputContract)
    return client.sanitize_for_serialization(model)


def test_the_export_has_the_shape_of_a_published_one() -> None:
    document = load(EXPORT)
    assert list(document) == PUBLISHED_EXPORT_KEYS
    assert document["integrationType"] == WEB_SERVICES_DATA_ACTIONS and document["actionType"] == "custom"
    model_part = {k: v for k, v in document.items() if k not in EXPORT_ONLY}
    assert as_sdk_model(model_part) == model_part  # nothing the SDK's action model does not know


def test_the_api_body_loads_into_the_sdk_model() -> None:
    document = load(API_BODY)
    assert as_sdk_model(document) == document
    export = load(EXPORT)
    assert document["config"] == export["config"] and document["contract"] == export["contract"]


def render(template: str, conversation_id: str) -> str:
    """What Genesys' Velocity does with the template: ``$esc.jsonString`` escapes for a JSON string."""
    escaped = json.dumps(conversation_id)[1:-1]
    return template.replace("$esc.jsonString(${input.conversationId})", escaped)


@pytest.mark.parametrize("path", [EXPORT, API_BODY])
def test_the_action_calls_the_intake_as_documented(path: Path) -> None:
    document = load(path)
    request = document["config"]["request"]
    assert request["requestType"] == "POST" and "/v1/closes" in request["requestUrlTemplate"]
    assert request["headers"]["Authorization"] == "Bearer ${credentials.token}"
    template = request["requestTemplate"]
    assert re.findall(r"\$\{input\.[A-Za-z]+\}", template) == ["${input.conversationId}"]
    assert "$esc.jsonString(${input.conversationId})" in template  # every input escaped
    body = json.loads(render(template, 'x", "wrapupCode": "evil'))  # an input cannot add fields
    assert set(body) <= {"conversationId", "wrapupCode", "label"} and "wrapupCode" not in body
    assert 1 <= document["config"].get("timeoutSeconds", 15) <= 60
    assert document["contract"]["input"]["inputSchema"]["required"] == ["conversationId"]
