"""sweeps: see docs/architecture.md."""
