"""Chaos tests (crashes, Redis restarts, flaps and failovers, fault storms): each starts its own Redis, workers and
emulator, because each breaks them. They share the end-to-end fixtures."""

from tests.e2e.conftest import StartWorkers, client, producer_settings, start

__all__ = ["StartWorkers", "client", "producer_settings", "start"]
