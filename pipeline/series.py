"""Series selection: which CT series of a study the analysis uses, and why.

A chest study often holds a localizer, thick soft-tissue reconstructions, thin lung
reconstructions, MPRs and dose reports. Only an original axial CT series with enough images on
one regular grid is analysable; among those, thin slices win, then a lung (sharp) kernel, then
more images. ``select_series`` returns the choice with a one-line reason, or no choice with the
reason nothing is analysable, plus why each other series was passed over: the audit log and the
SR record both.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from pipeline.geometry import GeometryError, stack_geometry
from pipeline.instances import CT_STORAGE_CLASSES, ImageFrame, InstanceError, image_frames
from pipeline.volume import read_dataset

#: ConvolutionKernel values of lung (sharp) reconstructions across vendors: GE LUNG/BONE,
#: Siemens B/Br/I/Bl 50-89, Philips L/YA-YC, Canon FC5x/FC8x.
LUNG_KERNEL = re.compile(
    r"lung|bone|sharp|^(b|br|bl|i|hr)[5-8]\d|^fc(5\d|8\d)|^(l|ya|yb|yc)$", re.IGNORECASE
)
#: An axial series has its slice normal within this many degrees of the patient's z axis.
AXIAL_MAX_DEGREES = 35.0
THIN_SLICE_MM = 1.5
#: Slices further apart than this are refused: nodules of a few millimetres fall between them.
MAX_SLICE_SPACING_MM = 5.0


@dataclass(frozen=True)
class SeriesSummary:
    """What selection needs to know about one series, read from its headers.

    Attributes:
        unusable: why the series cannot be analysed, or ``None`` when it can.
        slice_spacing_mm: distance between images along the normal (None when unusable).
        lung_kernel: whether ConvolutionKernel names a sharp/lung reconstruction.
        sharpness: for a usable series without ConvolutionKernel, the median HU step between
            neighbouring lung pixels of its middle image (sharp kernels leave more fine
            texture and noise); ``None`` otherwise.
        headers: the parsed instances (pixel data left in the files), for
            ``pipeline.volume.assemble_volume`` so that nothing is parsed twice.
    """

    series_instance_uid: str
    modality: str
    description: str
    kernel: str
    files: tuple[Path, ...]
    n_images: int
    slice_spacing_mm: float | None
    lung_kernel: bool
    unusable: str | None
    sharpness: float | None = None
    headers: tuple[Dataset, ...] = field(default=(), repr=False, compare=False)

    @property
    def label(self) -> str:
        """A short human name: description, image count and spacing."""
        spacing = f", {self.slice_spacing_mm:.2f} mm" if self.slice_spacing_mm else ""
        return f"{self.description or 'unnamed'} ({self.n_images} images{spacing})"


@dataclass(frozen=True)
class SeriesChoice:
    """The outcome of selection.

    Attributes:
        series: the chosen series, or ``None`` when nothing is analysable.
        reason: why it was chosen, or why nothing is analysable.
        passed_over: (SeriesInstanceUID, reason) for every other series.
    """

    series: SeriesSummary | None
    reason: str
    passed_over: tuple[tuple[str, str], ...]


def read_headers(paths: Iterable[Path]) -> list[tuple[Path, Dataset]]:
    """The readable DICOM files among ``paths``, parsed without their pixel data."""
    headers: list[tuple[Path, Dataset]] = []
    for path in paths:
        try:
            headers.append((path, read_dataset(path)))
        except (InvalidDicomError, OSError):
            continue
    return headers


def summarize_series(
    headers: Sequence[tuple[Path, Dataset]], min_images: int
) -> list[SeriesSummary]:
    """Group headers by SeriesInstanceUID and judge each series' usability."""
    groups: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    for path, ds in headers:
        groups[str(ds.get("SeriesInstanceUID", ""))].append((path, ds))
    return [_summary(uid, members, min_images) for uid, members in groups.items()]


def _summary(uid: str, members: list[tuple[Path, Dataset]], min_images: int) -> SeriesSummary:
    first = members[0][1]
    kernel = "\\".join(str(v) for v in _multi(first.get("ConvolutionKernel", "")))
    frames: list[ImageFrame] = []
    problem = _header_problem(first)
    if problem is None:
        try:
            frames = [f for _, ds in members for f in image_frames(ds)]
        except InstanceError as e:
            problem = str(e)
    spacing = None
    if problem is None:
        problem, spacing = _geometry_problem(frames, min_images)
    return SeriesSummary(
        series_instance_uid=uid,
        modality=str(first.get("Modality", "")),
        description=str(first.get("SeriesDescription", "")),
        kernel=kernel,
        files=tuple(path for path, _ in members),
        n_images=len(frames) or len(members),
        slice_spacing_mm=spacing,
        lung_kernel=any(LUNG_KERNEL.search(k.strip()) for k in kernel.split("\\") if k),
        unusable=problem,
        sharpness=_sharpness(members) if problem is None and not kernel.strip() else None,
        headers=tuple(ds for _, ds in members),
    )


def _multi(value: object) -> list[object]:
    return list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]


def _header_problem(ds: Dataset) -> str | None:
    modality = str(ds.get("Modality", ""))
    if modality != "CT":
        return f"modality {modality or 'missing'}, not CT"
    if str(ds.get("SOPClassUID", "")) not in CT_STORAGE_CLASSES:
        return f"SOP class {ds.get('SOPClassUID', 'missing')} is not a CT image"
    image_type = [str(v).upper() for v in _multi(ds.get("ImageType", []))]
    if "LOCALIZER" in image_type:
        return "localizer (scout) images"
    if image_type[:1] == ["DERIVED"] or image_type[1:2] == ["SECONDARY"]:
        return f"derived or secondary images ({chr(92).join(image_type)})"
    return None


def _geometry_problem(frames: list[ImageFrame], min_images: int) -> tuple[str | None, float | None]:
    if len(frames) < min_images:
        return f"{len(frames)} images, fewer than the {min_images} required", None
    row = np.array(frames[0].plane.orientation[:3])
    col = np.array(frames[0].plane.orientation[3:])
    cos_z = abs(float(np.cross(row, col)[2]))
    if cos_z < np.cos(np.radians(AXIAL_MAX_DEGREES)):
        return "not axial (slice normal far from the patient's z axis)", None
    try:
        geometry = stack_geometry([f.plane for f in frames])
    except GeometryError as e:
        return str(e), None
    if geometry.spacing[2] > MAX_SLICE_SPACING_MM + 0.01:
        return (f"slices {geometry.spacing[2]:.1f} mm apart, thicker than the "
                f"{MAX_SLICE_SPACING_MM:.0f} mm the analysis accepts"), None
    return None, geometry.spacing[2]


def _sharpness(members: list[tuple[Path, Dataset]]) -> float | None:
    """Median |HU step| between horizontally neighbouring lung pixels (-1000..-500 HU) of the
    middle image; ``None`` when it cannot be decoded or shows no lung."""
    ds = members[len(members) // 2][1]
    try:
        pixels = np.asarray(ds.pixel_array, dtype=np.float32)
    except (AttributeError, ValueError, RuntimeError, NotImplementedError):
        return None
    if pixels.ndim == 3:
        pixels = pixels[len(pixels) // 2]
    hu = pixels * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    lung = (hu > -1000) & (hu < -500)
    pairs = lung[:, 1:] & lung[:, :-1]
    if pairs.sum() < 100:
        return None
    return float(np.median(np.abs(np.diff(hu, axis=1))[pairs]))


def select_series(series: Sequence[SeriesSummary]) -> SeriesChoice:
    """Choose the series to analyse: thin slices first, then a lung kernel, then more images."""
    usable = [s for s in series if s.unusable is None]
    passed = [(s.series_instance_uid, s.unusable) for s in series if s.unusable is not None]
    if not usable:
        if not series:
            return SeriesChoice(None, "the study holds no readable DICOM images", ())
        listed = "; ".join(f"{s.label}: {s.unusable}" for s in series)
        return SeriesChoice(None, f"no analysable CT series ({listed})", tuple(passed))
    ranked = sorted(usable, key=_rank)
    best = ranked[0]
    thin = "thin slices" if (best.slice_spacing_mm or 99) <= THIN_SLICE_MM else "no thin slices"
    kernel = f"kernel {best.kernel or 'unknown'}"
    if best.lung_kernel:
        kernel = f"lung {kernel}"
    elif best.sharpness is not None:
        kernel += f", sharpness {best.sharpness:.0f} HU"
    others = [(s.series_instance_uid, f"less suitable than {best.label}") for s in ranked[1:]]
    reason = f"selected {best.label}: axial CT, {thin}, {kernel}"
    if len(ranked) > 1:
        reason += f", best of {len(ranked)} usable series"
    return SeriesChoice(best, reason, tuple(others + passed))


def _rank(s: SeriesSummary) -> tuple[bool, bool, float, float, int]:
    """Thin first, then a lung kernel, then the sharper image (series without a kernel),
    then thinner, then more images."""
    spacing = s.slice_spacing_mm or 99.0
    return (spacing > THIN_SLICE_MM, not s.lung_kernel, -(s.sharpness or 0.0), round(spacing, 1),
            -s.n_images)
