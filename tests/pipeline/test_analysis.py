"""``analyze_study`` in this process: the NOT_ANALYZABLE paths, idempotency per revision and
the Job's record. The COMPLETED path with nodules runs in tests/integration (real workers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import Engine, select

from db.engine import transaction
from db.models import Instance, Job, Result, Study
from db.states import complete_stable, mark_queued, start_study
from model.predictor import Predictor
from pipeline.analysis import AnalysisConfig, analyze_study
from pipeline.results import AnalysisStatus, read_findings
from pipeline.routing import RoutingRules
from tests.db.conftest import backend, db_url, engine, postgres_schemas, sqlite_template
from tests.integration.orchestration import tiny_checkpoint
from tests.pipeline.dicom_factory import ct_series, phantom, write_series

__all__ = ["backend", "db_url", "engine", "postgres_schemas", "sqlite_template", "tiny_checkpoint"]



@pytest.fixture(scope="module")
def predictor(tiny_checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(tiny_checkpoint, device="cpu")


def queued_study(engine: Engine, store: Path, datasets: list[Dataset]) -> int:
    """A study whose instances are in the store and the database, QUEUED for revision 1."""
    study_uid = str(datasets[0].StudyInstanceUID)
    then = datetime.now(UTC) - timedelta(minutes=1)
    paths = write_series(datasets, store / study_uid)
    with transaction(engine) as session:
        study = start_study(session, study_uid=study_uid, calling_ae="CT1", now=then,
                            actor="test")
        for ds, path in zip(datasets, paths, strict=True):
            session.add(Instance(study_id=study.id, sop_class_uid=ds.SOPClassUID,
                                 sop_instance_uid=ds.SOPInstanceUID,
                                 series_uid=ds.SeriesInstanceUID,
                                 transfer_syntax_uid=ds.file_meta.TransferSyntaxUID, size=1,
                                 sha256="0" * 64, path=str(path), received_at=then))
        complete_stable(session, study_id=study.id, revision=1, cutoff=then, now=then,
                        actor="test")
        mark_queued(session, study_uid=study_uid, revision=1, task_id="t-1",
                    deadline_at=then + timedelta(hours=1), now=then, actor="test")
        return study.id


def config(store: Path, **kwargs: object) -> AnalysisConfig:
    return AnalysisConfig(store_dir=store, ae_title="LUNGPATH", **kwargs)  # type: ignore[arg-type]


def test_too_few_images_ends_not_analyzable_with_an_sr_giving_the_reason(
        engine: Engine, tmp_path: Path, predictor: Predictor) -> None:
    series = ct_series(phantom((12, 40, 48)), study_uid=generate_uid())
    study_id = queued_study(engine, tmp_path / "store", series)
    outcome = analyze_study(engine, config(tmp_path / "store"), predictor, study_id=study_id,
                            revision=1, task_id="t-1", host="test-host")
    assert outcome.state == "NOT_ANALYZABLE" and outcome.result_id is not None
    assert outcome.reason is not None and "fewer than the 30 required" in outcome.reason
    with transaction(engine) as session:
        result = session.get_one(Result, outcome.result_id)
        job = session.scalars(select(Job)).one()
        study = session.get_one(Study, study_id)
    assert study.state == "NOT_ANALYZABLE" and study.reason == outcome.reason
    assert (job.host, job.device, job.checkpoint_sha256) == ("test-host", "cpu",
                                                              predictor.sha256)
    assert job.timings is not None and {"read", "select", "write", "total"} <= set(job.timings)
    report = read_findings(pydicom.dcmread(result.sr_path))
    assert report.status is AnalysisStatus.NOT_ANALYZABLE
    assert "fewer than the 30 required" in report.reason
    assert result.sc_path is not None and Path(result.sc_path).is_file()
    assert result.seg_path is None
    assert result.findings is not None
    assert result.findings["intended_use"] == "research-synthetic"


def test_a_repeated_message_is_skipped(engine: Engine, tmp_path: Path,
                                       predictor: Predictor) -> None:
    series = ct_series(phantom((12, 40, 48)), study_uid=generate_uid())
    study_id = queued_study(engine, tmp_path / "store", series)
    store = tmp_path / "store"
    first = analyze_study(engine, config(store), predictor, study_id=study_id, revision=1,
                          task_id="t-1", host="a")
    again = analyze_study(engine, config(store), predictor, study_id=study_id, revision=1,
                          task_id="t-2", host="b")
    assert first.state == "NOT_ANALYZABLE"
    assert again.state is None and again.reason is not None and "not allowed" in again.reason
    with transaction(engine) as session:
        assert len(session.scalars(select(Result)).all()) == 1
    unknown = analyze_study(engine, config(store), predictor, study_id=999, revision=1,
                            task_id="t-3", host="b")
    assert unknown.state is None and unknown.reason == "no study 999"


@pytest.mark.parametrize(("answer", "objects"), [(False, 0), (True, 1)])
def test_routing_refusal_is_answered_only_when_configured(
        engine: Engine, tmp_path: Path, predictor: Predictor, answer: bool, objects: int) -> None:
    series = ct_series(phantom((12, 40, 48)), study_uid=generate_uid(), description="Head")
    for ds in series:
        ds.BodyPartExamined = "HEAD"
    store = tmp_path / "store"
    study_id = queued_study(engine, store, series)
    rules = RoutingRules(accept_unlabelled=False, answer_not_analysed=answer)
    outcome = analyze_study(engine, config(store, routing=rules), predictor, study_id=study_id,
                            revision=1, task_id="t-1", host="a")
    assert outcome.state == "NOT_ANALYZABLE"
    assert outcome.reason is not None and outcome.reason.startswith("not routed to analysis")
    with transaction(engine) as session:
        assert len(session.scalars(select(Result)).all()) == objects
