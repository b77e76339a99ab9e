"""The audit database: models, sessions, migrations, study state transitions, audit queries.

Imports nothing else of lungpath's (DESIGN.md).
"""
