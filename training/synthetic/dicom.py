"""DICOM CT Image Storage files for synthetic studies: one dataset template per series,
of which only the per-slice attributes change, so writing costs little more than the bytes.

The template's elements are encoded once (Explicit VR Little Endian) by pydicom; each image
then encodes only its own five elements and its file meta information and joins the parts in
tag order. pydicom reads every file back in the tests, and dciodvfy checks them.

UIDs are 2.25 UIDs derived (UUID version 5) from the study's seed and index, so a study is
byte-identical wherever and whenever it is generated.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

from training.synthetic.acquisition import RESCALE_INTERCEPT
from training.synthetic.geometry import Vec3

_NAMESPACE = uuid.UUID("5d0c4f2e-8a51-4a43-9d0e-6c6b7a1f3e21")
MANUFACTURER = "lungpath synthetic cohort"
AXIAL_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
_PREAMBLE = b"\x00" * 128 + b"DICM"
_PIXEL_DATA = Tag(0x7FE0, 0x0010)
#: the elements that change from one image of a series to the next
_PER_IMAGE = {Tag(0x0008, 0x0018), Tag(0x0020, 0x0013), Tag(0x0020, 0x0032),
              Tag(0x0020, 0x1041), _PIXEL_DATA}


def derived_uid(*parts: object) -> UID:
    """A 2.25 UID that depends only on ``parts``."""
    return UID(f"2.25.{uuid.uuid5(_NAMESPACE, '/'.join(str(p) for p in parts)).int}")


@dataclass(frozen=True)
class StudyIdentity:
    """Patient and study attributes shared by every series of one study."""

    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    study_uid: str
    study_date: str
    accession_number: str
    frame_of_reference_uid: str

    @classmethod
    def derive(cls, seed: int, index: int) -> StudyIdentity:
        """Deterministic identity of study ``index`` of cohort ``seed``."""
        key = uuid.uuid5(_NAMESPACE, f"study/{seed}/{index}")
        number = key.int
        date = dt.date(2024, 1, 1) + dt.timedelta(days=number % 366)
        return cls(
            patient_name=f"SYNTHETIC^{seed}-{index}",
            patient_id=f"SYN{key.hex[:10].upper()}",
            birth_date=f"{1940 + number % 36}0{1 + number % 9}15",
            sex="FM"[number % 2],
            study_uid=derived_uid("study", seed, index),
            study_date=date.strftime("%Y%m%d"),
            accession_number=f"A{key.hex[10:20].upper()}",
            frame_of_reference_uid=derived_uid("frame", seed, index),
        )


@dataclass(frozen=True)
class SeriesSpec:
    """What distinguishes one series of a study."""

    number: int
    description: str
    kernel: str
    image_type: tuple[str, ...]
    rows: int
    columns: int
    pixel_spacing: tuple[float, float]  #: (between rows, between columns) in mm
    slice_thickness_mm: float | None
    orientation: tuple[float, ...]
    window: tuple[int, int]  #: (center, width)


class SeriesWriter:
    """Writes the instances of one series into a folder, one file per image."""

    def __init__(self, folder: Path, identity: StudyIdentity, spec: SeriesSpec, seed: int,
                 index: int) -> None:
        self.folder = folder
        self.spec = spec
        self.key = (seed, index, spec.number)
        self.uid = derived_uid("series", *self.key)
        self.count = 0
        template = _template(identity, spec, self.uid)
        self.meta = template.file_meta
        self.fixed = [(elem.tag, _encode(elem)) for elem in template if elem.tag not in _PER_IMAGE]

    def write(self, instance: int, pixels: np.ndarray, position: Vec3) -> Path:
        """Write image number ``instance`` (int16 stored values) at ``position`` (mm)."""
        spec = self.spec
        if pixels.dtype != np.int16 or pixels.shape != (spec.rows, spec.columns):
            raise ValueError(
                f'Argument "pixels" must be int16 of shape {(spec.rows, spec.columns)}, '
                f"got {pixels.dtype} {pixels.shape}."
            )
        sop_uid = derived_uid("instance", *self.key, instance)
        own = [
            DataElement(0x00080018, "UI", sop_uid),
            DataElement(0x00200013, "IS", str(instance)),
            DataElement(0x00200032, "DS", [_ds(v) for v in position]),
        ]
        if spec.orientation == AXIAL_ORIENTATION:
            own.append(DataElement(0x00201041, "DS", _ds(position[2])))
        parts = sorted([*self.fixed, *((e.tag, _encode(e)) for e in own)])
        data = pixels.astype("<i2", copy=False).tobytes()
        self.meta.MediaStorageSOPInstanceUID = sop_uid
        meta = DicomBytesIO()
        write_file_meta_info(meta, self.meta, enforce_standard=True)
        path = self.folder / f"{spec.number:03d}-{instance:04d}.dcm"
        with path.open("wb") as f:
            f.write(_PREAMBLE + meta.getvalue() + b"".join(p for _, p in parts))
            f.write(b"\xe0\x7f\x10\x00OW\x00\x00" + len(data).to_bytes(4, "little"))
            f.write(data)
        self.count += 1
        return path


def _encode(elem: DataElement) -> bytes:
    """One element in Explicit VR Little Endian."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_data_element(fp, elem)
    return bytes(fp.getvalue())


def _ds(value: float) -> str:
    """A Decimal String of at most 16 characters."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _template(identity: StudyIdentity, spec: SeriesSpec, series_uid: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationVersionName = "LUNGPATH_SYNTH"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(spec.image_type)
    ds.SOPClassUID = CTImageStorage
    for prefix in ("Study", "Series", "Acquisition", "Content"):
        setattr(ds, f"{prefix}Date", identity.study_date)
        setattr(ds, f"{prefix}Time", "093000")
    ds.AccessionNumber = identity.accession_number
    ds.Modality = "CT"
    ds.Manufacturer = MANUFACTURER
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CT CHEST (synthetic)"
    ds.SeriesDescription = spec.description
    ds.ManufacturerModelName = "phantom"
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = identity.birth_date
    ds.PatientSex = identity.sex
    ds.BodyPartExamined = "CHEST"
    if spec.slice_thickness_mm is not None:
        ds.SliceThickness = _ds(spec.slice_thickness_mm)
    else:
        ds.SliceThickness = None
    ds.KVP = "120"
    ds.ReconstructionDiameter = _ds(spec.columns * spec.pixel_spacing[1])
    ds.ConvolutionKernel = spec.kernel
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = identity.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = spec.number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = ["0", "0", "0"]
    ds.ImageOrientationPatient = [_ds(v) for v in spec.orientation]
    ds.FrameOfReferenceUID = identity.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.columns
    ds.PixelSpacing = [_ds(v) for v in spec.pixel_spacing]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = str(spec.window[0])
    ds.WindowWidth = str(spec.window[1])
    ds.RescaleIntercept = str(RESCALE_INTERCEPT)
    ds.RescaleSlope = "1"
    if "LOCALIZER" not in spec.image_type:
        ds.RescaleType = "HU"
    return ds
