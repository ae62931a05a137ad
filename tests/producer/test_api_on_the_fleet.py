"""End to end through the shared fleet (real workers, real Redis, the emulator): refused options send nothing, a
batch with a chosen id runs to its end, reusing that id is refused without touching the batch, and a cancel after
it finished changes nothing."""

from __future__ import annotations

import uuid

import pytest
import redis

from genesys_closer.config import load_producer_settings
from genesys_closer.producer.api import BatchIdInUse, CloseClient
from genesys_closer.shared.stores.batch_state import BatchState
from tests.conftest import Fleet
from tests.services import worker_env


@pytest.fixture
def client(on_fleet: Fleet) -> CloseClient:
    shared = {k.lower(): v for k, v in worker_env(on_fleet.redis_url, "http://unused").items()
              if k in {"BROKER_VISIBILITY_TIMEOUT_SECONDS", "TASK_TIME_LIMIT_SECONDS", "TASK_SOFT_TIME_LIMIT_SECONDS"}}
    return CloseClient(load_producer_settings(redis_url=on_fleet.redis_url, **shared))


def test_options_and_batch_ids_on_the_fleet(on_fleet: Fleet, client: CloseClient) -> None:
    admin = on_fleet.admin
    raw = redis.Redis.from_url(on_fleet.redis_url)
    ids = admin.create(6)
    for on_invalid in ("skip", "", None, 123):
        with pytest.raises(ValueError, match="on_invalid must be one of 'record', 'abort'"):
            client.close_many([*ids, "not-an-id"], on_invalid=on_invalid)  # type: ignore[arg-type]
    assert client.batches() == [] and raw.llen("bulk") == 0

    batch_id = uuid.uuid4().hex
    batch = client.close_many([*ids[:5], "not-an-id"], batch_id=batch_id, label="chosen id")
    status = batch.wait(timeout=60)  # done reaches total: the invalid ID is an item too
    assert status.state is BatchState.FINISHED and status.total == 6
    assert status.counts == {"closed": 5, "invalid_id": 1}

    with pytest.raises(BatchIdInUse):
        client.close_many([ids[5]], batch_id=batch_id, label="overwrite")
    assert batch.cancel() == status  # finished is final: the cancel changed nothing
    assert client.batch(batch_id).status() == status
    assert admin.conversation(ids[5])["open"] is True  # the refused batch sent nothing
    assert [admin.conversation(cid)["patches"] for cid in ids[:5]] == [1] * 5
    client.close(ids[5], wait=True, timeout=60)  # leave no work behind
