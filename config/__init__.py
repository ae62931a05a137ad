"""Configuration: the settings (producer and worker views), their errors and Redis key names. Imports nothing of
``worker`` or ``producer``."""

from genesys_closer.config.errors import CloserError, ConfigError
from genesys_closer.config.settings import (
    ClosePolicy,
    ProducerSettings,
    WorkerSettings,
    get_producer_settings,
    get_worker_settings,
    load_producer_settings,
    load_worker_settings,
)

__all__ = ["ClosePolicy", "CloserError", "ConfigError", "ProducerSettings", "WorkerSettings", "get_producer_settings",
           "get_worker_settings", "load_producer_settings", "load_worker_settings"]
