"""Studies the node accepts but cannot analyse: each is sent over a real association, then
analysed by ``analyze_study`` in this process (the plain function the Celery task calls), and
ends NOT_ANALYZABLE with an SR that gives the reason; no exception escapes.

Volume assembly is also fuzzed directly: any geometry and pixel data a series can carry gives
a volume or a ``VolumeError``, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, generate_uid
from sqlalchemy import select

from db.engine import create_engine_for, transaction
from db.models import Result, Study
from db.states import complete_stable, mark_queued
from model.predictor import Predictor
from pipeline.analysis import AnalysisConfig, analyze_study
from pipeline.results import AnalysisStatus, read_findings
from pipeline.routing import RoutingRules
from pipeline.volume import VolumeError, assemble_volume
from tests.hardening.conftest import Reliability
from tests.integration.orchestration import tiny_checkpoint
from tests.pipeline.dicom_factory import ct_series, phantom
from tests.scp_node.support import associate, running_scp, scp_config

__all__ = ["tiny_checkpoint"]

MIN_IMAGES = 4
SHAPE = (6, 40, 48)


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(tiny_checkpoint, device="cpu")


def _series(**kwargs: object) -> list[Dataset]:
    return ct_series(phantom(SHAPE), study_uid=generate_uid(), **kwargs)  # type: ignore[arg-type]


def _single_slice() -> list[Dataset]:
    return ct_series(phantom((1, 40, 48)), study_uid=generate_uid())


def _inconsistent_geometry() -> list[Dataset]:
    series = _series()
    series[3].ImagePositionPatient = [0.0, 0.0, float(series[3].ImagePositionPatient[2]) + 0.4]
    series[4].ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    return series


def _thick_slices() -> list[Dataset]:
    return _series(spacing=(0.7, 0.8, 10.0))


def _non_chest() -> list[Dataset]:
    series = _series(description="Head routine")
    for ds in series:
        ds.BodyPartExamined = "HEAD"
    return series


def _all_air() -> list[Dataset]:
    return ct_series(np.full(SHAPE, -1000, dtype=np.int16), study_uid=generate_uid())


def _truncated_pixels() -> list[Dataset]:
    series = _series()
    series[2].PixelData = series[2].PixelData[:100]
    return series


def _undecodable() -> list[Dataset]:
    series = _series()
    for ds in series:
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    return series


def _huge_dimensions() -> list[Dataset]:
    series = _series()
    for ds in series:
        ds.Rows = ds.Columns = 65535
    return series


def _non_ct() -> list[Dataset]:
    series = _series()
    for ds in series:
        ds.Modality = "MR"
    return series


#: name -> (the series, words of the NOT_ANALYZABLE reason)
CASES: dict[str, tuple[Callable[[], list[Dataset]], str]] = {
    "a single slice": (_single_slice, "fewer than the 4 required"),
    "inconsistent geometry inside the series": (_inconsistent_geometry, "no analysable CT"),
    "10 mm slices": (_thick_slices, "thicker than"),
    "a non-chest CT": (_non_chest, "not a chest study"),
    "an all-air volume": (_all_air, "no lungs"),
    "truncated pixel data": (_truncated_pixels, "cannot decode pixel data"),
    "compressed pixel data that fails to decode": (_undecodable, "cannot decode"),
    "huge dimensions (65535 x 65535)": (_huge_dimensions, "cannot decode pixel data"),
    "a non-CT image under the CT class": (_non_ct, "analysis needs CT"),
}


def _send(port: int, series: list[Dataset]) -> None:
    syntax = str(series[0].file_meta.TransferSyntaxUID)
    assoc = associate(port, [(str(series[0].SOPClassUID), [syntax])])
    for ds in series:
        assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()


def _queue(db_url: str, study_uid: str) -> int:
    """RECEIVING -> COMPLETE -> QUEUED, as the sweep and the dispatcher would."""
    engine = create_engine_for(db_url)
    later = datetime.now(UTC) + timedelta(seconds=1)
    with transaction(engine) as session:
        study = session.scalars(select(Study).where(Study.study_uid == study_uid)).one()
        assert complete_stable(session, study_id=study.id, revision=1, cutoff=later, now=later,
                               actor="test")
        mark_queued(session, study_uid=study_uid, revision=1, task_id="t-1",
                    deadline_at=later + timedelta(hours=1), now=later, actor="test")
        study_id = study.id
    engine.dispose()
    return study_id


@pytest.mark.parametrize("name", list(CASES))
def test_unanalysable_study_ends_with_a_reason(name: str, node_db: str, tmp_path: Path,
                                               predictor: Predictor,
                                               reliability: Reliability) -> None:
    make, words = CASES[name]
    series = make()
    store = tmp_path / "store"
    with running_scp(scp_config(node_db, store)) as scp:
        _send(scp.port, series)
    study_id = _queue(node_db, str(series[0].StudyInstanceUID))
    config = AnalysisConfig(store_dir=store, ae_title="LUNGPATH", min_series_images=MIN_IMAGES,
                            routing=RoutingRules(answer_not_analysed=True))
    engine = create_engine_for(node_db)
    outcome = analyze_study(engine, config, predictor, study_id=study_id, revision=1,
                            task_id="t-1", host="hardening")
    assert outcome.state == "NOT_ANALYZABLE", (outcome.state, outcome.reason)
    assert outcome.reason is not None and words in outcome.reason, outcome.reason
    with transaction(engine) as session:
        result = session.get_one(Result, outcome.result_id)
    report = read_findings(pydicom.dcmread(result.sr_path))
    assert report.status is AnalysisStatus.NOT_ANALYZABLE and words in report.reason
    engine.dispose()
    reliability.record(f"study with {name}", group="bad input at analysis",
                       inputs=len(series), outcome=f"NOT_ANALYZABLE SR: {outcome.reason}")


@st.composite
def _fuzzed_series(draw: st.DrawFn) -> list[Dataset]:
    count = draw(st.integers(1, 5))
    series = ct_series(phantom((count, 8, 8)), study_uid="1.2.3")
    for ds in series:
        choice = draw(st.sampled_from(["none", "position", "orientation", "rows", "pixels",
                                       "spacing", "delete"]))
        if choice == "position":
            ds.ImagePositionPatient = draw(st.lists(st.floats(-1e6, 1e6), min_size=3,
                                                    max_size=3))
        elif choice == "orientation":
            ds.ImageOrientationPatient = draw(st.lists(st.floats(-2, 2), min_size=6,
                                                       max_size=6))
        elif choice == "rows":
            ds.Rows = draw(st.integers(0, 65535))
        elif choice == "pixels":
            ds.PixelData = draw(st.binary(max_size=200))
        elif choice == "spacing":
            ds.PixelSpacing = draw(st.lists(st.floats(-10, 10), min_size=2, max_size=2))
        elif choice == "delete":
            delattr(ds, draw(st.sampled_from(["ImagePositionPatient", "PixelSpacing",
                                              "RescaleSlope", "PixelData", "Rows"])))
    return series


def test_fuzz_volume_assembly(reliability: Reliability) -> None:
    tried: list[str] = []

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(series=_fuzzed_series())
    def one(series: list[Dataset]) -> None:
        try:
            volume = assemble_volume(series)
        except VolumeError:
            tried.append("VolumeError")
            return
        assert np.isfinite(volume.image if isinstance(volume.image, np.ndarray) else 0).all()
        tried.append("volume")

    one()
    reliability.record("volume assembly of fuzzed series (hypothesis)", group="fuzzing",
                       inputs=len(tried), outcome=f"{tried.count('volume')} volumes, "
                       f"{tried.count('VolumeError')} VolumeErrors, no other exception")
