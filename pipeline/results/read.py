"""Parse a lungpath result SR back into findings (``lungpath show-sr``, tests, other tools).

The parser reads only what the contract (SR_CONTENT.md, version 1) promises, by the concept
codes of ``pipeline.results.codes``; anything else in the document is ignored. A file that is
not a lungpath SR of a supported contract version, or that lacks a promised item, raises
``ReportError`` with a message naming what is wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TypeVar

import highdicom as hd
from pydicom import Dataset
from pydicom.errors import BytesLengthException
from pydicom.sr.coding import Code

from model.pathology import INVASIVENESS, PATTERNS, Grade, Invasiveness, Pattern
from pipeline.findings import Laterality
from pipeline.results import codes as c
from pipeline.results.codes import AnalysisStatus
from pipeline.results.sr import PIXEL_CENTRE, REASON_PREFIX, SERIES_PREFIX

_ALGORITHM_NAME = Code("111001", "DCM", "Algorithm Name")
_ALGORITHM_VERSION = Code("111003", "DCM", "Algorithm Version")
_ALGORITHM_PARAMETERS = Code("111002", "DCM", "Algorithm Parameters")
K = TypeVar("K")
#: what pydicom (decoding elements on first access) and highdicom raise on malformed content
_MALFORMED = (ValueError, AttributeError, TypeError, KeyError, IndexError, OSError, EOFError,
              struct.error, BytesLengthException)


class ReportError(ValueError):
    """The data set is not a lungpath result SR this version can read."""


@dataclass(frozen=True)
class ParsedNodule:
    """One measurement group, in the SR's units (percentages as written, 0-100).

    ``outline`` is the closed polyline without its repeated last point, as (column, row) pixel
    indices of ``outline_image_uid`` like ``NoduleMeasurements.outline`` (the SR stores SCOORD
    image coordinates, ``PIXEL_CENTRE`` larger).
    """

    number: int
    tracking_uid: str
    laterality: Laterality
    outline_image_uid: str
    outline: tuple[tuple[float, float], ...]
    long_axis_mm: float
    short_axis_mm: float
    volume_mm3: float
    solid_long_axis_mm: float
    ctr: float
    mean_hu: float
    probabilities_percent: tuple[float, float, float]
    proportions: tuple[int, ...]
    uncertainty: float
    invasiveness: Invasiveness
    predominant: Pattern
    grade: Grade
    algorithm_name: str
    algorithm_version: str
    checkpoint_sha256: str


@dataclass(frozen=True)
class ParsedReport:
    """The root-level items of a lungpath SR and its nodules in order nodule-1..N."""

    contract_version: str
    status: AnalysisStatus
    reason: str
    series_note: str
    use_statement: str
    study_instance_uid: str
    sop_instance_uid: str
    predecessor_uids: tuple[str, ...]
    nodules: tuple[ParsedNodule, ...]


def read_findings(dataset: Dataset) -> ParsedReport:
    """Parse a lungpath result SR; ``ReportError`` if it is not one."""
    if "ContentSequence" not in dataset or "ConceptNameCodeSequence" not in dataset:
        raise ReportError("not a structured report (no SR content tree)")
    try:
        return _parse(dataset)
    except ReportError:
        raise
    except _MALFORMED as e:
        # pydicom decodes elements on first access, so a truncated file fails here too;
        # highdicom and pydicom describe a malformed item with a dump of it: keep line one
        first_line = str(e).splitlines()[0].rstrip(":") if str(e) else type(e).__name__
        raise ReportError(f"malformed SR content: {first_line}") from e


def _parse(dataset: Dataset) -> ParsedReport:
    content = hd.sr.Comprehensive3DSR.from_dataset(dataset).content
    if not isinstance(content, hd.sr.MeasurementReport):
        raise ReportError("not a TID 1500 measurement report")
    root = list(content[0].ContentSequence)
    version = _text(root, c.RESULT_CONTRACT_VERSION, "the root")
    if version != c.CONTRACT_VERSION:
        raise ReportError(f"result contract version {version!r} is not supported "
                          f"(this version reads {c.CONTRACT_VERSION!r})")
    status = _enum_value(_code(root, c.ANALYSIS_STATUS, "the root"), c.STATUS_VALUES,
                         "analysis status")
    comments = [str(i.value) for i in root if _is(i, c.COMMENT)]
    if len(comments) != 2:
        raise ReportError(f"expected 2 Comment items at the root, found {len(comments)}")
    reason, series_note = _split_analysis_comment(comments[0])
    nodules = tuple(
        _nodule(i, group) for i, group in
        enumerate(content.get_planar_roi_measurement_groups(), start=1)
    )
    if (status is AnalysisStatus.COMPLETED) != bool(nodules):
        raise ReportError(f"status {status} with {len(nodules)} measurement groups")
    return ParsedReport(
        contract_version=version,
        status=status,
        reason=reason,
        series_note=series_note,
        use_statement=comments[1],
        study_instance_uid=str(dataset.StudyInstanceUID),
        sop_instance_uid=str(dataset.SOPInstanceUID),
        predecessor_uids=tuple(
            str(sop.ReferencedSOPInstanceUID)
            for study in dataset.get("PredecessorDocumentsSequence", [])
            for series in study.ReferencedSeriesSequence
            for sop in series.ReferencedSOPSequence
        ),
        nodules=nodules,
    )


def _matches(coded: Dataset, code: Code) -> bool:
    """Code values over 16 characters are stored as Long Code Value."""
    value = coded.get("CodeValue") or coded.get("LongCodeValue") or coded.get("URNCodeValue")
    return bool(value == code.value
                and coded.get("CodingSchemeDesignator") == code.scheme_designator)


def _is(item: Dataset, code: Code) -> bool:
    return _matches(item.ConceptNameCodeSequence[0], code)


def _one(items: list[Dataset], code: Code, where: str) -> Dataset:
    found = [i for i in items if _is(i, code)]
    if len(found) != 1:
        raise ReportError(f"expected one {code.meaning!r} in {where}, found {len(found)}")
    return found[0]


def _text(items: list[Dataset], code: Code, where: str) -> str:
    return str(_one(items, code, where).TextValue)


def _code(items: list[Dataset], code: Code, where: str) -> Dataset:
    return _one(items, code, where).ConceptCodeSequence[0]


def _enum_value(value: Dataset, table: dict[K, Code], what: str) -> K:
    for key, code in table.items():
        if _matches(value, code):
            return key
    raise ReportError(f"unknown {what}: {hd.sr.CodedConcept.from_dataset(value)}")


def _split_analysis_comment(text: str) -> tuple[str, str]:
    reason, series = "", ""
    for line in text.splitlines():
        if line.startswith(REASON_PREFIX):
            reason = line.removeprefix(REASON_PREFIX)
        elif line.startswith(SERIES_PREFIX):
            series = line.removeprefix(SERIES_PREFIX)
    if not series:
        raise ReportError("the first Comment does not name the series analysed")
    return reason, series


def _nodule(
    expected: int, group: hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
) -> ParsedNodule:
    where = f"measurement group {expected}"
    if group.tracking_identifier != f"nodule-{expected}":
        raise ReportError(f"{where}: tracking identifier {group.tracking_identifier!r}, "
                          f"expected 'nodule-{expected}'")
    items = list(group[0].ContentSequence)
    where = f"nodule-{expected}"
    roi = group.roi
    polyline = hd.sr.GraphicTypeValues.POLYLINE
    if not isinstance(roi, hd.sr.ImageRegion) or roi.graphic_type != polyline:
        raise ReportError(f"{where}: no POLYLINE image region")
    points = [(float(x), float(y)) for x, y in roi.value]
    if len(points) < 4 or points[0] != points[-1]:
        raise ReportError(f"{where}: the outline is not a closed polyline")
    return ParsedNodule(
        number=expected,
        tracking_uid=str(group.tracking_uid),
        laterality=_laterality(group, where),
        outline_image_uid=str(roi.ContentSequence[0].ReferencedSOPSequence[0]
                              .ReferencedSOPInstanceUID),
        outline=tuple((x - PIXEL_CENTRE, y - PIXEL_CENTRE) for x, y in points[:-1]),
        long_axis_mm=_num(items, c.LONG_AXIS, where),
        short_axis_mm=_num(items, c.SHORT_AXIS, where),
        volume_mm3=_num(items, c.VOLUME, where),
        solid_long_axis_mm=_num(items, c.SOLID_DIAMETER, where),
        ctr=_num(items, c.CTR, where),
        mean_hu=_num(items, c.MEAN_ATTENUATION, where),
        probabilities_percent=(
            _num(items, c.CLASS_PROBABILITIES[INVASIVENESS[0]], where),
            _num(items, c.CLASS_PROBABILITIES[INVASIVENESS[1]], where),
            _num(items, c.CLASS_PROBABILITIES[INVASIVENESS[2]], where),
        ),
        proportions=tuple(round(_num(items, c.PATTERN_PROPORTIONS[p], where)) for p in PATTERNS),
        uncertainty=_num(items, c.UNCERTAINTY, where),
        invasiveness=_enum_value(_code(items, c.INVASIVENESS, where), c.INVASIVENESS_VALUES,
                                 "invasiveness"),
        predominant=_enum_value(_code(items, c.PREDOMINANT_PATTERN, where), c.PATTERN_VALUES,
                                "pattern"),
        grade=_enum_value(_code(items, c.IASLC_GRADE, where), c.GRADE_VALUES, "grade"),
        algorithm_name=_text(items, _ALGORITHM_NAME, where),
        algorithm_version=_text(items, _ALGORITHM_VERSION, where),
        checkpoint_sha256=_text(items, _ALGORITHM_PARAMETERS, where),
    )


def _laterality(
    group: hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations, where: str
) -> Laterality:
    sites = group.finding_sites
    side = sites[0].laterality if len(sites) == 1 else None
    if side is None:
        raise ReportError(f"{where}: no finding site with laterality")
    table = {Laterality.RIGHT: c.RIGHT, Laterality.LEFT: c.LEFT}
    return _enum_value(side, table, "laterality")


def _num(items: list[Dataset], code: Code, where: str) -> float:
    item = _one(items, code, where)
    try:
        return float(item.MeasuredValueSequence[0].NumericValue)
    except (AttributeError, IndexError, ValueError) as e:
        raise ReportError(f"{where}: {code.meaning!r} has no numeric value") from e
