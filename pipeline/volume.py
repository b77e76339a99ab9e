"""Volume assembly: the images of one CT series as one SimpleITK image in Hounsfield units.

Pixel data of every transfer syntax the node accepts is decoded by pydicom and its plugins
(pylibjpeg-libjpeg, -openjpeg, -rle, pyjpegls); uncompressed 16-bit data is read straight from
the buffer, which is what keeps a 300-image study under a second. Images are ordered along the
slice normal (``pipeline.geometry``), a gantry tilt is resampled away, and the result carries
origin, spacing and direction in patient coordinates (LPS, mm).

The voxels are int16 HU: CT values are integers in practice, int16 halves the memory and the
copy time of float32, and every later stage converts the few regions it filters. Values are
rounded after rescale and clipped to [-1024, 32767] HU, so padding outside the reconstruction
circle (often -2000 or -3024 HU) reads as air.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from scipy import ndimage

from pipeline.geometry import GeometryError, StackGeometry, stack_geometry
from pipeline.instances import ImageFrame, InstanceError, image_frames

AIR_HU = -1024
#: Pixel data larger than this is not read with the header but straight from the file.
DEFER_BYTES = 4096
_PIXEL_DATA = 0x7FE00010
_NATIVE_LE = {pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRLittleEndian}
#: decoders pydicom does not pick first, faster on CT: JPEG-LS with pyjpegls takes 10 ms per
#: 512 x 512 image where pylibjpeg-libjpeg takes 32 ms, the same values (bench/profiles)
_DECODER = {pydicom.uid.JPEGLSLossless: "pyjpegls", pydicom.uid.JPEGLSNearLossless: "pyjpegls"}


class VolumeError(ValueError):
    """The series cannot be assembled into a volume; ``str(error)`` is the reason."""


@dataclass(frozen=True)
class Volume:
    """An assembled CT series.

    Attributes:
        image: int16 HU, indexed (x=column, y=row, z=slice) with patient-space geometry.
        voxels: the same values as a (z, y, x) array, for the stages that work in numpy.
        sop_instance_uids: the source instance of each slice z (frames of an Enhanced CT
            instance repeat its UID; ``frames`` then tells them apart).
        frames: 0-based frame index of each slice z inside its instance.
        tilt_degrees: gantry tilt that was resampled away (0 when none).
    """

    image: sitk.Image
    voxels: np.ndarray
    series_instance_uid: str
    sop_instance_uids: tuple[str, ...]
    frames: tuple[int, ...]
    tilt_degrees: float


def read_dataset(path: Path) -> Dataset:
    """Parse one file, leaving its pixel data in the file until assembly reads it."""
    return pydicom.dcmread(path, defer_size=DEFER_BYTES)


def read_volume(paths: Sequence[Path]) -> Volume:
    """Read and assemble the instances at ``paths`` (one series)."""
    datasets = []
    for path in paths:
        try:
            datasets.append(read_dataset(path))
        except (InvalidDicomError, OSError) as e:
            raise VolumeError(f"cannot read {path}: {e}") from None
    return assemble_volume(datasets)


def assemble_volume(datasets: Sequence[Dataset]) -> Volume:
    """Build the HU volume of one series from its instances (``read_dataset`` or in memory)."""
    if not datasets:
        raise VolumeError("the series has no instances")
    series_uids = {str(ds.get("SeriesInstanceUID", "")) for ds in datasets}
    if len(series_uids) != 1:
        raise VolumeError(f"instances of {len(series_uids)} series given, expected one")
    try:
        entries = [(i, f) for i, ds in enumerate(datasets) for f in image_frames(ds)]
        geometry = stack_geometry([f.plane for _, f in entries])
    except (InstanceError, GeometryError) as e:
        raise VolumeError(str(e)) from None
    ordered = [entries[k] for k in geometry.order]
    hu = _hu_stack(datasets, ordered)
    if geometry.tilt_degrees:
        _untilt(hu, geometry)
    image = sitk.GetImageFromArray(hu, isVector=False)
    image.SetOrigin(geometry.origin)
    image.SetSpacing(geometry.spacing)
    image.SetDirection(geometry.direction)
    return Volume(
        image=image,
        voxels=hu,
        series_instance_uid=series_uids.pop(),
        sop_instance_uids=tuple(f.sop_instance_uid for _, f in ordered),
        frames=tuple(f.frame for _, f in ordered),
        tilt_degrees=geometry.tilt_degrees,
    )


def _hu_stack(datasets: Sequence[Dataset], ordered: list[tuple[int, ImageFrame]]) -> np.ndarray:
    pixels = {i: _pixels(datasets[i]) for i in {i for i, _ in ordered}}
    rows, cols = ordered[0][1].plane.shape
    out = np.empty((len(ordered), rows, cols), dtype=np.int16)
    for z, (i, frame) in enumerate(ordered):
        raw = pixels[i][frame.frame]
        if frame.slope == 1.0 and float(frame.intercept).is_integer():
            hu = raw.astype(np.int32) + int(frame.intercept)
        else:
            hu = np.rint(raw * frame.slope + frame.intercept)
        np.clip(hu, AIR_HU, np.iinfo(np.int16).max, out=out[z], casting="unsafe")
    return out


def _pixels(ds: Dataset) -> np.ndarray:
    """Stored values as (frames, rows, columns).

    Native little-endian 16-bit data is read straight from the file (or buffer): pydicom's
    general decoder costs more than the rest of assembly together.
    """
    uid = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        if int(ds.get("SamplesPerPixel", 1)) != 1:
            raise VolumeError(f"instance {ds.SOPInstanceUID} is not a grey-scale image")
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        shape = (frames, int(ds.Rows), int(ds.Columns))
        if uid in _NATIVE_LE and ds.BitsAllocated == 16 and ds.BitsStored == 16:
            dtype = np.int16 if ds.PixelRepresentation == 1 else np.uint16
            return _native(ds, dtype, shape)
        if uid in _DECODER:
            ds.pixel_array_options(decoding_plugin=_DECODER[uid])
        return np.asarray(ds.pixel_array).reshape(shape)
    except (AttributeError, ValueError, RuntimeError, NotImplementedError) as e:
        if isinstance(e, VolumeError):
            raise
        name = getattr(uid, "name", uid)
        raise VolumeError(f"cannot decode pixel data ({name}): {e}") from None


def _native(ds: Dataset, dtype: type[np.integer], shape: tuple[int, int, int]) -> np.ndarray:
    count = int(np.prod(shape))
    raw = ds.get_item(_PIXEL_DATA)
    if raw is None:
        raise VolumeError(f"instance {ds.SOPInstanceUID} has no pixel data")
    if getattr(raw, "value", b"") is None and ds.filename:  # deferred: still in the file
        offset = int(getattr(raw, "value_tell"))  # noqa: B009 (RawDataElement field)
        data = np.fromfile(ds.filename, dtype=dtype, count=count, offset=offset)
        if data.size != count:
            raise VolumeError(f"pixel data of {ds.SOPInstanceUID} is truncated")
        return data.reshape(shape)
    return np.frombuffer(ds.PixelData, dtype=dtype, count=count).reshape(shape)


def _untilt(hu: np.ndarray, geometry: StackGeometry) -> None:
    """Shift each slice in-plane so the tilted stack lies on an orthogonal grid (in place)."""
    d_row, d_col = geometry.shift_per_slice_px
    for z in range(1, hu.shape[0]):
        hu[z] = ndimage.shift(hu[z], (z * d_row, z * d_col), order=1, cval=AIR_HU, mode="constant")
