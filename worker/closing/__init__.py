"""The close domain: the close algorithm, its options and outcomes, conversation-state decisions, the sweep query.

Imports only ``config`` and ``worker.genesys``.
"""
