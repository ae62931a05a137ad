"""The fresh look after the in-flight lock: a conversation another close of ours has PATCHed is not PATCHed again.

The per-conversation in-flight lock serialises the task runs of one conversation, but a close can outlast its run:
a batch item's PATCH task releases the lock and waits in the confirm set for a batched read, and a PATCH retried
after a 5xx releases it between attempts. A second close of the same conversation taking the lock meanwhile (the
same id in another batch, a standalone close) used to PATCH again: two concurrent bulk runs of the same 200 ids
PATCHed 23 of them twice (issue 22).

So a close claims the conversation right after taking the lock and before any PATCH (``claim``), and keeps the claim
until its outcome is recorded (``release``). A claim held by another close means "a PATCH of ours is out and its
outcome is not known yet": the second close waits for it (a task retry with a countdown, no API call) and then sees
the recorded outcome (the batched path finishes ``already_closed`` from it, without a call; the direct path's first
read finds the conversation closed). A claim expires after ``ttl_seconds`` (the longest a close can take from its
PATCH to its outcome), so a close that died holding one delays the others at most that long; after that, a second
PATCH is possible (docs/reliability.md says when).

Owners are items, not task runs: a batch id (its item's retries and re-driven copies share the claim) or ``single``
for standalone closes (which share their progress record the same way).
"""

from __future__ import annotations

import redis

from genesys_closer.config.redis_keys import KEYS, RedisKeys
from genesys_closer.config.settings import WorkerSettings
from genesys_closer.shared.redis_connection import register_lua, text

STANDALONE = "single"


def claim_seconds(settings: WorkerSettings) -> float:
    """The longest a close can take from its PATCH to its recorded outcome: its batched confirmation, then the direct
    read that follows it, each run within the hard time limit, and a countdown between them."""
    return (settings.confirm_analytics_timeout_seconds + settings.confirm_timeout_seconds
            + 2 * settings.task_time_limit_seconds + settings.task_max_countdown_seconds)


def owner_of(batch_id: str | None) -> str:
    return batch_id or STANDALONE


class PatchGuard:
    """Who has a PATCH out for a conversation (one Redis key per conversation while a close is under way)."""

    def __init__(self, client: redis.Redis, ttl_seconds: float, *, keys: RedisKeys = KEYS) -> None:
        self.redis = client
        self.keys = keys
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self._claim = register_lua(client, "patch_claim.lua")
        self._release = register_lua(client, "patch_release.lua")

    def claim(self, conversation_id: str, batch_id: str | None) -> str | None:
        """Claim the conversation's PATCH for this item: None when it is this item's now, or the owner of the other
        close of ours that has one out (whose outcome is not recorded yet)."""
        holder = text(self._claim(keys=[self.keys.patch_claim(conversation_id)],
                                  args=[owner_of(batch_id), self.ttl_ms]))
        return holder or None

    def release(self, conversation_id: str, batch_id: str | None) -> None:
        """The item's outcome is recorded: the next close of this conversation may look at it."""
        self._release(keys=[self.keys.patch_claim(conversation_id)], args=[owner_of(batch_id)])
