"""The SR parser refuses what is not a lungpath result SR of contract version 1, with a
message that says what is wrong."""

from __future__ import annotations

import copy

import pytest
from pydicom import Dataset

from pipeline.results import ReportError, build_sc, build_sr, read_findings
from tests.pipeline.results.synthetic import report


def _root_item(sr: Dataset, code_value: str) -> Dataset:
    for item in sr.ContentSequence:
        name = item.ConceptNameCodeSequence[0]
        if name.get("CodeValue") == code_value or name.get("LongCodeValue") == code_value:
            return item
    raise KeyError(code_value)


def _group_items(sr: Dataset) -> list[Dataset]:
    measurements = _root_item(sr, "126010")
    return list(measurements.ContentSequence[0].ContentSequence)


def test_a_ct_image_is_not_a_report(series: list[Dataset]) -> None:
    with pytest.raises(ReportError, match="not a structured report"):
        read_findings(series[0])


def test_a_secondary_capture_is_not_a_report(series: list[Dataset]) -> None:
    with pytest.raises(ReportError, match="not a structured report"):
        read_findings(build_sc(report(series, 1))[0])


def test_an_other_contract_version_is_refused(series: list[Dataset]) -> None:
    sr = copy.deepcopy(build_sr(report(series, 0)))
    _root_item(sr, "CONTRACT_VERSION").TextValue = "2"
    with pytest.raises(ReportError, match="contract version '2'"):
        read_findings(sr)


def test_an_sr_without_the_contract_items_is_refused(series: list[Dataset]) -> None:
    sr = copy.deepcopy(build_sr(report(series, 0)))
    sr.ContentSequence = [i for i in sr.ContentSequence
                          if i.ConceptNameCodeSequence[0].get("CodeValue") != "CONTRACT_VERSION"]
    with pytest.raises(ReportError, match="'Result contract version'"):
        read_findings(sr)


def test_a_missing_measurement_is_named(series: list[Dataset]) -> None:
    sr = copy.deepcopy(build_sr(report(series, 1)))
    group = _root_item(sr, "126010").ContentSequence[0]
    group.ContentSequence = [i for i in _group_items(sr)
                             if i.ConceptNameCodeSequence[0].get("CodeValue") != "P_IAC"]
    with pytest.raises(ReportError, match="'Probability of invasive adenocarcinoma' in nodule-1"):
        read_findings(sr)


def test_an_unknown_value_code_is_named(series: list[Dataset]) -> None:
    sr = copy.deepcopy(build_sr(report(series, 1)))
    for item in _group_items(sr):
        if item.ConceptNameCodeSequence[0].get("CodeValue") == "IASLC_GRADE":
            item.ConceptCodeSequence[0].CodeValue = "G4"
    with pytest.raises(ReportError, match="unknown grade"):
        read_findings(sr)
