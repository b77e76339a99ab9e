"""What the result writers need to know about one analysed study revision, as plain types.

The pipeline task fills one ``AnalysisReport``; ``build_sr``, ``build_sc`` and ``build_seg``
read it and nothing else, so the three objects always describe the same analysis. Every UID of
a new series or instance is passed in (``ResultUids``), as highdicom expects: a task re-run for
the same (study, revision, checkpoint) can derive the same UIDs and a PACS then replaces the
objects instead of storing duplicates.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from pydicom import Dataset

from pipeline.findings import NoduleFinding
from pipeline.results.codes import AnalysisStatus

SD_MDANET = "SD-MdaNet"
SYNTHETIC_DISCLAIMER = "Research use only. Model trained on synthetic data; not for clinical use."
MANUFACTURER = "lungpath"
MODEL_NAME = "lungpath SD-MdaNet node"

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_UID_NAMESPACE = uuid.UUID("6c756e67-7061-7468-2d72-6573756c7473")  # fixed: derived UIDs
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_uid(value: str, argument: str) -> None:
    """Raise ValueError naming ``argument`` unless ``value`` is a valid DICOM UID."""
    if not isinstance(value, str) or len(value) > 64 or not _UID.match(value):
        raise ValueError(f'Argument "{argument}" must be a DICOM UID, got {value!r}.')


def _check_text(value: str, argument: str) -> None:
    if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
        raise ValueError(f'Argument "{argument}" must be a non-empty single line of text.')


@dataclass(frozen=True)
class AlgorithmInfo:
    """The checkpoint that produced the predictions (TID 4019 and the intended-use comment).

    Attributes:
        version: the checkpoint's version.
        checkpoint_sha256: SHA-256 of the checkpoint file, lower-case hex.
        intended_use: the checkpoint's intended-use statement.
        synthetic_trained: True for a checkpoint trained on synthetic data; its results carry
            ``SYNTHETIC_DISCLAIMER``.
    """

    version: str
    checkpoint_sha256: str
    intended_use: str
    synthetic_trained: bool
    name: str = SD_MDANET

    def __post_init__(self) -> None:
        _check_text(self.version, "version")
        _check_text(self.intended_use, "intended_use")
        _check_text(self.name, "name")
        if not _SHA256.match(self.checkpoint_sha256):
            raise ValueError('Argument "checkpoint_sha256" must be 64 lower-case hex digits.')

    @property
    def use_statement(self) -> str:
        """The text of the SR's second Comment and of the summary image's footer."""
        if self.synthetic_trained:
            return f"{self.intended_use.rstrip()} {SYNTHETIC_DISCLAIMER}"
        return self.intended_use


@dataclass(frozen=True)
class DeviceObserver:
    """The node that made the report: its AE title and device UID (observer context)."""

    ae_title: str
    device_uid: str

    def __post_init__(self) -> None:
        if not self.ae_title.strip() or len(self.ae_title) > 16 or "\\" in self.ae_title:
            raise ValueError('Argument "ae_title" must be 1-16 characters without "\\".')
        check_uid(self.device_uid, "device_uid")


@dataclass(frozen=True)
class PredecessorSR:
    """The SR of the previous revision of the same study (Predecessor Documents Sequence)."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str

    def __post_init__(self) -> None:
        check_uid(self.sop_instance_uid, "sop_instance_uid")
        check_uid(self.sop_class_uid, "sop_class_uid")
        check_uid(self.series_instance_uid, "series_instance_uid")


@dataclass(frozen=True)
class ResultUids:
    """Every UID the result objects create.

    Attributes:
        sc_instances: one per summary image: one per nodule, or one when there is none.
        tracking: one Tracking UID per nodule, shared by its SR group and its SEG segment.
    """

    sr_series: str
    sr_instance: str
    sc_series: str
    sc_instances: tuple[str, ...]
    seg_series: str
    seg_instance: str
    tracking: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("sr_series", "sr_instance", "sc_series", "seg_series", "seg_instance"):
            check_uid(getattr(self, name), name)
        for name in ("sc_instances", "tracking"):
            for uid in getattr(self, name):
                check_uid(uid, name)
        every = [self.sr_series, self.sr_instance, self.sc_series, *self.sc_instances,
                 self.seg_series, self.seg_instance, *self.tracking]
        if len(set(every)) != len(every):
            raise ValueError('Argument "uids" must not repeat a UID.')
        if not self.sc_instances:
            raise ValueError('Argument "sc_instances" must hold at least one UID.')

    @classmethod
    def derive(cls, key: str, nodule_count: int) -> ResultUids:
        """UIDs derived from ``key`` (e.g. study UID + revision + checkpoint SHA-256): the
        same key gives the same UIDs, so a repeated analysis replaces its objects."""
        if not key:
            raise ValueError('Argument "key" must not be empty.')
        if nodule_count < 0:
            raise ValueError(f'Argument "nodule_count" must be >= 0, got {nodule_count}.')

        def uid(*parts: object) -> str:
            # a name-based (SHA-1) UUID under the 2.25 root: the same name, the same UID
            name = "/".join([key, *map(str, parts)])
            return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"

        return cls(
            sr_series=uid("sr-series"),
            sr_instance=uid("sr"),
            sc_series=uid("sc-series"),
            sc_instances=tuple(uid("sc", i) for i in range(max(nodule_count, 1))),
            seg_series=uid("seg-series"),
            seg_instance=uid("seg"),
            tracking=tuple(uid("nodule", i) for i in range(1, nodule_count + 1)),
        )


@dataclass(frozen=True)
class SeriesNumbers:
    """Series Numbers of the three result series (shown by viewers next to the CT's)."""

    sr: int = 9001
    sc: int = 9002
    seg: int = 9003


@dataclass(frozen=True)
class AnalysisReport:
    """One analysed study revision, as the SR, SC and SEG writers need it.

    Attributes:
        status: COMPLETED with findings; NO_NODULE or NOT_ANALYZABLE without.
        reason: why the study is NOT_ANALYZABLE (empty otherwise).
        series_note: the series analysed and why it was chosen (or why none was).
        sources: the analysed series' instances in volume slice order (headers suffice for
            the SR; the SC and SEG need pixel data). For NOT_ANALYZABLE, the instances
            that were examined. At least one; all of one study.
        findings: the nodules, numbered 1..N by decreasing P(IAC).
        software_versions: e.g. ("lungpath 0.1.0", "SD-MdaNet 1.0").
    """

    status: AnalysisStatus
    reason: str
    series_note: str
    sources: tuple[Dataset, ...]
    findings: tuple[NoduleFinding, ...]
    algorithm: AlgorithmInfo
    observer: DeviceObserver
    software_versions: tuple[str, ...]
    uids: ResultUids
    predecessor: PredecessorSR | None = None
    series_numbers: SeriesNumbers = SeriesNumbers()

    def __post_init__(self) -> None:
        _check_text(self.series_note, "series_note")
        if self.status is AnalysisStatus.NOT_ANALYZABLE:
            _check_text(self.reason, "reason")
        elif self.reason:
            raise ValueError('Argument "reason" must be empty unless the status is '
                             'NOT_ANALYZABLE.')
        if (self.status is AnalysisStatus.COMPLETED) != bool(self.findings):
            raise ValueError('Argument "findings" must be non-empty exactly when the status '
                             f'is COMPLETED (status {self.status}, {len(self.findings)} '
                             'findings).')
        if not self.software_versions or not all(v.strip() for v in self.software_versions):
            raise ValueError('Argument "software_versions" must name at least one version.')
        self._check_sources()
        self._check_findings()

    def _check_sources(self) -> None:
        if not self.sources:
            raise ValueError('Argument "sources" must hold at least one instance.')
        missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                               "SOPClassUID") if k not in self.sources[0]]
        if missing:
            raise ValueError(f'Argument "sources" lacks {", ".join(missing)}.')
        if len({ds.StudyInstanceUID for ds in self.sources}) != 1:
            raise ValueError('Argument "sources" must all belong to one study.')

    def _check_findings(self) -> None:
        numbers = [f.number for f in self.findings]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f'Argument "findings" must be numbered 1..N in order, got {numbers}.')
        if len(self.uids.tracking) != len(self.findings):
            raise ValueError(f'Argument "uids" must hold {len(self.findings)} tracking UIDs.')
        if len(self.uids.sc_instances) != max(len(self.findings), 1):
            raise ValueError(f'Argument "uids" must hold {max(len(self.findings), 1)} SC '
                             'instance UIDs.')
        if not self.findings:
            return
        image_uids = {ds.SOPInstanceUID for ds in self.sources}
        grid = (len(self.sources), int(self.sources[0].Rows), int(self.sources[0].Columns))
        for f in self.findings:
            if f.measurements.outline_image_uid not in image_uids:
                raise ValueError(f"nodule-{f.number}: its outline image is not in \"sources\".")
            if f.mask.shape != grid:
                raise ValueError(f"nodule-{f.number}: mask shape {f.mask.shape} is not the "
                                 f"sources' grid {grid}.")

    @property
    def study_instance_uid(self) -> str:
        return str(self.sources[0].StudyInstanceUID)

    def source(self, sop_instance_uid: str) -> Dataset:
        """The source instance with this SOP Instance UID."""
        for ds in self.sources:
            if ds.SOPInstanceUID == sop_instance_uid:
                return ds
        raise KeyError(sop_instance_uid)

