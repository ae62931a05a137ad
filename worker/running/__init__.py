"""running: see docs/architecture.md."""
