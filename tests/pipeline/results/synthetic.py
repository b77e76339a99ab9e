"""A small synthetic CT series with bright spheres, and the findings measured from it by
plain geometry: the result writers' tests need no imaging pipeline."""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from model.pathology import NodulePrediction
from pipeline.findings import (
    Laterality,
    NoduleFinding,
    NoduleMeasurements,
    number_by_iac_probability,
)
from pipeline.results import (
    AlgorithmInfo,
    AnalysisReport,
    AnalysisStatus,
    DeviceObserver,
    PredecessorSR,
    ResultUids,
)

ROWS, COLUMNS, SLICES = 64, 64, 20
PIXEL_SPACING = (0.7, 0.6)  # (row spacing = y, column spacing = x), mm
SLICE_STEP = 1.25
ORIGIN = (-20.0, -15.0, -100.0)  # IPP of the first slice


@dataclass(frozen=True)
class Sphere:
    """A nodule in patient coordinates (LPS, mm)."""

    centre: tuple[float, float, float]
    radius: float
    hu: float = 40.0


def ct_series(spheres: list[Sphere], study_uid: str | None = None) -> list[Dataset]:
    """Axial CT slices (bottom to top) of air-filled lungs (-850 HU) with ``spheres``."""
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid(entropy_srcs=[study_uid, "series"])
    frame_uid = generate_uid(entropy_srcs=[study_uid, "frame"])
    noise = np.random.default_rng(7).normal(0.0, 25.0, (SLICES, ROWS, COLUMNS))
    hu = np.full((SLICES, ROWS, COLUMNS), -850.0) + noise
    for s in spheres:
        hu[sphere_mask(s)] = s.hu + noise[sphere_mask(s)]
    out = []
    for k in range(SLICES):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.PatientName, ds.PatientID = "Synthetic^Nodule", "LP-TEST-1"
        ds.PatientBirthDate, ds.PatientSex = "19600101", "F"
        ds.StudyDate, ds.StudyTime = "20260101", "101500"
        ds.AccessionNumber, ds.StudyID = "A1", "1"
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.Manufacturer = "CT", "Synthetic"
        ds.SeriesNumber, ds.InstanceNumber = 3, k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.AcquisitionNumber, ds.KVP = 1, "120"
        ds.ContentDate = datetime.date(2026, 1, 1).strftime("%Y%m%d")
        ds.ContentTime = "101500"
        ds.PatientOrientation = ""
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], ORIGIN[2] + k * SLICE_STEP]
        ds.SliceLocation = ORIGIN[2] + k * SLICE_STEP
        ds.PixelSpacing = list(PIXEL_SPACING)
        ds.SliceThickness = SLICE_STEP
        ds.Rows, ds.Columns = ROWS, COLUMNS
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = -600, 1500
        ds.PixelData = np.round(hu[k] + 1024).astype(np.int16).tobytes()
        out.append(ds)
    return out


def sphere_mask(s: Sphere) -> np.ndarray:
    """Voxels whose centre lies inside ``s``, indexed (slice, row, column)."""
    k, r, col = np.meshgrid(np.arange(SLICES), np.arange(ROWS), np.arange(COLUMNS),
                            indexing="ij")
    x = ORIGIN[0] + col * PIXEL_SPACING[1]
    y = ORIGIN[1] + r * PIXEL_SPACING[0]
    z = ORIGIN[2] + k * SLICE_STEP
    cx, cy, cz = s.centre
    return np.asarray((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= s.radius**2)


def measure(s: Sphere, series: list[Dataset], points: int = 24) -> NoduleMeasurements:
    """Measurements of a sphere; the outline is the circle where the nearest axial slice
    cuts it, as (column, row) pixel indices (centre of the top-left pixel = (0, 0))."""
    cx, cy, cz = s.centre
    k = round((cz - ORIGIN[2]) / SLICE_STEP)
    dz = ORIGIN[2] + k * SLICE_STEP - cz
    radius = math.sqrt(max(s.radius**2 - dz**2, 1.0))
    angles = np.linspace(0, 2 * math.pi, points, endpoint=False)
    outline = tuple(
        ((cx + radius * math.cos(a) - ORIGIN[0]) / PIXEL_SPACING[1],
         (cy + radius * math.sin(a) - ORIGIN[1]) / PIXEL_SPACING[0])
        for a in angles
    )
    volume = 4 / 3 * math.pi * s.radius**3
    return NoduleMeasurements(
        centre_mm=s.centre,
        laterality=Laterality.RIGHT if cx < 0 else Laterality.LEFT,
        long_axis_mm=2 * radius,
        short_axis_mm=2 * radius * 0.93,
        volume_mm3=volume,
        equivalent_diameter_mm=2 * s.radius,
        solid_long_axis_mm=2 * radius * 0.4,
        ctr=0.4,
        mean_hu=s.hu,
        outline_image_uid=series[k].SOPInstanceUID,
        outline=outline,
    )


PREDICTIONS = (
    NodulePrediction(probabilities=(0.05, 0.15, 0.8), proportions=(10, 30, 5, 20, 25, 5, 5),
                     uncertainty=12.345),
    NodulePrediction(probabilities=(0.6123, 0.3, 0.0877), proportions=(80, 10, 10, 0, 0, 0, 0),
                     uncertainty=31.0),
    NodulePrediction(probabilities=(0.2, 0.45, 0.35), proportions=(55, 25, 20, 0, 0, 0, 0),
                     uncertainty=47.5),
)

SPHERES = (
    Sphere(centre=(-12.3, -2.1, -88.1), radius=4.0),
    Sphere(centre=(9.6, 8.4, -92.0), radius=3.0, hu=-300.0),
    Sphere(centre=(5.1, -6.7, -82.5), radius=2.5, hu=-500.0),
)


def findings(series: list[Dataset], count: int) -> list[NoduleFinding]:
    """``count`` nodules (0-3) of ``SPHERES`` with ``PREDICTIONS``, numbered by P(IAC)."""
    return number_by_iac_probability([
        (measure(s, series), p, sphere_mask(s))
        for s, p in zip(SPHERES[:count], PREDICTIONS[:count], strict=True)
    ])


def report(
    series: list[Dataset],
    count: int,
    status: AnalysisStatus | None = None,
    reason: str = "",
    predecessor: PredecessorSR | None = None,
    synthetic_trained: bool = True,
) -> AnalysisReport:
    """An AnalysisReport over ``series`` with ``count`` nodules."""
    if status is None:
        status = AnalysisStatus.COMPLETED if count else AnalysisStatus.NO_NODULE
    return AnalysisReport(
        status=status,
        reason=reason,
        series_note=f"{series[0].SeriesInstanceUID} (CT, {SLICE_STEP} mm, {len(series)} "
                    "slices): the only axial CT series",
        sources=tuple(series),
        findings=tuple(findings(series, count)),
        algorithm=AlgorithmInfo(version="1.0.0", checkpoint_sha256="0123456789abcdef" * 4,
                                intended_use="Estimates the pathology of lung adenocarcinoma "
                                             "nodules from chest CT.",
                                synthetic_trained=synthetic_trained),
        observer=DeviceObserver(ae_title="LUNGPATH", device_uid="1.2.826.0.1.3680043.10.543.7"),
        software_versions=("lungpath 0.1.0", "SD-MdaNet 1.0.0"),
        uids=ResultUids.derive(f"{series[0].StudyInstanceUID}/{count}/{status}/{predecessor}",
                               count),
        predecessor=predecessor,
    )
