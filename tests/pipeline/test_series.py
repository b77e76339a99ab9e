"""Series selection: the right series of a mixed study, and a reason when none will do."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.series import read_headers, select_series, summarize_series
from tests.pipeline.dicom_factory import ct_series, phantom, write_series

STUDY = "1.2.826.0.1.3680043.8.498.1"


def _study(tmp_path: Path, series: dict[str, list]) -> list[Path]:
    paths = []
    for name, datasets in series.items():
        paths += write_series(datasets, tmp_path / name)
    (tmp_path / "junk.txt").write_text("not DICOM")
    return [*paths, tmp_path / "junk.txt"]


def _localizer() -> list:
    scout = ct_series(phantom((1, 40, 48)), study_uid=STUDY, description="Topogram",
                      image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), kernel="T20f")
    return scout


def test_picks_the_thin_lung_series(tmp_path: Path) -> None:
    soft = ct_series(phantom((6, 40, 48)), spacing=(0.7, 0.7, 5.0), study_uid=STUDY,
                     description="Chest 5.0 soft tissue", kernel="B30f")
    lung = ct_series(phantom((24, 40, 48)), spacing=(0.7, 0.7, 1.0), study_uid=STUDY,
                     description="Chest 1.0 lung", kernel="B70f")
    soft_thin = ct_series(phantom((24, 40, 48)), spacing=(0.7, 0.7, 1.0), study_uid=STUDY,
                          description="Chest 1.0 soft", kernel="B30f")
    paths = _study(tmp_path, {"scout": _localizer(), "soft": soft, "lung": lung,
                              "soft_thin": soft_thin})
    summaries = summarize_series(read_headers(paths), min_images=5)
    choice = select_series(summaries)
    assert choice.series is not None
    assert choice.series.series_instance_uid == lung[0].SeriesInstanceUID
    assert choice.series.slice_spacing_mm == 1.0
    assert "lung kernel B70f" in choice.reason and "best of 3" in choice.reason
    passed = dict(choice.passed_over)
    assert passed[_localizer_uid(summaries)] == "localizer (scout) images"
    assert passed[soft[0].SeriesInstanceUID].startswith("less suitable")
    assert len(choice.series.files) == 24


def _localizer_uid(summaries: list) -> str:
    return next(s.series_instance_uid for s in summaries if s.description == "Topogram")


def test_no_usable_series_gives_the_reason_of_each(tmp_path: Path) -> None:
    mpr = ct_series(phantom((20, 40, 48)), study_uid=STUDY, description="Coronal MPR",
                    image_type=("DERIVED", "SECONDARY", "MPR"))
    coronal = ct_series(phantom((20, 40, 48)), study_uid=STUDY, description="Coronal",
                        orientation=(1, 0, 0, 0, 0, -1))
    short = ct_series(phantom((3, 40, 48)), study_uid=STUDY, description="Few")
    gappy = ct_series(phantom((20, 40, 48)), study_uid=STUDY, description="Gappy")
    del gappy[8]
    paths = _study(tmp_path, {"scout": _localizer(), "mpr": mpr, "coronal": coronal,
                              "short": short, "gappy": gappy})
    choice = select_series(summarize_series(read_headers(paths), min_images=10))
    assert choice.series is None
    assert choice.reason.startswith("no analysable CT series")
    for expected in ("localizer", "derived or secondary", "not axial",
                     "3 images, fewer than the 10 required", "gap of 2.50 mm"):
        assert expected in choice.reason
    assert len(choice.passed_over) == 5


def test_non_ct_and_empty_studies(tmp_path: Path) -> None:
    assert select_series([]).reason == "the study holds no readable DICOM images"
    mr = ct_series(phantom((20, 40, 48)), description="MR")
    for ds in mr:
        ds.Modality = "MR"
    choice = select_series(summarize_series(read_headers(write_series(mr, tmp_path)), 10))
    assert choice.series is None and "modality MR, not CT" in choice.reason


def test_enhanced_ct_counts_frames(tmp_path: Path) -> None:
    from tests.pipeline.dicom_factory import enhanced_ct

    instance = enhanced_ct(ct_series(phantom((20, 40, 48)), spacing=(0.7, 0.7, 0.8)))
    path = tmp_path / "enhanced.dcm"
    instance.save_as(path, enforce_file_format=True)
    choice = select_series(summarize_series(read_headers([path]), min_images=10))
    assert choice.series is not None and choice.series.n_images == 20
    assert np.isclose(choice.series.slice_spacing_mm or 0, 0.8)


def test_without_kernels_the_sharper_series_wins(tmp_path: Path) -> None:
    from scipy import ndimage

    rng = np.random.default_rng(1)
    base = np.full((20, 40, 48), -850.0)
    smooth = ct_series(np.rint(ndimage.gaussian_filter(base + rng.normal(0, 60, base.shape), 2))
                       .astype(np.int16), study_uid=STUDY, description="A", kernel="")
    sharp = ct_series(np.rint(base + rng.normal(0, 60, base.shape)).astype(np.int16),
                      study_uid=STUDY, description="B", kernel="")
    paths = _study(tmp_path, {"smooth": smooth, "sharp": sharp})
    summaries = summarize_series(read_headers(paths), min_images=10)
    choice = select_series(summaries)
    assert choice.series is not None and choice.series.description == "B"
    assert "sharpness" in choice.reason
    sharpness = {s.description: s.sharpness for s in summaries}
    assert sharpness["B"] > 3 * sharpness["A"]


def test_synthetic_study_with_extra_series(tmp_path: Path) -> None:
    from training.synthetic.study import generate_study

    truth = generate_study(tmp_path, seed=5, acquisition="fast", n_nodules=0, extra_series=True)
    choice = select_series(summarize_series(read_headers(sorted(tmp_path.glob("*.dcm"))), 30))
    assert choice.series is not None
    assert choice.series.series_instance_uid == truth.series_uid
    reasons = sorted(reason for _, reason in choice.passed_over)
    assert reasons[0].startswith("derived or secondary") and reasons[1].startswith("localizer")


def test_slices_thicker_than_the_limit_are_refused(tmp_path: Path) -> None:
    thick = ct_series(phantom((20, 40, 48)), spacing=(0.7, 0.7, 10.0), study_uid=STUDY,
                      description="Chest 10 mm")
    choice = select_series(summarize_series(read_headers(_study(tmp_path, {"thick": thick})),
                                            min_images=10))
    assert choice.series is None
    assert "slices 10.0 mm apart, thicker than the 5 mm the analysis accepts" in choice.reason
