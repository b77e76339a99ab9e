"""AnalysisReport and its parts refuse inconsistent input at construction, naming the
argument."""

from __future__ import annotations

import dataclasses

import pytest
from pydicom import Dataset

from pipeline.results import AlgorithmInfo, AnalysisStatus, DeviceObserver, ResultUids
from tests.pipeline.results.synthetic import report


def test_derived_uids_are_stable_distinct_and_valid() -> None:
    a = ResultUids.derive("study/1/sha", 3)
    assert a == ResultUids.derive("study/1/sha", 3)
    assert a.sr_instance != ResultUids.derive("study/2/sha", 3).sr_instance
    assert len(a.tracking) == 3 and len(a.sc_instances) == 3
    assert len(ResultUids.derive("k", 0).sc_instances) == 1  # the status image


def test_uids_must_be_valid_and_unique() -> None:
    good = ResultUids.derive("k", 1)
    with pytest.raises(ValueError, match='"sr_series"'):
        dataclasses.replace(good, sr_series="1.02.3")
    with pytest.raises(ValueError, match="must not repeat"):
        dataclasses.replace(good, seg_instance=good.sr_instance)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"checkpoint_sha256": "abc"}, '"checkpoint_sha256"'),
        ({"version": ""}, '"version"'),
        ({"intended_use": "two\nlines"}, '"intended_use"'),
    ],
)
def test_algorithm_info_checks_its_arguments(changes: dict[str, str], message: str) -> None:
    base = {"version": "1", "checkpoint_sha256": "a" * 64, "intended_use": "Research.",
            "synthetic_trained": False}
    with pytest.raises(ValueError, match=message):
        AlgorithmInfo(**{**base, **changes})  # type: ignore[arg-type]


def test_device_observer_checks_ae_title_and_uid() -> None:
    with pytest.raises(ValueError, match='"ae_title"'):
        DeviceObserver(ae_title="A_TITLE_FAR_TOO_LONG", device_uid="1.2.3")
    with pytest.raises(ValueError, match='"device_uid"'):
        DeviceObserver(ae_title="LUNGPATH", device_uid="not-a-uid")


def test_status_and_findings_must_agree(series: list[Dataset]) -> None:
    completed = report(series, 1)
    with pytest.raises(ValueError, match='"findings"'):
        dataclasses.replace(completed, status=AnalysisStatus.NO_NODULE)
    with pytest.raises(ValueError, match='"reason"'):
        report(series, 0, AnalysisStatus.NOT_ANALYZABLE, reason="")
    with pytest.raises(ValueError, match='"reason"'):
        report(series, 0, AnalysisStatus.NO_NODULE, reason="why not")


def test_findings_must_fit_the_sources(series: list[Dataset]) -> None:
    analysis = report(series, 1)
    with pytest.raises(ValueError, match="outline image"):
        dataclasses.replace(analysis, sources=tuple(
            ds for ds in series
            if ds.SOPInstanceUID != analysis.findings[0].measurements.outline_image_uid))
    with pytest.raises(ValueError, match="tracking UIDs"):
        dataclasses.replace(analysis, uids=ResultUids.derive("other", 2))
    with pytest.raises(ValueError, match='"sources"'):
        dataclasses.replace(analysis, sources=())
    stranger = Dataset()
    for keyword in ("SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID"):
        setattr(stranger, keyword, series[0][keyword].value)
    stranger.StudyInstanceUID = "1.2.3.4"
    with pytest.raises(ValueError, match="one study"):
        dataclasses.replace(analysis, sources=(*series, stranger))
