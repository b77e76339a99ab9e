"""The dispatcher and reconciler against a real database and the server-less broker."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from db.engine import transaction
from db.models import AuditEvent, Delivery, Job, Result, Study
from db.states import complete_stable, start_study
from lungpath.dispatch import Dispatcher, ResendError, resend_latest
from lungpath.settings import Settings
from pipeline.queue import QueueConfig, create_app
from tests.conftest import free_port
from tests.db.conftest import backend, db_url, engine, postgres_schemas, sqlite_template

__all__ = ["backend", "db_url", "engine", "postgres_schemas", "sqlite_template"]

pytestmark = pytest.mark.usefixtures("clean_env")



def _dispatcher(engine: Engine, broker_url: str, *, max_attempts: int = 2) -> Dispatcher:
    config = QueueConfig(broker_url, queue_prefix="unit.", connect_timeout=1.0)
    return Dispatcher(engine, create_app(config), config, interval=0.1,
                      queued_deadline_s=60.0, processing_deadline_s=60.0,
                      max_attempts=max_attempts, delivery_grace_s=5.0)


def _complete_study(engine: Engine, uid: str) -> None:
    then = datetime.now(UTC) - timedelta(minutes=5)
    with transaction(engine) as session:
        study = start_study(session, study_uid=uid, calling_ae="CT1", now=then, actor="test")
        assert complete_stable(session, study_id=study.id, revision=1, cutoff=then,
                               now=then, actor="test")


def _queued(broker: Path) -> list[str]:
    with sqlite3.connect(broker) as db:
        return [name for (name,) in db.execute(
            "SELECT q.name FROM kombu_message m JOIN kombu_queue q ON m.queue_id = q.id")]


def _study(engine: Engine, uid: str) -> Study:
    with transaction(engine) as session:
        return session.scalars(select(Study).where(Study.study_uid == uid)).one()


def _expire_deadlines(engine: Engine) -> None:
    with transaction(engine) as session:
        session.execute(update(Job).values(deadline_at=datetime.now(UTC) - timedelta(seconds=1)))


def test_complete_study_is_queued_and_sent_in_one_step(engine: Engine, tmp_path: Path) -> None:
    _complete_study(engine, "1.2.3.1")
    broker = tmp_path / "broker.db"
    report = _dispatcher(engine, f"sqla+sqlite:///{broker}").run_once()
    assert report.dispatched == ["1.2.3.1"] and report.broker_error is None
    study = _study(engine, "1.2.3.1")
    assert (study.state, study.attempts, study.analysis_revision) == ("QUEUED", 1, 1)
    assert _queued(broker) == ["unit.analysis"]
    # a second pass has nothing to dispatch
    assert _dispatcher(engine, f"sqla+sqlite:///{broker}").run_once().dispatched == []


def test_broker_unreachable_leaves_the_study_complete(engine: Engine) -> None:
    _complete_study(engine, "1.2.3.2")
    report = _dispatcher(engine, f"redis://127.0.0.1:{free_port()}/12").run_once()
    assert report.dispatched == [] and report.broker_error is not None
    assert _study(engine, "1.2.3.2").state == "COMPLETE"
    with transaction(engine) as session:
        assert session.scalars(select(Job)).all() == []


def test_overdue_study_is_resent_then_failed(engine: Engine, tmp_path: Path) -> None:
    _complete_study(engine, "1.2.3.3")
    broker = tmp_path / "broker.db"
    dispatcher = _dispatcher(engine, f"sqla+sqlite:///{broker}", max_attempts=2)
    dispatcher.run_once()
    _expire_deadlines(engine)
    assert dispatcher.run_once().requeued == ["1.2.3.3"]
    study = _study(engine, "1.2.3.3")
    assert (study.state, study.attempts) == ("QUEUED", 2)
    assert len(_queued(broker)) == 2
    _expire_deadlines(engine)
    assert dispatcher.run_once().failed == ["1.2.3.3"]
    study = _study(engine, "1.2.3.3")
    assert study.state == "FAILED" and study.reason == "no result after 2 attempts"
    with transaction(engine) as session:
        kinds = list(session.scalars(select(AuditEvent.event_type)
                                     .where(AuditEvent.study_uid == "1.2.3.3")))
    assert kinds[-3:] == ["study.queued", "study.requeued", "study.failed"]


def _result_with_delivery(engine: Engine, uid: str, due: datetime) -> int:
    _complete_study(engine, uid)
    with transaction(engine) as session:
        study = session.scalars(select(Study).where(Study.study_uid == uid)).one()
        result = Result(study_id=study.id, revision=1, checkpoint_sha256="0" * 64,
                        sr_sop_instance_uid="1.2.9", sr_series_uid="1.2.8", sr_path="/x/SR.dcm",
                        created_at=due)
        session.add(result)
        session.flush()
        session.add(Delivery(result_id=result.id, object="SR", destination_ae="PACS",
                             destination_host="h", destination_port=104, attempts=1,
                             created_at=due, next_retry_at=due))
        return result.id


def test_lost_delivery_pass_is_sent_again(engine: Engine, tmp_path: Path) -> None:
    result_id = _result_with_delivery(engine, "1.2.3.4", datetime.now(UTC) - timedelta(minutes=1))
    broker = tmp_path / "broker.db"
    report = _dispatcher(engine, f"sqla+sqlite:///{broker}").run_once()
    assert report.deliveries == [result_id]
    assert "unit.delivery" in _queued(broker)
    # re-armed as due now: not sent again before the grace has passed
    assert _dispatcher(engine, f"sqla+sqlite:///{broker}").run_once().deliveries == []


def test_resend_rearms_and_audits(engine: Engine, tmp_path: Path) -> None:
    settings = Settings(database_url=str(engine.url), var_dir=tmp_path)
    with pytest.raises(ResendError, match="no result"):
        resend_latest(engine, settings, "1.2.3.5", actor="cli:test")
    result_id = _result_with_delivery(engine, "1.2.3.6", datetime.now(UTC))
    with transaction(engine) as session:
        session.execute(update(Delivery).values(delivered_at=datetime.now(UTC),
                                                next_retry_at=None))
    assert resend_latest(engine, settings, "1.2.3.6", actor="cli:test") == result_id
    with transaction(engine) as session:
        row = session.scalars(select(Delivery)).one()
        event = session.scalars(select(AuditEvent).where(
            AuditEvent.event_type == "delivery.resend")).one()
    assert row.delivered_at is None and row.attempts == 0 and row.next_retry_at is not None
    assert event.actor == "cli:test" and event.detail == {"result_id": result_id,
                                                          "deliveries_rearmed": 1}
    assert _queued(tmp_path / "broker.db") == ["delivery"]


@pytest.mark.parametrize(("values", "setting"), [
    ({"analysis_soft_time_limit": 60.0, "analysis_time_limit": 60.0}, "analysis_soft_time_limit"),
    ({"delivery_initial_backoff_seconds": 100.0, "delivery_max_backoff_seconds": 10.0},
     "delivery_initial_backoff_seconds"),
    ({"queue_prefix": "no spaces"}, "queue_prefix"),
    ({"max_analysis_attempts": 0}, "max_analysis_attempts"),
])
def test_orchestration_settings_are_checked(values: dict[str, object], setting: str) -> None:
    from lungpath.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match=setting):
        load_settings(overrides=values)


def test_queue_config_and_deadline_follow_the_settings(tmp_path: Path) -> None:
    from lungpath.dispatch import processing_deadline_s, queue_config

    settings = Settings(var_dir=tmp_path, queue_prefix="site1.", analysis_soft_time_limit=50,
                        analysis_time_limit=60, reconcile_grace_seconds=5)
    config = queue_config(settings)
    assert config.broker_url == f"sqla+sqlite:///{(tmp_path / 'broker.db').resolve()}"
    assert config.analysis_queue == "site1.analysis" and config.delivery_queue == "site1.delivery"
    assert (config.soft_time_limit, config.time_limit) == (50, 60)
    assert processing_deadline_s(settings) == 65
    assert settings.embedded_broker
