"""The operator console: pages under ``/ui`` of ``genesys-closer serve`` over the intake's own API (see
``pages``, ``api``, ``auth``, ``sessions``, ``live``; docs/console.md)."""
