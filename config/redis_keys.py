"""Every Redis key name genesys-closer uses, in one place.

All keys start with ``genesys-closer:``. Each org's own state (outcomes, batches and their feeds, token, limiter,
breaker, batched-check sets, sweeps, recovery marks) lives under its own prefix with the org as a Redis Cluster hash
tag, ``genesys-closer:{eu-prod}:...``, so every multi-key Lua script of one org touches one slot. The org
``default`` (the GENESYS_* variables) keeps the layout of single-org releases, ``genesys-closer:...`` without a tag:
an upgraded single-org deployment reads the outcomes, batches, feeds and tokens it wrote before (nothing in flight
is lost, no drain needed). Keys of the deployment rather than of an org (``replication_mark``, the intake's
idempotency keys) carry no org. Per-client keys use a digest of the OAuth client id (client ids stay out of
key names). Batch ids and conversation ids are validated before they reach a key
(``shared.stores.batch_store.is_batch_id``, ``shared.ids.parse_conversation_id``), so no caller can build a
key outside its own namespace.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from genesys_closer.config.orgs import DEFAULT_ORG, MAX_ORGS, check_org_name

PREFIX = "genesys-closer"


def client_digest(client_id: str) -> str:
    """The short digest that names one OAuth client's keys (rate-limit bucket, token, breaker)."""
    return hashlib.sha256(client_id.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RedisKeys:
    prefix: str = PREFIX
    org: str = DEFAULT_ORG
    root: str = PREFIX  # the deployment's own keys (not an org's)

    # -- outcomes and batches (service layer) ------------------------------------------------------------------
    def outcome(self, conversation_id: str) -> str:
        return f"{self.prefix}:outcome:{conversation_id}"

    def batch(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}"

    def batch_items(self, batch_id: str) -> str:
        return f"{self.batch(batch_id)}:items"

    def batch_members(self, batch_id: str) -> str:
        return f"{self.batch(batch_id)}:seen"

    @property
    def batches(self) -> str:
        return f"{self.prefix}:batches"

    @property
    def replication_mark(self) -> str:
        """Written by a producer after it enqueued work, so that WAIT covers the broker's writes too."""
        return f"{self.root}:replication-mark"

    def batch_enqueuer(self, batch_id: str) -> str:
        """The lease of whoever is storing or publishing the batch's items (see ``shared.enqueue_lease``)."""
        return f"{self.batch(batch_id)}:enqueuer"

    def batch_feed(self, batch_id: str) -> str:
        """The batch's valid IDs not yet handed to the broker, fixed-width, in input order (``shared.feeder``)."""
        return f"{self.batch(batch_id)}:feed"

    def batch_in_flight(self, batch_id: str) -> str:
        """The batch's items handed to the broker and not yet counted (sorted set, by time fed)."""
        return f"{self.batch(batch_id)}:in-flight"

    @property
    def feeding(self) -> str:
        """Batches the feeder serves: running (or ended) batches not finished yet."""
        return f"{self.prefix}:feeding"

    def feeder(self, part: str) -> str:
        """``part``: ``lock`` (one feeder run at a time), ``kick`` (a feeder run is on its way), ``again`` (a run
        came while another held the lock: the holder sends one more)."""
        return f"{self.prefix}:feeder:{part}"

    @property
    def enqueuing(self) -> str:
        """Batches being stored or published (state ``enqueuing``): what the recovery looks at when a lease ends."""
        return f"{self.prefix}:enqueuing"

    # -- the HTTP intake ---------------------------------------------------------------------------------------
    def idempotency(self, credential_digest: str, key_digest: str) -> str:
        """A batch upload's ``Idempotency-Key``, scoped to the credential that sent it (both as digests)."""
        return f"{self.root}:idempotency:{credential_digest}:{key_digest}"

    def console_session(self, session_digest: str) -> str:
        """A console login (``producer.console.sessions``), by a digest of its cookie; deleted by logout."""
        return f"{self.prefix}:console-session:{session_digest}"

    # -- one close ---------------------------------------------------------------------------------------------
    def inflight(self, conversation_id: str) -> str:
        return f"{self.prefix}:inflight:{conversation_id}"

    def patch_claim(self, conversation_id: str) -> str:
        """Which close of ours has a PATCH out for this conversation until its outcome is recorded (patch_guard)."""
        return f"{self.prefix}:patching:{conversation_id}"

    def progress(self, conversation_id: str, batch_id: str | None) -> str:
        """What earlier attempts of this close did (PATCH sent, calls made); survives re-driven tasks."""
        return f"{self.prefix}:progress:{batch_id or 'single'}:{conversation_id}"

    @property
    def rejected(self) -> str:
        """The most recent messages refused before they ran (bounds, options), newest first."""
        return f"{self.prefix}:rejected"

    @property
    def pending(self) -> str:
        """Standalone closes (not in a batch) enqueued or running, by task id: what a redrive can re-send."""
        return f"{self.prefix}:pending"

    # -- batched checks (fleet-wide) ---------------------------------------------------------------------------
    def checks(self, part: str) -> str:
        """``part``: ``precheck`` / ``confirm`` (sorted sets of batch items by due time), ``lock`` (the pump),
        ``kick`` (a pump is on its way)."""
        return f"{self.prefix}:checks:{part}"

    @property
    def analytics_trust(self) -> str:
        """Hash set while the fleet distrusts analytics confirmations (``worker.checks.analytics_trust``)."""
        return f"{self.prefix}:analytics-trust"

    # -- fleet jobs --------------------------------------------------------------------------------------------
    @property
    def restart_aftermath(self) -> str:
        """Set for a while after a Redis restart: recovery looks for orphaned deliveries on every check."""
        return f"{self.prefix}:restart-aftermath"

    @property
    def redis_run_id(self) -> str:
        """The Redis ``run_id`` the last recovery check saw: a new one means Redis restarted."""
        return f"{self.prefix}:redis-run-id"

    @property
    def redrive_lock(self) -> str:
        return f"{self.prefix}:redrive-lock"

    @property
    def sweep_lock(self) -> str:
        return f"{self.prefix}:sweep-lock"

    def sweep(self, sweep_id: str) -> str:
        return f"{self.prefix}:sweep:{sweep_id}"

    def sweep_candidates(self, sweep_id: str) -> str:
        return f"{self.sweep(sweep_id)}:candidates"

    # -- per OAuth client (Genesys client layer) ---------------------------------------------------------------
    def token(self, client_id: str) -> str:
        return f"{self.prefix}:token:{client_digest(client_id)}"

    def token_lock(self, client_id: str) -> str:
        return f"{self.token(client_id)}:lock"

    def token_refreshes(self, client_id: str) -> str:
        return f"{self.token(client_id)}:refreshes"

    def rate_limit(self, bucket: str, part: str) -> str:
        """``part``: ``tat`` (next slot), ``pause`` (fleet pause flag), ``imposed-interval``, ``pauses`` (count),
        ``used`` (requests granted per minute over the last hour, a hash: the console's chart), ``timeouts``
        (requests in a row that got no answer) and ``probe`` (the one request out meanwhile)."""
        return f"{self.prefix}:ratelimit:{bucket}:{part}"

    @property
    def rate_limit_buckets(self) -> str:
        """The workers' rate-limit buckets (a set), so that the console finds their pause, breaker and usage."""
        return f"{self.prefix}:ratelimit-buckets"

    def breaker(self, bucket: str, part: str) -> str:
        """``part``: ``failures`` (consecutive count) or ``open`` (the open reason)."""
        return f"{self.prefix}:breaker:{bucket}:{part}"


KEYS = RedisKeys()


def org_keys(org: str = DEFAULT_ORG) -> RedisKeys:
    """The key names of one org's state: ``default`` keeps the single-org layout, any other org has its own hash
    tag (``genesys-closer:{org}:...``). ``org`` is checked (it may come from a message). Not cached: for names a
    message made up (``keys_for`` caches the orgs a process works for)."""
    org = check_org_name(org)
    if org == DEFAULT_ORG:
        return KEYS
    return RedisKeys(prefix=f"{PREFIX}:{{{org}}}", org=org)


@functools.lru_cache(maxsize=4 * MAX_ORGS)  # bounded: a flood of made-up org names cannot grow a process
def keys_for(org: str = DEFAULT_ORG) -> RedisKeys:
    """``org_keys``, cached."""
    return org_keys(org)
