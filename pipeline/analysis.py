"""``analyze_study``: one study revision from stored instances to SR, SC, SEG and a Result.

Stages: the study's instances (from the database and the store) -> routing rules -> series
selection -> volume -> lung mask -> nodules (those given by a foreign SEG or SR in the study,
else detected; segmentation and measurements: ``pipeline.nodules``) -> crops
with the checkpoint's CropSpec (``pipeline.crop``) -> the Predictor, all crops in batches ->
findings -> SR, summary images and SEG written into the store -> Result row and end of the
analysis in one transaction. A study that cannot be analysed ends NOT_ANALYZABLE with an SR
that gives the reason (routing refusals only when ``answer_not_analysed`` is on).

Idempotent per (study, revision, checkpoint SHA-256): the start is the QUEUED -> PROCESSING
transition (``db.states.mark_processing``), which a repeated or stale message cannot make,
and the Result's unique key refuses a second result. The result UIDs derive from that key, so
a re-run after a crash writes the same objects and a PACS replaces rather than duplicates.
The Job row records host, device, model and the seconds of each stage.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydicom import Dataset
from pydicom.uid import ComprehensiveSRStorage
from sqlalchemy import Engine, select

from db.engine import transaction
from db.models import Instance, Result, Study, StudyState
from db.states import (
    TransitionError,
    add_result,
    finish_analysis,
    mark_processing,
)
from model.checkpoint import IntendedUse
from model.predictor import Predictor
from pipeline.crop import crop_batch
from pipeline.findings import NoduleFinding, number_by_iac_probability
from pipeline.lungmask import LungMaskError, lung_mask
from pipeline.nodules import study_nodules
from pipeline.results import (
    AlgorithmInfo,
    AnalysisReport,
    AnalysisStatus,
    DeviceObserver,
    PredecessorSR,
    ResultUids,
    build_sc,
    build_seg,
    build_sr,
)
from pipeline.routing import RoutingRules, StudyHeaders, route_study
from pipeline.series import read_headers, select_series, summarize_series
from pipeline.volume import VolumeError, assemble_volume

logger = logging.getLogger(__name__)

_USE_STATEMENTS = {
    IntendedUse.RESEARCH_SYNTHETIC: "Research use only; not for diagnosis.",
    IntendedUse.RESEARCH: "Research use only; not for diagnosis.",
}
_DEVICE_NAMESPACE = uuid.UUID("6c756e67-7061-7468-2d64-657669636531")


@dataclass(frozen=True)
class AnalysisConfig:
    """What the analysis needs besides the database and the model.

    Attributes:
        store_dir: the store; results go to ``<store>/results/<StudyUID>/``.
        ae_title: the node's AE title (observer of the SR).
        routing: which studies are analysed at all.
        min_series_images: fewer images than this and a series is not analysable.
        processing_deadline_s: the reconciler re-sends a PROCESSING study after this long.
        software_version: the lungpath version written into the objects.
    """

    store_dir: Path
    ae_title: str
    routing: RoutingRules = field(default_factory=RoutingRules)
    min_series_images: int = 30
    processing_deadline_s: float = 1260.0
    software_version: str = "lungpath"

    def __post_init__(self) -> None:
        if self.min_series_images < 2:
            raise ValueError('Argument "min_series_images" must be >= 2, got '
                             f"{self.min_series_images}.")
        if not self.processing_deadline_s > 0:
            raise ValueError('Argument "processing_deadline_s" must be > 0, got '
                             f"{self.processing_deadline_s}.")


@dataclass(frozen=True)
class AnalysisOutcome:
    """How a call ended: ``state`` None means the message was skipped (``reason`` says why)."""

    state: StudyState | None
    result_id: int | None
    reason: str | None


@dataclass
class _Analysed:
    """What the imaging and model stages concluded."""

    status: AnalysisStatus
    reason: str = ""
    series_note: str = "no series analysed"
    sources: tuple[Dataset, ...] = ()
    findings: tuple[NoduleFinding, ...] = ()
    nodules_from: str = ""


class _Timer:
    """Seconds per stage, for the Job row."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 4)


def analyze_study(engine: Engine, config: AnalysisConfig, predictor: Predictor, *,
                  study_id: int, revision: int, task_id: str, host: str) -> AnalysisOutcome:
    """Analyse revision ``revision`` of study ``study_id`` on worker host ``host`` (see the
    module docstring)."""
    actor = f"worker@{host}"[:64]
    study_uid, existing = _start(engine, config, predictor, study_id, revision, task_id, host)
    if study_uid is None:
        return AnalysisOutcome(None, None, existing)
    timer = _Timer()
    try:
        with timer.stage("total"):
            analysed = _analyse(engine, config, predictor, study_id, timer)
            objects = _write_objects(engine, config, predictor, study_uid, revision, analysed,
                                     timer) if analysed.sources else {}
    except Exception as e:
        logger.exception("analysis of study %s revision %d failed", study_uid, revision)
        with transaction(engine) as session:
            state = finish_analysis(session, study_uid=study_uid, revision=revision,
                                    outcome=StudyState.FAILED, reason=f"analysis failed: {e}",
                                    timings=timer.seconds, error=repr(e)[:2000],
                                    now=datetime.now(UTC), actor=actor)
        return AnalysisOutcome(state, None, str(e))
    return _finish(engine, predictor, study_uid, revision, analysed, objects, timer, actor)


def _start(engine: Engine, config: AnalysisConfig, predictor: Predictor, study_id: int,
           revision: int, task_id: str, host: str) -> tuple[str | None, str | None]:
    """QUEUED -> PROCESSING; (study UID, None), or (None, why the message is skipped)."""
    now = datetime.now(UTC)
    with transaction(engine) as session:
        study = session.get(Study, study_id)
        if study is None:
            return None, f"no study {study_id}"
        try:
            mark_processing(session, study_uid=study.study_uid, revision=revision,
                            task_id=task_id, host=host, device=str(predictor.device),
                            model_version=predictor.version,
                            checkpoint_sha256=predictor.sha256,
                            deadline_at=now + timedelta(seconds=config.processing_deadline_s),
                            now=now, actor=f"worker@{host}"[:64])
        except TransitionError as e:
            return None, str(e)
        return study.study_uid, None


def _analyse(engine: Engine, config: AnalysisConfig, predictor: Predictor, study_id: int,
             timer: _Timer) -> _Analysed:
    with timer.stage("read"):
        calling_ae, paths = _instance_paths(engine, study_id)
        headers = read_headers(paths)
    examined = tuple(ds for _, ds in headers)
    if not examined:
        return _Analysed(AnalysisStatus.NOT_ANALYZABLE, "the study holds no readable DICOM file")
    decision = route_study(_study_headers(examined, calling_ae), config.routing)
    if not decision.analyse:
        reason = f"not routed to analysis: {decision.reason}"
        return _Analysed(AnalysisStatus.NOT_ANALYZABLE, reason, "no series analysed",
                         examined if decision.answer else ())
    with timer.stage("select"):
        choice = select_series(summarize_series(headers, config.min_series_images))
    if choice.series is None:
        return _Analysed(AnalysisStatus.NOT_ANALYZABLE, choice.reason, "no series analysed",
                         examined[:1])
    try:
        with timer.stage("volume"):
            volume = assemble_volume(choice.series.headers)
        with timer.stage("lung_mask"):
            lungs = lung_mask(volume.image)
    except (VolumeError, LungMaskError) as e:
        # one line: the reason goes into the SR, and a decoder's message may span several
        return _Analysed(AnalysisStatus.NOT_ANALYZABLE, " ".join(str(e).split()),
                         choice.reason, choice.series.headers)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in choice.series.headers}
    sources = tuple(by_uid[uid] for uid in dict.fromkeys(volume.sop_instance_uids))
    with timer.stage("nodules"):
        frame_of_reference = str(choice.series.headers[0].get("FrameOfReferenceUID", ""))
        nodules, nodules_from = study_nodules(volume, lungs, examined, frame_of_reference)
    if not nodules:
        return _Analysed(AnalysisStatus.NO_NODULE, "", choice.reason, sources,
                         nodules_from=nodules_from)
    with timer.stage("crop"):
        crops = crop_batch(volume.image, [n.measurements.centre_mm for n in nodules],
                           predictor.crop_spec)
    with timer.stage("predict"):
        predictions = predictor.predict(crops)
    findings = number_by_iac_probability([
        (n.measurements, p, n.region.full_mask(volume.voxels.shape))
        for n, p in zip(nodules, predictions, strict=True)
    ])
    return _Analysed(AnalysisStatus.COMPLETED, "", choice.reason, sources, tuple(findings),
                     nodules_from)


def _instance_paths(engine: Engine, study_id: int) -> tuple[str, list[Path]]:
    with transaction(engine) as session:
        calling_ae = session.scalar(select(Study.calling_ae).where(Study.id == study_id))
        paths = session.scalars(
            select(Instance.path).where(Instance.study_id == study_id,
                                        Instance.own_output.is_(False)).order_by(Instance.id)
        ).all()
    return calling_ae or "", [Path(p) for p in paths]


def _study_headers(datasets: tuple[Dataset, ...], calling_ae: str) -> StudyHeaders:
    def values(keyword: str) -> frozenset[str]:
        return frozenset(str(ds.get(keyword, "")) for ds in datasets) - {""}

    return StudyHeaders(
        modalities=values("Modality"),
        body_parts=values("BodyPartExamined"),
        descriptions=values("StudyDescription") | values("SeriesDescription"),
        calling_ae=calling_ae,
    )


def _write_objects(engine: Engine, config: AnalysisConfig, predictor: Predictor,
                   study_uid: str, revision: int, analysed: _Analysed,
                   timer: _Timer) -> dict[str, tuple[str, str, str]]:
    """SR, summary images and SEG into ``<store>/results/<study>/r<revision>-<sha>/``."""
    with timer.stage("write"):
        report = _report(engine, config, predictor, study_uid, revision, analysed)
        folder = config.store_dir / "results" / study_uid / f"r{revision}-{predictor.sha256[:16]}"
        folder.mkdir(parents=True, exist_ok=True)
        sr = build_sr(report)
        objects = {"SR": _save(sr, folder / "SR.dcm")}
        summaries = build_sc(report)
        paths = [_save(sc, folder / f"SC-{i}.dcm") for i, sc in enumerate(summaries, start=1)]
        objects["SC"] = paths[0]
        seg = build_seg(report)
        if seg is not None:
            objects["SEG"] = _save(seg, folder / "SEG.dcm")
    return objects


def _report(engine: Engine, config: AnalysisConfig, predictor: Predictor, study_uid: str,
            revision: int, analysed: _Analysed) -> AnalysisReport:
    use = IntendedUse(predictor.intended_use)
    return AnalysisReport(
        status=analysed.status,
        reason=analysed.reason,
        series_note=analysed.series_note,
        sources=analysed.sources,
        findings=analysed.findings,
        algorithm=AlgorithmInfo(
            version=predictor.version, checkpoint_sha256=predictor.sha256,
            intended_use=_USE_STATEMENTS[use],
            synthetic_trained=use is IntendedUse.RESEARCH_SYNTHETIC),
        observer=DeviceObserver(config.ae_title, device_uid(config.ae_title)),
        software_versions=(config.software_version, f"SD-MdaNet {predictor.version}"),
        uids=ResultUids.derive(f"{study_uid}/{revision}/{predictor.sha256}",
                               len(analysed.findings)),
        predecessor=_predecessor(engine, study_uid, revision),
    )


def device_uid(ae_title: str) -> str:
    """The node's Device UID, derived from its AE title (stable across restarts)."""
    return f"2.25.{uuid.uuid5(_DEVICE_NAMESPACE, ae_title.strip()).int}"


def _predecessor(engine: Engine, study_uid: str, revision: int) -> PredecessorSR | None:
    with transaction(engine) as session:
        row = session.execute(
            select(Result.sr_sop_instance_uid, Result.sr_series_uid)
            .join(Study, Result.study_id == Study.id)
            .where(Study.study_uid == study_uid, Result.revision < revision)
            .order_by(Result.revision.desc(), Result.id.desc()).limit(1)
        ).first()
    if row is None:
        return None
    return PredecessorSR(row[0], ComprehensiveSRStorage, row[1])


def _save(ds: Dataset, path: Path) -> tuple[str, str, str]:
    """Write ``ds`` atomically (temporary file, fsync, rename); (SOP UID, series UID, path)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    ds.save_as(tmp, enforce_file_format=True)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID), str(path)


def _finish(engine: Engine, predictor: Predictor, study_uid: str, revision: int,
            analysed: _Analysed, objects: dict[str, tuple[str, str, str]], timer: _Timer,
            actor: str) -> AnalysisOutcome:
    """Result row (when there are objects) and the end of the analysis, in one transaction."""
    state = StudyState.DONE if analysed.status is not AnalysisStatus.NOT_ANALYZABLE \
        else StudyState.NOT_ANALYZABLE
    now = datetime.now(UTC)
    with transaction(engine) as session:
        result_id = None
        if objects:
            result = add_result(session, study_uid=study_uid, revision=revision,
                                checkpoint_sha256=predictor.sha256, objects=objects,
                                findings=findings_summary(predictor, analysed), now=now)
            result_id = result.id
        new_state = finish_analysis(session, study_uid=study_uid, revision=revision,
                                    outcome=state, reason=analysed.reason or None,
                                    timings=timer.seconds, error=None, now=now, actor=actor)
    logger.info("study %s revision %d: %s (%s) in %.1f s", study_uid, revision, analysed.status,
                analysed.reason or analysed.series_note, timer.seconds.get("total", 0.0))
    return AnalysisOutcome(new_state, result_id, analysed.reason or None)


def findings_summary(predictor: Predictor, analysed: _Analysed) -> dict[str, Any]:
    """What the Result row keeps in JSON: status, model identity and intended use (read by
    the delivery's research interlock) and one line per nodule."""
    return {
        "status": str(analysed.status),
        "reason": analysed.reason,
        "series": analysed.series_note,
        "nodules_from": analysed.nodules_from,
        "model_version": predictor.version,
        "intended_use": str(predictor.intended_use),
        "nodules": [
            {"number": f.number, "centre_mm": list(f.measurements.centre_mm),
             "laterality": str(f.measurements.laterality),
             "long_axis_mm": round(f.measurements.long_axis_mm, 2),
             "invasiveness": str(f.prediction.invasiveness),
             "probabilities": [round(p, 4) for p in f.prediction.probabilities],
             "proportions": list(f.prediction.proportions),
             "uncertainty": round(f.prediction.uncertainty, 2)}
            for f in analysed.findings
        ],
    }
