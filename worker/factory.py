"""Wiring: settings in, a ready ``Closer`` out. The only place that reads settings for the worker's parts."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis

from config.settings import Settings
from worker.auth import InProcessTokenProvider, RedisTokenProvider, TokenProvider
from worker.closer import CloseOptions, Closer, ConfirmSettings, RetrySettings
from worker.genesys_client import GenesysClient, OAuthClient, Transport, TransportHooks
from worker.rate_limit import InMemoryRateLimiter, RateLimiter, RedisRateLimiter


@dataclass
class Service:
    """Everything a worker process needs to close conversations."""

    closer: Closer
    client: GenesysClient
    limiter: RateLimiter
    tokens: TokenProvider
    default_options: CloseOptions


def bucket_name(client_id: str) -> str:
    """The rate-limit bucket of an OAuth client (a digest: client ids stay out of key names)."""
    return hashlib.sha256(client_id.encode()).hexdigest()[:12]


def metric_hooks() -> TransportHooks:
    from worker import metrics

    return TransportHooks(on_reply=metrics.on_reply, on_transport_error=metrics.on_transport_error,
                          on_limiter_wait=metrics.on_limiter_wait, on_pause=metrics.on_pause)


def build_service(settings: Settings, redis_client: redis.Redis | None = None,
                  hooks: TransportHooks | None = None) -> Service:
    """Build the closer. With ``redis_client`` the token and the rate limit are shared by the fleet."""
    from worker import metrics
    client_id, secret = settings.require_credentials()
    limiter: RateLimiter
    if redis_client is not None:
        limiter = RedisRateLimiter(redis_client, bucket_name(client_id), settings.genesys_rate_limit_per_minute,
                                   settings.genesys_rate_limit_headroom)
    else:
        limiter = InMemoryRateLimiter(settings.genesys_rate_limit_per_minute, settings.genesys_rate_limit_headroom)
    transport = Transport(
        limiter,
        connect_timeout_seconds=settings.genesys_connect_timeout_seconds,
        read_timeout_seconds=settings.genesys_read_timeout_seconds,
        default_pause_seconds=settings.genesys_default_cooldown_seconds,
        max_limiter_wait_seconds=settings.retry_inline_max_wait_seconds,
        hooks=hooks or metric_hooks(),
    )
    oauth = OAuthClient(transport, settings.login_url, client_id, secret.get_secret_value())
    tokens: TokenProvider
    if redis_client is not None:
        tokens = RedisTokenProvider(redis_client, oauth.fetch_token, client_id, secret.get_secret_value(),
                                    margin_seconds=settings.genesys_token_expiry_margin_seconds,
                                    on_refresh=metrics.TOKEN_REFRESHES.inc)
    else:
        tokens = InProcessTokenProvider(oauth.fetch_token, settings.genesys_token_expiry_margin_seconds)
    client = GenesysClient(transport, settings.api_url, tokens)
    closer = Closer(
        client,
        retry=RetrySettings(settings.retry_max_attempts, settings.retry_base_seconds, settings.retry_cap_seconds,
                            settings.retry_inline_max_wait_seconds),
        confirm=ConfirmSettings(settings.confirm_timeout_seconds, settings.confirm_initial_delay_seconds,
                                settings.confirm_max_interval_seconds),
    )
    return Service(closer, client, limiter, tokens, CloseOptions.from_settings(settings))
