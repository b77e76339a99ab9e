"""lungpath's result objects: the TID 1500 SR (contract v1), the summary Secondary Capture
and the nodule SEG, built from one ``AnalysisReport``; and the parser of the SR.

    report = AnalysisReport(...)
    sr, summaries, seg = build_sr(report), build_sc(report), build_seg(report)
    parsed = read_findings(pydicom.dcmread(path))
"""

from pipeline.results.codes import CONTRACT_VERSION, AnalysisStatus
from pipeline.results.read import ParsedNodule, ParsedReport, ReportError, read_findings
from pipeline.results.report import (
    SYNTHETIC_DISCLAIMER,
    AlgorithmInfo,
    AnalysisReport,
    DeviceObserver,
    PredecessorSR,
    ResultUids,
    SeriesNumbers,
)
from pipeline.results.sc import build_sc
from pipeline.results.seg import build_seg
from pipeline.results.sr import build_sr

__all__ = [
    "CONTRACT_VERSION",
    "SYNTHETIC_DISCLAIMER",
    "AlgorithmInfo",
    "AnalysisReport",
    "AnalysisStatus",
    "DeviceObserver",
    "ParsedNodule",
    "ParsedReport",
    "PredecessorSR",
    "ReportError",
    "ResultUids",
    "SeriesNumbers",
    "build_sc",
    "build_seg",
    "build_sr",
    "read_findings",
]
