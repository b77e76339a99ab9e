"""Initial schema: associations, instances, studies, jobs, results, deliveries, audit events.

The audit event table is append-only on both back ends: a trigger refuses every UPDATE, and
every DELETE of an event younger than the retention recorded in ``audit_retention`` (NULL,
the default, keeps every event). PostgreSQL also refuses TRUNCATE.

Revision ID: e200f5b1dff3
Revises:
Create Date: 2026-11-26 00:42:42
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e200f5b1dff3"
down_revision = None
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STATES = "'RECEIVING', 'COMPLETE', 'QUEUED', 'PROCESSING', 'DONE', 'NOT_ANALYZABLE', 'FAILED'"

_REFUSED = "audit_events is append-only"
SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, '{_REFUSED}: UPDATE is not allowed'); END""",
    f"""CREATE TRIGGER audit_events_retention BEFORE DELETE ON audit_events
    WHEN NOT COALESCE(OLD.occurred_at < strftime('%Y-%m-%d %H:%M:%f', 'now',
        '-' || (SELECT days FROM audit_retention WHERE id = 1) || ' days'), 0)
    BEGIN SELECT RAISE(ABORT,
        '{_REFUSED}: only events older than the audit retention may be deleted'); END""",
]
POSTGRESQL_TRIGGERS = [
    f"""CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE keep_days integer;
    BEGIN
      IF TG_OP = 'DELETE' THEN
        SELECT days INTO keep_days FROM audit_retention WHERE id = 1;
        IF keep_days IS NOT NULL
           AND OLD.occurred_at < now() - make_interval(days => keep_days) THEN
          RETURN OLD;
        END IF;
        RAISE EXCEPTION '{_REFUSED}: only events older than the audit retention may be deleted';
      END IF;
      RAISE EXCEPTION '{_REFUSED}: % is not allowed', TG_OP;
    END $$""",
    """CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()""",
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()""",
]


def upgrade() -> None:
    op.create_table(
        "associations",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("calling_ae", sa.String(length=16), nullable=False),
        sa.Column("called_ae", sa.String(length=16), nullable=False),
        sa.Column("peer_host", sa.String(length=255), nullable=False),
        sa.Column("peer_port", sa.Integer(), nullable=False),
        sa.Column("tls", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("aborted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_associations"),
    )
    op.create_index("ix_associations_calling_ae", "associations", ["calling_ae"])
    op.create_index("ix_associations_started_at", "associations", ["started_at"])
    op.create_table(
        "audit_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=48), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=True),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("calling_ae", sa.String(length=16), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index(
        "ix_audit_events_calling_ae_occurred_at", "audit_events", ["calling_ae", "occurred_at"]
    )
    op.create_index("ix_audit_events_occurred_at", "audit_events", ["occurred_at"])
    op.create_index(
        "ix_audit_events_study_uid_occurred_at", "audit_events", ["study_uid", "occurred_at"]
    )
    op.create_table(
        "audit_retention",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("days", sa.Integer(), nullable=True),
        sa.CheckConstraint("days IS NULL OR days >= 1", name="ck_audit_retention_days_positive"),
        sa.CheckConstraint("id = 1", name="ck_audit_retention_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_retention"),
    )
    op.create_table(
        "studies",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("analysis_revision", sa.Integer(), nullable=True),
        sa.Column("calling_ae", sa.String(length=16), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_instance_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("receiving_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("complete_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processing_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            f"state IN ({STATES})",
            name="ck_studies_state",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_studies"),
        sa.UniqueConstraint("study_uid", name="uq_studies_study_uid"),
    )
    op.create_index("ix_studies_calling_ae", "studies", ["calling_ae"])
    op.create_index("ix_studies_state", "studies", ["state"])
    op.create_index("ix_studies_state_last_instance_at", "studies", ["state", "last_instance_at"])
    op.create_index("ix_studies_updated_at", "studies", ["updated_at"])
    op.create_table(
        "instances",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("study_id", BIG_ID, nullable=False),
        sa.Column("association_id", BIG_ID, nullable=True),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("own_output", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["association_id"],
            ["associations.id"],
            name="fk_instances_association_id_associations",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name="fk_instances_study_id_studies", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
        sa.UniqueConstraint("sop_instance_uid", name="uq_instances_sop_instance_uid"),
    )
    op.create_index("ix_instances_association_id", "instances", ["association_id"])
    op.create_index("ix_instances_series_uid", "instances", ["series_uid"])
    op.create_index("ix_instances_study_id", "instances", ["study_id"])
    op.create_table(
        "jobs",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("study_id", BIG_ID, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("celery_task_id", sa.String(length=64), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("device", sa.String(length=64), nullable=True),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("checkpoint_sha256", sa.String(length=64), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name="fk_jobs_study_id_studies", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("study_id", "revision", name="uq_jobs_study_revision"),
    )
    op.create_table(
        "results",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("study_id", BIG_ID, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("checkpoint_sha256", sa.String(length=64), nullable=False),
        sa.Column("job_id", BIG_ID, nullable=True),
        sa.Column("predecessor_id", BIG_ID, nullable=True),
        sa.Column("sr_sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sr_series_uid", sa.String(length=64), nullable=False),
        sa.Column("sr_path", sa.String(length=1024), nullable=False),
        sa.Column("sc_sop_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("sc_series_uid", sa.String(length=64), nullable=True),
        sa.Column("sc_path", sa.String(length=1024), nullable=True),
        sa.Column("seg_sop_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("seg_series_uid", sa.String(length=64), nullable=True),
        sa.Column("seg_path", sa.String(length=1024), nullable=True),
        sa.Column("findings", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_results_job_id_jobs", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["predecessor_id"],
            ["results.id"],
            name="fk_results_predecessor_id_results",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name="fk_results_study_id_studies", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_results"),
        sa.UniqueConstraint(
            "study_id", "revision", "checkpoint_sha256", name="uq_results_analysis_key"
        ),
    )
    op.create_index("ix_results_sc_series_uid", "results", ["sc_series_uid"])
    op.create_index("ix_results_seg_series_uid", "results", ["seg_series_uid"])
    op.create_index("ix_results_sr_series_uid", "results", ["sr_series_uid"])
    op.create_table(
        "deliveries",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("result_id", BIG_ID, nullable=False),
        sa.Column("object", sa.String(length=8), nullable=False),
        sa.Column("destination_ae", sa.String(length=16), nullable=False),
        sa.Column("destination_host", sa.String(length=255), nullable=False),
        sa.Column("destination_port", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("object IN ('SR', 'SC', 'SEG')", name="ck_deliveries_object"),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["results.id"],
            name="fk_deliveries_result_id_results",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint(
            "result_id",
            "object",
            "destination_ae",
            "destination_host",
            "destination_port",
            name="uq_deliveries_target",
        ),
    )
    op.create_index("ix_deliveries_created_at", "deliveries", ["created_at"])
    op.create_index("ix_deliveries_destination_ae", "deliveries", ["destination_ae"])
    op.execute("INSERT INTO audit_retention (id, days) VALUES (1, NULL)")
    triggers = SQLITE_TRIGGERS if op.get_bind().dialect.name == "sqlite" else POSTGRESQL_TRIGGERS
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    op.drop_index("ix_deliveries_destination_ae", table_name="deliveries")
    op.drop_index("ix_deliveries_created_at", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index("ix_results_sr_series_uid", table_name="results")
    op.drop_index("ix_results_seg_series_uid", table_name="results")
    op.drop_index("ix_results_sc_series_uid", table_name="results")
    op.drop_table("results")
    op.drop_table("jobs")
    op.drop_index("ix_instances_study_id", table_name="instances")
    op.drop_index("ix_instances_series_uid", table_name="instances")
    op.drop_index("ix_instances_association_id", table_name="instances")
    op.drop_table("instances")
    op.drop_index("ix_studies_updated_at", table_name="studies")
    op.drop_index("ix_studies_state_last_instance_at", table_name="studies")
    op.drop_index("ix_studies_state", table_name="studies")
    op.drop_index("ix_studies_calling_ae", table_name="studies")
    op.drop_table("studies")
    op.drop_table("audit_retention")
    op.drop_table("audit_events")  # with its indexes and triggers
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_events_append_only()")
    op.drop_index("ix_associations_started_at", table_name="associations")
    op.drop_index("ix_associations_calling_ae", table_name="associations")
    op.drop_table("associations")
