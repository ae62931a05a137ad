"""Real services for tests (loopback only): re-exported from the shared local stack."""

from __future__ import annotations

from genesys_closer.emulator.stack import (
    BeatProcess,
    CeleryWorker,
    FlowerProcess,
    RedisServer,
    free_port,
    start_workers,
)
from genesys_closer.emulator.stack import closer_env as _closer_env


def worker_env(redis_url: str, emulator_url: str, **overrides: object) -> dict[str, str]:
    """Worker settings tuned for fast tests: short confirm polls and time limits."""
    defaults: dict[str, object] = {
        "GENESYS_RATE_LIMIT_PER_MINUTE": 60000,
        "CONFIRM_INITIAL_DELAY_SECONDS": 0.2,  # > the test emulators' consistency delay: one confirming read
        "CONFIRM_MAX_INTERVAL_SECONDS": 0.3,
        "CONFIRM_TIMEOUT_SECONDS": 5,
        "RETRY_BASE_SECONDS": 0.1,
        "RETRY_INLINE_MAX_WAIT_SECONDS": 3,
        "GENESYS_DEFAULT_COOLDOWN_SECONDS": 2,
        "TASK_SOFT_TIME_LIMIT_SECONDS": 20,
        "TASK_TIME_LIMIT_SECONDS": 25,
        "TASK_MAX_COUNTDOWN_SECONDS": 5,
        "BROKER_VISIBILITY_TIMEOUT_SECONDS": 35,
        "BROKER_RESTORE_INTERVAL_SECONDS": 2,
        "BATCH_STALL_SECONDS": 45,
        "BATCHED_GATHER_SECONDS": 0.3,
        "CONFIRM_ANALYTICS_FIRST_CHECK_SECONDS": 0.3,
        "CONFIRM_ANALYTICS_MAX_INTERVAL_SECONDS": 1,
        "CONFIRM_ANALYTICS_TIMEOUT_SECONDS": 6,
    }
    defaults.update({k.upper(): v for k, v in overrides.items()})
    return _closer_env(redis_url, emulator_url, **defaults)


__all__ = ["BeatProcess", "CeleryWorker", "FlowerProcess", "RedisServer", "free_port", "start_workers", "worker_env"]
