"""The result SR: a Comprehensive 3D SR with a TID 1500 tree, as the result contract
(SR_CONTENT.md, version 1; described in docs/result-objects.md) specifies it.

Other programs parse this document; every concept comes from ``pipeline.results.codes``,
which ``pipeline.results.read`` uses to parse it back.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from highdicom.sr.templates import DEFAULT_LANGUAGE
from pydicom import Dataset
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.sr.coding import Code

from model.pathology import INVASIVENESS, PATTERNS
from pipeline.findings import Laterality, NoduleFinding
from pipeline.results import codes as c
from pipeline.results.codes import AnalysisStatus
from pipeline.results.headers import with_type2_attributes
from pipeline.results.report import MANUFACTURER, MODEL_NAME, AnalysisReport, PredecessorSR

SERIES_DESCRIPTION = "lungpath SD-MdaNet findings"
#: SCOORD image coordinates of the centre of pixel (0, 0): outlines arrive as pixel indices
#: (NoduleMeasurements.outline) and are written shifted by this much
PIXEL_CENTRE = 0.5


def build_sr(report: AnalysisReport) -> hd.sr.Comprehensive3DSR:
    """The SR of one analysed study revision (COMPLETED, NO_NODULE or NOT_ANALYZABLE)."""
    return hd.sr.Comprehensive3DSR(
        evidence=[with_type2_attributes(report.sources[0]), *report.sources],
        content=_content_tree(report),
        series_instance_uid=report.uids.sr_series,
        series_number=report.series_numbers.sr,
        sop_instance_uid=report.uids.sr_instance,
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=list(report.software_versions),
        series_description=SERIES_DESCRIPTION,
        coding_schemes=[c.coding_scheme_item()],
        is_complete=True,
        is_final=False,
        previous_versions=None if report.predecessor is None else [
            _predecessor(report.predecessor, report.study_instance_uid)],
    )


def _predecessor(predecessor: PredecessorSR, study_instance_uid: str) -> Dataset:
    """The header highdicom reads to list the earlier SR (same study) as predecessor."""
    ds = Dataset()
    ds.SOPInstanceUID = predecessor.sop_instance_uid
    ds.SOPClassUID = predecessor.sop_class_uid
    ds.SeriesInstanceUID = predecessor.series_instance_uid
    ds.StudyInstanceUID = study_instance_uid
    return ds


def _content_tree(report: AnalysisReport) -> hd.sr.ContentSequence:
    """TID 1500 with the root-level contract items. highdicom's MeasurementReport refuses zero
    measurement groups, so NO_NODULE and NOT_ANALYZABLE build the same header items without
    the Imaging Measurements container."""
    context = _observation_context(report)
    if report.status is AnalysisStatus.COMPLETED:
        tree: hd.sr.ContentSequence = hd.sr.MeasurementReport(
            observation_context=context,
            procedure_reported=c.CHEST_IMAGING,
            imaging_measurements=[_nodule_group(report, f) for f in report.findings],
        )
    else:
        root = hd.sr.ContainerContentItem(
            name=dcm_codes.DCM.ImagingMeasurementReport, template_id="1500"
        )
        root.ContentSequence = hd.sr.ContentSequence()
        root.ContentSequence.extend(hd.sr.LanguageOfContentItemAndDescendants(DEFAULT_LANGUAGE))
        root.ContentSequence.extend(context)
        root.ContentSequence.append(hd.sr.CodeContentItem(
            name=dcm_codes.DCM.ProcedureReported, value=c.CHEST_IMAGING,
            relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD,
        ))
        tree = hd.sr.ContentSequence([root], is_root=True)
    tree[0].ContentSequence.extend(_root_items(report))
    return tree


def _observation_context(report: AnalysisReport) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=report.observer.device_uid,
        name=report.observer.ae_title,
        manufacturer_name=MANUFACTURER,
        model_name=MODEL_NAME,
    )
    return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=dcm_codes.DCM.Device, observer_identifying_attributes=device,
    ))


def _root_items(report: AnalysisReport) -> list[hd.sr.ContentItem]:
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    return [
        hd.sr.TextContentItem(name=c.RESULT_CONTRACT_VERSION, value=c.CONTRACT_VERSION,
                              relationship_type=contains),
        hd.sr.CodeContentItem(name=c.ANALYSIS_STATUS, value=c.STATUS_VALUES[report.status],
                              relationship_type=contains),
        hd.sr.TextContentItem(name=c.COMMENT, value=analysis_comment(report),
                              relationship_type=contains),
        hd.sr.TextContentItem(name=c.COMMENT, value=report.algorithm.use_statement,
                              relationship_type=contains),
    ]


REASON_PREFIX = "Reason: "
SERIES_PREFIX = "Series analysed: "


def analysis_comment(report: AnalysisReport) -> str:
    """The first Comment: one line "Reason: ..." (NOT_ANALYZABLE only), then one line
    "Series analysed: ..."; ``pipeline.results.read`` splits it back on these prefixes."""
    lines = [f"{SERIES_PREFIX}{report.series_note}"]
    if report.status is AnalysisStatus.NOT_ANALYZABLE:
        lines.insert(0, f"{REASON_PREFIX}{report.reason}")
    return "\r\n".join(lines)


def _nodule_group(
    report: AnalysisReport, finding: NoduleFinding
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    m = finding.measurements
    image = report.source(m.outline_image_uid)
    outline = np.asarray(m.outline, dtype=np.float64) + PIXEL_CENTRE
    closed = np.vstack([outline, outline[:1]])  # a closed POLYLINE repeats its first point
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=closed,
        source_image=hd.sr.SourceImageForRegion(
            referenced_sop_class_uid=image.SOPClassUID,
            referenced_sop_instance_uid=image.SOPInstanceUID,
        ),
    )
    side = c.RIGHT if m.laterality is Laterality.RIGHT else c.LEFT
    a = report.algorithm
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=report.uids.tracking[finding.number - 1], identifier=f"nodule-{finding.number}"
        ),
        referenced_region=region,
        finding_type=c.NODULE,
        finding_sites=[hd.sr.FindingSite(anatomic_location=c.LUNG, laterality=side)],
        algorithm_id=hd.sr.AlgorithmIdentification(
            name=a.name, version=a.version, parameters=[a.checkpoint_sha256]
        ),
        measurements=_measurements(finding),
        qualitative_evaluations=_evaluations(finding),
    )


def _num(name: Code, value: float, unit: Code, decimals: int) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=name, value=round(float(value), decimals), unit=unit)


def _measurements(finding: NoduleFinding) -> list[hd.sr.Measurement]:
    m, p = finding.measurements, finding.prediction
    items = [
        _num(c.LONG_AXIS, m.long_axis_mm, c.MM, c.DECIMALS_LENGTH),
        _num(c.SHORT_AXIS, m.short_axis_mm, c.MM, c.DECIMALS_LENGTH),
        _num(c.VOLUME, m.volume_mm3, c.MM3, c.DECIMALS_VOLUME),
        _num(c.SOLID_DIAMETER, m.solid_long_axis_mm, c.MM, c.DECIMALS_LENGTH),
        _num(c.CTR, m.ctr, c.RATIO, c.DECIMALS_CTR),
        _num(c.MEAN_ATTENUATION, m.mean_hu, c.HU, c.DECIMALS_HU),
    ]
    items += [
        _num(c.CLASS_PROBABILITIES[cls], 100.0 * prob, c.PERCENT, c.DECIMALS_PERCENT)
        for cls, prob in zip(INVASIVENESS, p.probabilities, strict=True)
    ]
    items += [
        hd.sr.Measurement(name=c.PATTERN_PROPORTIONS[pattern], value=int(share), unit=c.PERCENT)
        for pattern, share in zip(PATTERNS, p.proportions, strict=True)
    ]
    items.append(_num(c.UNCERTAINTY, p.uncertainty, c.PERCENT, c.DECIMALS_PERCENT))
    return items


def _evaluations(finding: NoduleFinding) -> list[hd.sr.QualitativeEvaluation]:
    p = finding.prediction
    return [
        hd.sr.QualitativeEvaluation(c.INVASIVENESS, c.INVASIVENESS_VALUES[p.invasiveness]),
        hd.sr.QualitativeEvaluation(c.PREDOMINANT_PATTERN, c.PATTERN_VALUES[p.predominant]),
        hd.sr.QualitativeEvaluation(c.IASLC_GRADE, c.GRADE_VALUES[p.grade]),
    ]
