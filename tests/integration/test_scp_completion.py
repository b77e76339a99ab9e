"""Study completion: exactly once per revision, with no feedback loop from lungpath's own SR.

A study arrives in three associations within the stable window while two sweepers run (as two
node processes would): it completes once. The study is then analysed to DONE through the
state API with an SR series recorded in Result; that SR sent back is stored and marked but
starts no revision; a new CT instance does (revision 2), which completes once in its turn.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import Engine

from db.engine import create_engine_for, transaction
from db.events import EventType
from db.models import StudyState
from db.states import add_result, finish_analysis, mark_processing, mark_queued
from scp_node.completion import CompletionSweeper
from tests.scp_node.support import (
    COMPREHENSIVE_SR,
    CT,
    associate,
    audit_events,
    ct_slice,
    instance_count,
    node_db,
    running_scp,
    scp_config,
    sqlite_template,
    sr_document,
    study_row,
)

__all__ = ["node_db", "sqlite_template"]

STUDY = "1.2.826.0.7.1"
#: Long enough that the three associations of the test always fall inside one window.
STABLE_S = 4.0
#: Enough passes of both sweepers (every 0.2 s) for a second completion to show if one came.
SETTLE_S = 1.0


@contextmanager
def _sweepers(engine: Engine, count: int) -> Iterator[None]:
    sweepers = [CompletionSweeper(engine, stable_seconds=STABLE_S, interval=0.2)
                for _ in range(count)]
    for sweeper in sweepers:
        sweeper.start()
    try:
        yield
    finally:
        for sweeper in sweepers:
            sweeper.stop()


def _send(port: int, datasets: list, sop_class: str = CT) -> None:  # type: ignore[type-arg]
    assoc = associate(port, [(sop_class, [ExplicitVRLittleEndian])])
    assert {int(assoc.send_c_store(ds).Status) for ds in datasets} == {0}
    assoc.release()


def _completions(engine: Engine) -> list[int]:
    """The revision of each study.complete event of the study, in order."""
    events = audit_events(engine, EventType.STUDY_COMPLETE)
    return [int(e.detail["revision"]) if e.detail and "revision" in e.detail else -1
            for e in events if e.study_uid == STUDY]


def _wait_for(engine: Engine, state: str) -> None:
    deadline = time.monotonic() + 60
    while study_row(engine, STUDY).state != state:
        assert time.monotonic() < deadline, f"study never reached {state}"
        time.sleep(0.1)


def _analyse_to_done(engine: Engine, sr_series: str) -> None:
    now = datetime.now(UTC)
    with transaction(engine) as session:
        mark_queued(session, study_uid=STUDY, revision=1, task_id="t1",
                    deadline_at=now + timedelta(hours=1), now=now, actor="test")
    with transaction(engine) as session:
        mark_processing(session, study_uid=STUDY, revision=1, task_id="t1", host="test",
                        device="cpu", model_version="test", checkpoint_sha256="0" * 64,
                        deadline_at=now + timedelta(hours=1), now=now, actor="test")
    with transaction(engine) as session:
        add_result(session, study_uid=STUDY, revision=1, checkpoint_sha256="0" * 64,
                   objects={"SR": (generate_uid(), sr_series, "/results/sr.dcm")},
                   findings=None, now=now)
        finish_analysis(session, study_uid=STUDY, revision=1, outcome=StudyState.DONE,
                        reason=None, timings=None, error=None, now=now, actor="test")


@pytest.mark.slow
def test_completion_once_per_revision_and_no_feedback_loop(node_db: str,
                                                           tmp_path: Path) -> None:
    engine = create_engine_for(node_db)
    series = f"{STUDY}.1"
    with running_scp(scp_config(node_db, tmp_path / "store")) as scp, _sweepers(engine, 2):
        for part in range(3):
            _send(scp.port, [ct_slice(STUDY, series, part * 10 + i) for i in range(10)])
        _wait_for(engine, StudyState.COMPLETE)
        time.sleep(SETTLE_S)  # more passes of both sweepers change nothing
        assert _completions(engine) == [1]
        assert instance_count(engine, STUDY) == 30

        sr_series = generate_uid()
        _analyse_to_done(engine, sr_series)
        _send(scp.port, [sr_document(STUDY, sr_series)], COMPREHENSIVE_SR)
        study = study_row(engine, STUDY)
        assert (study.state, study.revision) == (StudyState.DONE, 1)
        (own,) = audit_events(engine, EventType.INSTANCE_OWN_OUTPUT)
        assert own.study_uid == STUDY

        _send(scp.port, [ct_slice(STUDY, series, 30)])
        study = study_row(engine, STUDY)
        assert (study.state, study.revision) == (StudyState.RECEIVING, 2)
        _wait_for(engine, StudyState.COMPLETE)
        time.sleep(SETTLE_S)
        assert _completions(engine) == [1, 2]
    assert instance_count(engine, STUDY) == 32
    engine.dispose()
