"""The audit database: models, sessions, migrations, study state transitions, audit queries.

Imports nothing else of lungpath's (DESIGN.md). Modules, by job:

- ``db.engine``: ``create_engine_for(url, read_only=...)``, ``transaction(engine)``;
- ``db.models``: the tables (``Study``, ``Instance``, ``Job``, ``Result``, ``Delivery``,
  ``Association``, ``AuditEvent``) and ``StudyState``;
- ``db.migrations``: ``upgrade(url)``, ``check_schema(engine)`` / ``SchemaError``;
- ``db.events``: the audit vocabulary (``EventType``, ``Outcome``, ATNA codes) and ``audit()``;
- ``db.ingest``: what the Storage SCP writes (associations, instances, stability sweep);
- ``db.states``: every study state transition of DESIGN.md, each with its audit event;
- ``db.deliveries``: result deliveries and their attempts;
- ``db.queries``: the administrators' queries behind ``lungpath audit``;
- ``db.retention``: ``lungpath purge``.
"""
