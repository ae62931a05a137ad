"""All configuration of genesys-closer, read once from the environment and an optional ``.env`` file.

Two views of one set of variables:

- ``ProducerSettings``: what apps, the CLI and the HTTP side need (Redis, broker, retention). Nothing about
  Genesys: a producer starts with only ``REDIS_URL`` set, whatever else is in the environment.
- ``WorkerSettings``: the producer's settings plus everything a worker needs to talk to Genesys Cloud.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from genesys_closer.config.errors import ConfigError
from genesys_closer.config.orgs import (
    DEFAULT_ORG,
    ORG_SCOPED,
    describe_org_error,
    is_org_name,
    org_overrides,
    read_orgs_file,
)
from genesys_closer.config.redis_target import RedisTarget, parse_sentinels
from genesys_closer.config.regions import resolve_domain


class ClosePolicy(StrEnum):
    """What to do when the conversation PATCH did not close every participant (narrowest first)."""

    FAIL = "fail"
    PARTICIPANTS = "participants"
    TEARDOWN = "teardown"


class ProducerSettings(BaseSettings):
    """Redis, broker and retention: every setting a producer (app, CLI) reads. Needs only ``REDIS_URL``."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True)

    # Redis, Celery, results
    redis_url: str = "redis://localhost:6379/0"
    # Redis Sentinel (off while REDIS_SENTINELS is unset): the sentinels name the master; REDIS_URL still gives its
    # password and database (see config/redis_target.py)
    redis_sentinels: str = ""
    redis_sentinel_master: str = ""
    redis_sentinel_password: SecretStr | None = None
    # Producers wait until this many replicas have their writes before a close or batch counts as accepted
    redis_wait_replicas: int = Field(0, ge=0, le=10)
    results_ttl_seconds: int = Field(7 * 24 * 3600, ge=60)
    batch_enqueue_lease_seconds: float = Field(30.0, ge=1, le=600)  # a dead batch builder's batch is taken over after
    batch_in_flight: int = Field(300, ge=1, le=5000)  # a batch's items handed to the broker and not yet counted
    broker_visibility_timeout_seconds: int = Field(90, ge=10)
    broker_restore_interval_seconds: int = Field(5, ge=1, le=600)
    broker_reconnect_max_seconds: float = Field(5.0, ge=0.5, le=60)  # a worker retries a lost Redis at least this often
    task_soft_time_limit_seconds: int = Field(45, ge=5)
    task_time_limit_seconds: int = Field(60, ge=6)

    # Several orgs: a TOML file of named orgs besides the GENESYS_* variables' org "default" (config/orgs.py)
    orgs_file: str = ""

    # Logging
    log_level: str = "INFO"
    log_format: str = Field("text", pattern="^(text|json)$")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels(cls, value: str) -> str:
        parse_sentinels(value)
        return value

    @field_validator("redis_sentinel_master")
    @classmethod
    def _master_name(cls, value: str) -> str:
        value = value.strip()
        if value and not value.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"{value[:100]!r} is not a master name (letters, digits, '-', '_', '.')")
        return value

    @model_validator(mode="after")
    def _sentinel_consistent(self) -> ProducerSettings:
        if not self.redis_sentinels.strip():
            stray = [name for name, value in (("REDIS_SENTINEL_MASTER", self.redis_sentinel_master),
                                              ("REDIS_SENTINEL_PASSWORD", self.redis_sentinel_password)) if value]
            if stray:
                raise ValueError(f"{stray[0]} is set but REDIS_SENTINELS is not (set both to use Redis Sentinel)")
            return self
        if not self.redis_sentinel_master:
            raise ValueError("REDIS_SENTINEL_MASTER must be set when REDIS_SENTINELS is (the name in the sentinels' "
                             "'sentinel monitor NAME ...' line)")
        if not self.redis_url.startswith("redis://"):
            raise ValueError("REDIS_URL must start with redis:// when REDIS_SENTINELS is set (it gives the master's "
                             "password and database; TLS and unix sockets are not supported with Sentinel)")
        return self

    @property
    def redis_target(self) -> RedisTarget:
        """Where every client connects: REDIS_URL, or the master the sentinels name."""
        return RedisTarget(self.redis_url, parse_sentinels(self.redis_sentinels), self.redis_sentinel_master,
                           self.redis_sentinel_password)

    @property
    def max_countdown_seconds(self) -> int:
        """The longest countdown/ETA a close may carry: beyond the broker's visibility timeout minus the task time
        limit, the broker would redeliver the message while the first copy still waits, and both would run."""
        return max(0, self.broker_visibility_timeout_seconds - self.task_time_limit_seconds)


GRANTS_FORM = ("grants are token:org,org;token:org, grants separated by ';', and tokens contain no ':' "
                     "or ';'")


class IntakeSettings(ProducerSettings):
    """The HTTP intake (``genesys-closer serve``): Redis plus its own authentication. It refuses to start without
    ``INTAKE_TOKENS`` or ``INTAKE_BASIC_AUTH``."""

    # bearer tokens, comma-separated (several: rotation), each for the org "default"; or with grants,
    # "token1:eu-prod,eu-test;token2:us-prod" (each token acts only for the orgs it names)
    intake_tokens: SecretStr | None = None
    intake_basic_auth: SecretStr | None = None    # "user:password" (Genesys Data Action credentials can be Basic)
    intake_max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    intake_max_batch_ids: int = Field(100_000, ge=1, le=1_000_000)
    intake_max_wait_seconds: float = Field(30.0, ge=0, le=120)
    intake_rate_limit_per_minute: int = Field(1200, ge=1, le=1_000_000)  # requests per credential
    intake_max_waiting: int = Field(50, ge=0, le=10_000)  # concurrent ?wait= requests per process; beyond: 503
    intake_max_enqueuing_batches: int = Field(8, ge=1, le=256)  # batches published in the background per process
    intake_idempotency_ttl_seconds: int = Field(24 * 3600, ge=60, le=7 * 24 * 3600)  # how long a key is remembered
    intake_header_timeout_seconds: float = Field(10.0, gt=0, le=300)  # to receive a request's headers
    intake_body_timeout_seconds: float = Field(60.0, gt=0, le=3600)  # to receive a request's whole body
    intake_keepalive_seconds: float = Field(5.0, gt=0, le=300)  # an idle keep-alive connection is closed after it
    intake_max_connections: int = Field(1000, ge=1, le=100_000)  # per process; beyond: 503 (uvicorn)
    console_session_seconds: int = Field(8 * 3600, ge=60, le=7 * 24 * 3600)  # a console login lasts this long
    console_live_seconds: float = Field(2.0, ge=0.5, le=60)  # how often the console's live views are refreshed

    @model_validator(mode="after")
    def _some_auth(self) -> IntakeSettings:
        if not self.bearer_tokens() and self.basic_credentials() is None:
            raise ValueError("INTAKE_TOKENS (or INTAKE_BASIC_AUTH) must be set: the intake never runs without auth")
        basic = self.intake_basic_auth.get_secret_value() if self.intake_basic_auth else ""
        if basic and ":" not in basic:
            raise ValueError("INTAKE_BASIC_AUTH must be user:password")
        if basic and len(basic.partition(":")[2]) < 16:  # the console's login form takes it: no guessable password
            raise ValueError("INTAKE_BASIC_AUTH: the password must be at least 16 characters")
        short = [t for t in self.bearer_tokens() if len(t) < 16]
        if short:
            raise ValueError("INTAKE_TOKENS: each token must be at least 16 characters")
        grants = self.token_grants()  # every grant names valid orgs
        if self.orgs_file:  # and, when the intake is given the orgs file, orgs it has (no secrets needed)
            known = {DEFAULT_ORG, *read_orgs_file(self.orgs_file)}
            for number, orgs in enumerate(grants.values(), start=1):
                if not orgs <= known:  # the name is not shown: a token holding ':' or ';' may have been split into it
                    raise ValueError(f"INTAKE_TOKENS: grant {number} names an org ORGS_FILE does not name (not "
                                     f"shown: {GRANTS_FORM})")
        return self

    def token_grants(self) -> dict[str, frozenset[str]]:
        """Each bearer token and the orgs it may close in and read. The plain form (``tok1,tok2``) grants the org
        ``default``; the grants form (any ``:`` in the value) is ``token:org,org;token:org``. Tokens therefore
        contain neither ``:`` nor ``;``."""
        raw = self.intake_tokens.get_secret_value() if self.intake_tokens else ""
        if ":" not in raw:
            return {token.strip(): frozenset({DEFAULT_ORG}) for token in raw.split(",") if token.strip()}
        grants: dict[str, frozenset[str]] = {}
        for number, entry in enumerate((e.strip() for e in raw.split(";")), start=1):
            if not entry:
                continue
            token, colon, orgs = entry.partition(":")
            names = [name.strip() for name in orgs.split(",") if name.strip()]
            if not colon or not token.strip() or not names:
                raise ValueError(f"INTAKE_TOKENS: grant {number} must be token:org[,org...] (grants separated by ';')")
            bad = [place for place, name in enumerate(names, start=1) if not is_org_name(name)]
            if bad:  # not shown: a token holding ':' or ';', or a ',' for a ';', puts token text where an org goes
                raise ValueError(f"INTAKE_TOKENS: grant {number}: org {bad[0]} of the grant is not an org name (1 to "
                                 f"40 of a-z, 0-9, '-'; {GRANTS_FORM})")
            if token.strip() in grants:
                raise ValueError(f"INTAKE_TOKENS: grant {number}: the same token is granted twice")
            grants[token.strip()] = frozenset(names)
        return grants

    def bearer_tokens(self) -> list[str]:
        return list(self.token_grants())

    def basic_credentials(self) -> tuple[str, str] | None:
        raw = self.intake_basic_auth.get_secret_value() if self.intake_basic_auth else ""
        if not raw:
            return None
        user, _, password = raw.partition(":")
        return user, password


class WorkerSettings(ProducerSettings):
    """Every setting, named exactly as its environment variable (case-insensitive)."""

    # Genesys Cloud
    genesys_client_id: str | None = None
    genesys_client_secret: SecretStr | None = None
    genesys_environment: str = "mypurecloud.com"
    genesys_api_url: str | None = None
    genesys_login_url: str | None = None
    genesys_rate_limit_per_minute: int = Field(300, ge=1, le=1_000_000)
    genesys_rate_limit_headroom: float = Field(0.97, gt=0.1, le=1.0)
    genesys_default_cooldown_seconds: float = Field(30.0, ge=0.1, le=600)
    genesys_connect_timeout_seconds: float = Field(3.05, gt=0, le=60)
    genesys_read_timeout_seconds: float = Field(15.0, gt=0, le=300)
    genesys_token_expiry_margin_seconds: float = Field(300.0, ge=0, le=3600)

    # Close algorithm
    close_policy: ClosePolicy = ClosePolicy.FAIL
    close_allowed_policies: str = ""
    close_allow_other_message_types: bool = False
    close_wrapup_code: str | None = None
    close_wrapup_notes: str = "Closed by genesys-closer"
    confirm_timeout_seconds: float = Field(10.0, gt=0, le=600)
    confirm_initial_delay_seconds: float = Field(0.4, ge=0, le=60)
    confirm_max_interval_seconds: float = Field(2.0, gt=0, le=60)

    # Batched checks for batch items (pre-check and confirmation read many conversations per analytics call)
    batched_checks: bool = True
    analytics_chunk_size: int = Field(100, ge=1, le=1000)
    batched_gather_seconds: float = Field(5.0, ge=0, le=60)
    confirm_analytics_first_check_seconds: float = Field(1.0, ge=0, le=600)
    confirm_analytics_max_interval_seconds: float = Field(5.0, gt=0, le=600)
    confirm_analytics_timeout_seconds: float = Field(60.0, gt=0, le=3600)
    # Trust but verify: a share of analytics confirmations is read live (at least one per read that confirms any);
    # after a disagreement the fleet confirms every item live for this long, and until a sample is clean again.
    analytics_verify_share: float = Field(0.02, ge=0, le=1)
    analytics_distrust_seconds: float = Field(600.0, ge=0, le=86_400)
    # Flower: the pump sends one task event per close it confirms, so the task that waited shows the outcome
    batched_outcome_events: bool = True

    # Retries and the circuit breaker
    retry_max_attempts: int = Field(4, ge=1, le=20)
    retry_base_seconds: float = Field(0.5, gt=0, le=60)
    retry_cap_seconds: float = Field(60.0, gt=0, le=3600)
    retry_inline_max_wait_seconds: float = Field(5.0, ge=0, le=120)
    task_max_retries: int = Field(100, ge=0, le=1000)
    task_retry_window_seconds: int = Field(3600, ge=0, le=7 * 86_400)
    circuit_breaker_threshold: int = Field(5, ge=1, le=1000)
    circuit_breaker_open_seconds: float = Field(300.0, ge=1, le=86_400)

    # Worker processes and tasks
    task_max_countdown_seconds: int = Field(25, ge=1)
    worker_concurrency: int = Field(8, ge=1, le=256)
    batch_stall_seconds: int = Field(300, ge=10)
    recovery_check_seconds: float = Field(10.0, ge=1, le=300)
    metrics_port: int = Field(0, ge=0, le=65535)

    # Scheduled sweeps (Celery beat); off while SWEEP_SCHEDULE_SECONDS is 0
    sweep_schedule_seconds: int = Field(0, ge=0, le=86_400)
    sweep_min_age_minutes: float = Field(60.0, ge=0)
    sweep_idle_minutes: float | None = Field(None, ge=0)
    sweep_queue_ids: str = ""
    sweep_skip_connected_agent: bool = False
    sweep_max_count: int | None = Field(None, ge=1)
    sweep_lookback_days: float = Field(30.0, gt=0, le=90)
    sweep_interval_days: float = Field(7.0, gt=0, le=31)
    sweep_include_parked: bool = False
    sweep_paging_cap: int = Field(100_000, ge=100, le=100_000)
    sweep_time_limit_seconds: int = Field(1800, ge=60)

    @field_validator("close_allowed_policies")
    @classmethod
    def _known_policies(cls, value: str) -> str:
        names = [name.strip().lower() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in {p.value for p in ClosePolicy}]
        if unknown:
            raise ValueError(f"unknown policy {unknown[0]!r}; one of {', '.join(p.value for p in ClosePolicy)}")
        return ",".join(names)

    @property
    def allowed_policies(self) -> set[ClosePolicy]:
        """The policies a request may ask for: CLOSE_ALLOWED_POLICIES, or by default CLOSE_POLICY and the narrower
        ones (fail < participants < teardown); CLOSE_POLICY itself is always allowed."""
        if self.close_allowed_policies:
            chosen = {ClosePolicy(name) for name in self.close_allowed_policies.split(",")}
        else:
            order = list(ClosePolicy)
            chosen = set(order[: order.index(self.close_policy) + 1])
        return chosen | {self.close_policy}

    @field_validator("genesys_environment")
    @classmethod
    def _known_environment(cls, value: str) -> str:
        return resolve_domain(value)

    @field_validator("genesys_api_url", "genesys_login_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent_limits(self) -> WorkerSettings:
        if self.task_time_limit_seconds <= self.task_soft_time_limit_seconds:
            raise ValueError("TASK_TIME_LIMIT_SECONDS must be greater than TASK_SOFT_TIME_LIMIT_SECONDS")
        longest = self.task_time_limit_seconds + self.task_max_countdown_seconds
        if self.broker_visibility_timeout_seconds <= longest:
            raise ValueError(
                "BROKER_VISIBILITY_TIMEOUT_SECONDS must exceed TASK_TIME_LIMIT_SECONDS + "
                f"TASK_MAX_COUNTDOWN_SECONDS ({longest})"
            )
        recovery = self.broker_visibility_timeout_seconds + self.broker_restore_interval_seconds
        if self.batch_stall_seconds <= recovery:
            raise ValueError("BATCH_STALL_SECONDS must exceed BROKER_VISIBILITY_TIMEOUT_SECONDS + "
                             f"BROKER_RESTORE_INTERVAL_SECONDS ({recovery}): the broker recovers first")
        return self

    @property
    def inflight_lock_seconds(self) -> int:
        """The per-conversation lock outlives the longest run of a task (its hard time limit), so a second copy of
        a close can never run while the first still can."""
        return self.task_time_limit_seconds + 1

    @property
    def api_url(self) -> str:
        return self.genesys_api_url or f"https://api.{self.genesys_environment}"

    @property
    def login_url(self) -> str:
        if self.genesys_login_url:
            return self.genesys_login_url
        if self.genesys_api_url:
            return self.genesys_api_url.replace("//api.", "//login.", 1)
        return f"https://login.{self.genesys_environment}"

    def sweep_filters(self) -> dict[str, Any]:
        """The scheduled sweep's filters, as ``SweepFilters.from_dict`` takes them."""
        return {
            "min_age_minutes": self.sweep_min_age_minutes,
            "idle_minutes": self.sweep_idle_minutes,
            "queue_ids": [q.strip() for q in self.sweep_queue_ids.split(",") if q.strip()],
            "skip_connected_agent": self.sweep_skip_connected_agent,
            "max_count": self.sweep_max_count,
            "lookback_days": self.sweep_lookback_days,
            "interval_days": self.sweep_interval_days,
            "include_parked": self.sweep_include_parked,
        }

    def require_credentials(self) -> tuple[str, SecretStr]:
        """The OAuth client credentials; only workers need them."""
        if not self.genesys_client_id or not self.genesys_client_id.strip():
            raise ConfigError("GENESYS_CLIENT_ID is not set (workers need OAuth client credentials)")
        if self.genesys_client_secret is None or not self.genesys_client_secret.get_secret_value().strip():
            raise ConfigError("GENESYS_CLIENT_SECRET is not set (workers need OAuth client credentials)")
        return self.genesys_client_id, self.genesys_client_secret


S = TypeVar("S", bound=ProducerSettings)


def load_org_settings(base: WorkerSettings, environ: dict[str, str] | None = None, *,
                      need_secrets: bool = True,
                      secrets_of: Collection[str] | None = None) -> dict[str, WorkerSettings]:
    """Every org this deployment serves, by name, each as its own ``WorkerSettings``: the org ``default`` (the
    GENESYS_* variables) when ``GENESYS_CLIENT_ID`` is set or no ``ORGS_FILE`` is, and each org of ``ORGS_FILE``
    (its own client, region, limit, policies, wrap-up code and sweep; the process's other settings). Raises
    ConfigError naming the org and field. ``need_secrets=False``: an org whose secret variable is unset is still
    listed, without its secret (for what needs only the schedules: Flower's and beat's Celery configuration).
    ``secrets_of``: only these orgs need their secrets (``check --org NAME`` on a host holding that org's alone)."""
    orgs: dict[str, WorkerSettings] = {}
    if not base.orgs_file or base.genesys_client_id:
        orgs[DEFAULT_ORG] = base
    if not base.orgs_file:
        return orgs
    where = f"ORGS_FILE {base.orgs_file!r}"
    inherited = {name: value for name, value in base.model_dump().items() if name not in ORG_SCOPED}
    defaults = {name: WorkerSettings.model_fields[name].default for name in ORG_SCOPED}
    for name, entry in read_orgs_file(base.orgs_file).items():
        needed = need_secrets if secrets_of is None else name in secrets_of
        values = {**inherited, **defaults, **org_overrides(where, name, entry, environ, need_secret=needed)}
        try:
            orgs[name] = WorkerSettings.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(describe_org_error(where, name, exc)) from None
    return orgs


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        location = [str(part) for part in item.get("loc", ())]
        name = location[0].upper() if location else "configuration"
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{name}: {message}")
    return "invalid configuration: " + "; ".join(problems)


def _load(cls: type[S], overrides: dict[str, Any]) -> S:
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def load_producer_settings(**overrides: Any) -> ProducerSettings:
    """Producer settings from the environment (and ``.env``); worker-only variables are not read."""
    return _load(ProducerSettings, overrides)


def load_intake_settings(**overrides: Any) -> IntakeSettings:
    """The HTTP intake's settings; raise ConfigError naming each bad variable (no auth configured included)."""
    return _load(IntakeSettings, overrides)


def load_worker_settings(**overrides: Any) -> WorkerSettings:
    """Worker settings from the environment (and ``.env``); raise ConfigError naming each bad variable."""
    return _load(WorkerSettings, overrides)


@functools.cache
def get_producer_settings() -> ProducerSettings:
    """The process-wide producer settings, built on first use."""
    return load_producer_settings()


@functools.cache
def get_worker_settings() -> WorkerSettings:
    """The process-wide worker settings, built on first use."""
    return load_worker_settings()


@functools.cache
def get_org_settings() -> dict[str, WorkerSettings]:
    """The process-wide settings of every org (``load_org_settings``), built on first use."""
    return load_org_settings(get_worker_settings())
