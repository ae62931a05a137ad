"""The root of genesys-closer's one error hierarchy, and the configuration error (owned by this layer).

    CloserError                      base of every error genesys-closer raises
     ├── ConfigError                 invalid configuration (names the variable)      config.errors
     ├── InvalidArgument (ValueError) an API argument it does not take               shared.arguments
     │    └── BatchIdInUse           close_many(batch_id=) of an existing batch       shared.batches
     ├── InvalidId                   an ID that is not a UUID                         worker.genesys.errors
     │    └── InvalidConversationId  a conversation ID, rejected before any URL is built
     └── GenesysError                an HTTP exchange with Genesys Cloud failed       worker.genesys.errors
          ├── RetryableError ...
          └── PermanentError ...

Producer-side errors (unknown batch, rejected input) subclass CloserError in ``producer``.
"""

from __future__ import annotations


class CloserError(Exception):
    """Base of every error raised by genesys-closer."""


class ConfigError(CloserError):
    """The configuration is invalid; the message names the variable."""
