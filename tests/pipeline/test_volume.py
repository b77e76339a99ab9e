"""Volume assembly: every ordering, pixel encoding and transfer syntax gives the same HU grid."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom import uid
from scipy import ndimage

from pipeline.volume import Volume, VolumeError, assemble_volume, read_volume
from tests.conftest import require_tool
from tests.pipeline.dicom_factory import ct_series, enhanced_ct, phantom, write_series

HU = phantom()
SPACING = (0.7, 0.8, 1.25)
ORIGIN = (-10.0, -20.0, -100.0)


def _reference() -> Volume:
    return assemble_volume(ct_series(HU, spacing=SPACING, origin=ORIGIN))


def _same_physical_content(a: sitk.Image, b: sitk.Image) -> None:
    resampled = sitk.Resample(b, a, sitk.Transform(), sitk.sitkNearestNeighbor, -5000)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(resampled), sitk.GetArrayFromImage(a))


def test_reference_volume_has_patient_geometry() -> None:
    volume = _reference()
    assert volume.image.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(volume.voxels, HU)
    assert volume.image.GetOrigin() == pytest.approx(ORIGIN)
    assert volume.image.GetSpacing() == pytest.approx(SPACING)
    assert volume.image.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert len(volume.sop_instance_uids) == HU.shape[0]


def test_shuffled_files_and_instance_numbers_give_the_same_volume() -> None:
    series = ct_series(HU, spacing=SPACING, origin=ORIGIN)
    expected_uids = [ds.SOPInstanceUID for ds in series]
    rng = random.Random(3)
    numbers = list(range(1, len(series) + 1))
    rng.shuffle(numbers)
    for ds, n in zip(series, numbers, strict=True):
        ds.InstanceNumber = n
    rng.shuffle(series)
    volume = assemble_volume(series)
    np.testing.assert_array_equal(volume.voxels, HU)
    assert list(volume.sop_instance_uids) == expected_uids


def test_feet_first_orientation_gives_the_same_physical_volume() -> None:
    nz, _, nx = HU.shape
    top = (ORIGIN[0] + (nx - 1) * SPACING[0], ORIGIN[1], ORIGIN[2] + (nz - 1) * SPACING[2])
    ffs = ct_series(
        HU[::-1, :, ::-1].copy(), spacing=SPACING, origin=top, orientation=(-1, 0, 0, 0, 1, 0)
    )
    volume = assemble_volume(list(reversed(ffs)))
    _same_physical_content(_reference().image, volume.image)


@pytest.mark.parametrize(
    ("representation", "slope", "intercept"),
    [(0, 1.0, -1024.0), (1, 1.0, -1024.0), (1, 1.0, 0.0), (0, 0.5, -1100.0), (1, 2.0, -1024.0)],
)
def test_pixel_representation_and_rescale(
    representation: int, slope: float, intercept: float
) -> None:
    hu = (HU // 2 * 2) if slope == 2.0 else HU
    series = ct_series(
        hu, pixel_representation=representation, slope=slope, intercept=intercept
    )
    np.testing.assert_array_equal(assemble_volume(series).voxels, hu)


def _encode(paths: list[Path], syntax: str, folder: Path) -> list[Path]:
    """Write ``paths`` again in the named transfer syntax."""
    from tests.pipeline.dicom_factory import convert

    if syntax == "big-endian":
        return convert(require_tool("dcmconv"), ["+tb"], paths, folder)
    if syntax == "jpeg-lossless-sv1":
        return convert(require_tool("dcmcjpeg"), ["+e1"], paths, folder)
    target = {
        "implicit": uid.ImplicitVRLittleEndian,
        "deflated": uid.DeflatedExplicitVRLittleEndian,
        "rle": uid.RLELossless,
        "jpeg-ls": uid.JPEGLSLossless,
        "jpeg-2000": uid.JPEG2000Lossless,
    }[syntax]
    folder.mkdir()
    out = []
    for path in paths:
        ds = pydicom.dcmread(path)
        if target.is_compressed:
            ds.compress(target)
        else:
            ds.file_meta.TransferSyntaxUID = target
        ds.save_as(folder / path.name, enforce_file_format=True)
        out.append(folder / path.name)
    return out


@pytest.mark.parametrize(
    "syntax",
    ["explicit", "implicit", "deflated", "big-endian", "jpeg-lossless-sv1", "rle", "jpeg-ls",
     "jpeg-2000"],
)
@pytest.mark.parametrize("representation", [0, 1])
def test_each_accepted_transfer_syntax(tmp_path: Path, syntax: str, representation: int) -> None:
    series = ct_series(HU, spacing=SPACING, origin=ORIGIN, pixel_representation=representation)
    paths = write_series(series, tmp_path / "explicit")
    if syntax != "explicit":
        paths = _encode(paths, syntax, tmp_path / syntax)
        written = pydicom.dcmread(paths[0], stop_before_pixels=True).file_meta.TransferSyntaxUID
        assert written != uid.ExplicitVRLittleEndian
    volume = read_volume(paths)
    np.testing.assert_array_equal(volume.voxels, HU)
    assert volume.image.GetOrigin() == pytest.approx(ORIGIN)


def test_enhanced_ct_multi_frame() -> None:
    series = ct_series(HU, spacing=SPACING, origin=ORIGIN)
    instance = enhanced_ct(list(reversed(series)))
    volume = assemble_volume([instance])
    np.testing.assert_array_equal(volume.voxels, HU)
    assert volume.frames == tuple(range(HU.shape[0] - 1, -1, -1))
    assert set(volume.sop_instance_uids) == {instance.SOPInstanceUID}


def _linear(points: np.ndarray) -> np.ndarray:
    return 300 + 3.0 * points[..., 0] + 2.0 * points[..., 1] + 4.0 * points[..., 2]


def test_gantry_tilt_is_resampled_onto_an_orthogonal_grid() -> None:
    tilt = math.radians(15)
    col = (0.0, math.cos(tilt), math.sin(tilt))
    orientation = (1.0, 0.0, 0.0, *col)
    shape, (cs, rs, step) = (10, 24, 20), (1.0, 1.0, 2.0)
    z, y, x = np.indices(shape)
    points = (
        np.array(ORIGIN)
        + x[..., None] * cs * np.array([1.0, 0, 0])
        + y[..., None] * rs * np.array(col)
        + z[..., None] * step * np.array([0, 0, 1.0])
    )
    hu = np.rint(_linear(points)).astype(np.int16)
    series = ct_series(hu, spacing=(cs, rs, step), origin=ORIGIN, orientation=orientation,
                       slice_step=(0, 0, step))
    volume = assemble_volume(series)
    assert volume.tilt_degrees == pytest.approx(15, abs=0.1)
    assert volume.image.GetSpacing()[2] == pytest.approx(step * math.cos(tilt))
    array = volume.voxels
    inside = ndimage.minimum_filter(array, size=(1, 3, 3)) > -1024
    assert inside.sum() > array.size // 2
    index = np.argwhere(inside)
    physical = np.array(volume.image.GetOrigin()) + (
        np.array(volume.image.GetDirection()).reshape(3, 3)
        @ (index[:, ::-1] * np.array(volume.image.GetSpacing())).T
    ).T
    np.testing.assert_allclose(array[inside], _linear(physical), atol=2.0)


def test_steep_tilt_is_refused() -> None:
    series = ct_series(HU, slice_step=(0, 1.25, 1.25))
    with pytest.raises(VolumeError, match=r"gantry tilt of 45\.0 degrees"):
        assemble_volume(series)


def test_gap_is_refused_with_a_reason() -> None:
    series = ct_series(HU)
    del series[5:7]
    with pytest.raises(VolumeError, match=r"gap of 3\.75 mm"):
        assemble_volume(series)


def test_mixed_matrix_sizes_are_refused_with_a_reason() -> None:
    series = ct_series(HU)
    odd = ct_series(HU[:, :10, :], series_uid=series[0].SeriesInstanceUID)
    series[3] = odd[3]
    with pytest.raises(VolumeError, match="mixed matrix sizes"):
        assemble_volume(series)


def test_two_series_and_unreadable_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match="2 series"):
        assemble_volume(ct_series(HU)[:3] + ct_series(HU)[3:])
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not dicom")
    with pytest.raises(VolumeError, match="cannot read"):
        read_volume([bad])


def test_duplicate_and_overlapping_positions_are_refused() -> None:
    doubled = ct_series(HU) + ct_series(HU)
    for ds in doubled:
        ds.SeriesInstanceUID = doubled[0].SeriesInstanceUID
    with pytest.raises(VolumeError, match="share one position"):
        assemble_volume(doubled)
    overlapping = ct_series(HU)
    extra = ct_series(HU, origin=(-10.0, -20.0, -100.0 + 0.3),
                      series_uid=overlapping[0].SeriesInstanceUID)[3]
    overlapping.append(extra)
    with pytest.raises(VolumeError, match="overlapping acquisitions"):
        assemble_volume(overlapping)


def test_missing_attributes_and_pixel_data_are_reasons() -> None:
    series = ct_series(HU)
    del series[2].ImagePositionPatient
    with pytest.raises(VolumeError, match="lacks ImagePositionPatient"):
        assemble_volume(series)
    series = ct_series(HU)
    del series[2].PixelData
    with pytest.raises(VolumeError, match="no pixel data"):
        assemble_volume(series)
