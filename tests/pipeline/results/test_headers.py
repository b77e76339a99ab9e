"""A CT without its Type 2 patient and study attributes still gets valid result objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.results import build_sc, build_seg, build_sr, read_findings
from pipeline.results.headers import PATIENT_STUDY_TYPE2, with_type2_attributes
from tests.pipeline.results.conftest import dciodvfy, save
from tests.pipeline.results.synthetic import SPHERES, ct_series, report

OMITTED = ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
           "ReferringPhysicianName")


def test_view_fills_type2_without_touching_the_source() -> None:
    source = ct_series(list(SPHERES[:1]))[0]
    del source.PatientBirthDate
    view = with_type2_attributes(source)
    assert all(keyword in view for keyword in PATIENT_STUDY_TYPE2)
    assert view.PatientBirthDate in (None, "")
    assert "PatientBirthDate" not in source
    assert view.PixelData is source.PixelData


@pytest.mark.tools
def test_objects_from_a_sparse_ct_have_no_errors(tmp_path: Path) -> None:
    series = ct_series(list(SPHERES))
    for ds in series:
        for keyword in OMITTED:
            delattr(ds, keyword)
    analysis = report(series, 2)
    seg = build_seg(analysis)
    assert seg is not None
    objects = [build_sr(analysis), *build_sc(analysis), seg]
    for i, dataset in enumerate(objects):
        errors = [line for line in dciodvfy(save(dataset, tmp_path / f"{i}.dcm"))
                  if line.startswith("Error")]
        assert not errors, (dataset.SOPClassUID, errors)
    assert len(read_findings(objects[0]).nodules) == 2
