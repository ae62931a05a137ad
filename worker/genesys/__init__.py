"""The Genesys Cloud client: HTTP transport, OAuth token provider, fleet rate limiter, error tree, ID parsing.

Imports only ``config`` of genesys-closer (no Celery, no results store).
"""
