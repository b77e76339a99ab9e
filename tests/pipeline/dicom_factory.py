"""Small CT series built with pydicom, for geometry, decoding and series-selection tests, and
a minimal SR for delivery tests."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def phantom(shape: tuple[int, int, int] = (12, 40, 48), seed: int = 0) -> np.ndarray:
    """A (z, y, x) HU array with structure in every direction (ramps, a sphere, noise)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    hu = -900 + 40 * z + 10 * y - 5 * x
    centre = np.array(shape) / 2
    hu = np.where(((np.indices(shape).T - centre) ** 2).sum(-1).T < 16, 60, hu)
    return np.clip(hu + rng.integers(-20, 20, shape), -1024, None).astype(np.int16)


def ct_series(
    hu: np.ndarray,
    *,
    spacing: tuple[float, float, float] = (0.7, 0.8, 1.25),
    origin: tuple[float, float, float] = (-10.0, -20.0, -100.0),
    orientation: Sequence[float] = AXIAL,
    slice_step: Sequence[float] | None = None,
    pixel_representation: int = 1,
    slope: float = 1.0,
    intercept: float = -1024.0,
    series_uid: str | None = None,
    study_uid: str | None = None,
    description: str = "Lung 1.0",
    kernel: str = "B70f",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
) -> list[Dataset]:
    """One dataset per z slice of ``hu``; slice k lies at origin + k * slice_step.

    ``slice_step`` defaults to ``spacing[2]`` along the normal; a step with an in-plane part
    makes a gantry-tilted stack. ``spacing`` is (column, row, slice) spacing in mm.
    """
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row, col)
    step = np.array(slice_step) if slice_step is not None else spacing[2] * normal
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    stored = np.rint((hu.astype(float) - intercept) / slope)
    dtype = np.int16 if pixel_representation == 1 else np.uint16
    datasets = []
    for k in range(hu.shape[0]):
        ds = _base(study_uid, series_uid, description, kernel, image_type)
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(v) for v in np.array(origin) + k * step]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.PixelRepresentation = pixel_representation
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelData = stored[k].astype(dtype).tobytes()
        datasets.append(ds)
    return datasets


def _base(
    study_uid: str, series_uid: str, description: str, kernel: str, image_type: Sequence[str]
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study_uid])
    ds.PatientID, ds.PatientName = "P1", "Test^Patient"
    ds.Modality = "CT"
    ds.ImageType = list(image_type)
    ds.SeriesDescription = description
    ds.ConvolutionKernel = kernel
    ds.BodyPartExamined = "CHEST"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    return ds


def write_series(datasets: Sequence[Dataset], folder: Path) -> list[Path]:
    """Save ``datasets`` as numbered files in ``folder`` (Explicit VR Little Endian)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ds in enumerate(datasets):
        path = folder / f"{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def convert(tool: str, options: Sequence[str], paths: Sequence[Path], folder: Path) -> list[Path]:
    """Run a dcmtk converter (dcmconv, dcmcjpeg) on each file, writing into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in paths:
        target = folder / path.name
        subprocess.run([tool, *options, str(path), str(target)], check=True, capture_output=True)
        out.append(target)
    return out


def enhanced_ct(series: Sequence[Dataset]) -> Dataset:
    """One Enhanced CT multi-frame instance holding the images of ``series`` as frames.

    Orientation and spacing go to the shared functional groups, position and rescale per frame.
    """
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import EnhancedCTImageStorage

    first = series[0]
    ds = _base(first.StudyInstanceUID, first.SeriesInstanceUID, "Enhanced", "B70f",
               ("ORIGINAL", "PRIMARY", "AXIAL"))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.Rows, ds.Columns = first.Rows, first.Columns
    ds.PixelRepresentation = first.PixelRepresentation
    ds.NumberOfFrames = len(series)
    shared = Dataset()
    orientation, measures = Dataset(), Dataset()
    orientation.ImageOrientationPatient = first.ImageOrientationPatient
    measures.PixelSpacing = first.PixelSpacing
    measures.SliceThickness = first.SliceThickness
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    shared.PixelMeasuresSequence = DicomSequence([measures])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    frames = []
    for item in series:
        frame, position, transform = Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = item.ImagePositionPatient
        transform.RescaleSlope = item.RescaleSlope
        transform.RescaleIntercept = item.RescaleIntercept
        transform.RescaleType = "HU"
        frame.PlanePositionSequence = DicomSequence([position])
        frame.PixelValueTransformationSequence = DicomSequence([transform])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
    ds.PixelData = b"".join(item.PixelData for item in series)
    return ds


COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


def sr_file(path: Path, study_uid: str) -> str:
    """A minimal Comprehensive 3D SR file of ``study_uid`` at ``path`` (for delivery tests:
    only its identity travels); returns its SOP Instance UID."""
    ds = Dataset()
    ds.SOPClassUID = COMPREHENSIVE_3D_SR
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return str(ds.SOPInstanceUID)
