"""A stateful Genesys Cloud emulator for tests, the demo and the benchmarks.

It speaks the real paths, JSON shapes, status codes, headers and error bodies of the Genesys Cloud Platform API
calls that genesys-closer makes (see ``docs/emulator.md``), plus a test-only admin API under ``/__emulator__/``.
"""

from genesys_closer.emulator.server import EmulatorServer, start_in_thread
from genesys_closer.emulator.state import EmulatorConfig, EmulatorState

__all__ = ["EmulatorConfig", "EmulatorServer", "EmulatorState", "start_in_thread"]
