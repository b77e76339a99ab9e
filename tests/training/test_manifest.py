"""Manifest validation: every kind of bad row is refused with its line, column and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.pathology import Invasiveness
from training.manifest import ManifestError, read_manifest

HEADER = ("patient_id,series_dir,centre_x_mm,centre_y_mm,centre_z_mm,invasiveness,"
          "lepidic,acinar,papillary,micropapillary,solid,cribriform,complex_glandular,fold")
GOOD = "p1,s1,1.5,-2,30,IAC,10,50,20,0,20,0,0,1"


def write(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    (tmp_path / "s1").mkdir(exist_ok=True)
    (tmp_path / "seg.dcm").touch()
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    return [str(p) for p in info.value.problems]


def test_good_rows_are_read_with_paths_resolved(tmp_path: Path) -> None:
    rows = read_manifest(write(tmp_path, GOOD, "p2,s1,3,4,5,,,,,,,,,"))
    assert rows[0].series_dir == tmp_path / "s1"
    assert rows[0].centre_mm == (1.5, -2.0, 30.0)
    assert rows[0].invasiveness is Invasiveness.IAC
    assert rows[0].proportions == pytest.approx((0.1, 0.5, 0.2, 0.0, 0.2, 0.0, 0.0))
    assert rows[0].fold == 1 and rows[0].labelled
    assert rows[1].invasiveness is None and rows[1].proportions is None
    assert not rows[1].labelled


def test_seg_file_and_study_with_series_uid(tmp_path: Path) -> None:
    header = "patient_id,study_dir,series_uid,seg_file,segment_number,invasiveness"
    rows = read_manifest(write(tmp_path, "p1,s1,1.2.3,seg.dcm,2,AIS", header=header))
    assert rows[0].series_uid == "1.2.3" and rows[0].segment_number == 2
    assert rows[0].seg_file == tmp_path / "seg.dcm" and rows[0].centre_mm is None


@pytest.mark.parametrize(("row", "expected"), [
    (",s1,1,2,3,IAC,,,,,,,,", "line 2, column 'patient_id': is empty"),
    ("p1,missing,1,2,3,IAC,,,,,,,,", "line 2, column 'series_dir': folder"),
    ("p1,,1,2,3,IAC,,,,,,,,", "line 2, column 'series_dir': no image source"),
    ("p1,s1,1,,3,IAC,,,,,,,,", "line 2, column 'centre_y_mm': is empty while other"),
    ("p1,s1,1,abc,3,IAC,,,,,,,,", "line 2, column 'centre_y_mm': 'abc' is not a number"),
    ("p1,s1,1,nan,3,IAC,,,,,,,,", "line 2, column 'centre_y_mm': 'nan' is not a finite"),
    ("p1,s1,,,,IAC,,,,,,,,", "line 2, column 'centre_x_mm': no nodule position"),
    ("p1,s1,1,2,3,LPA,,,,,,,,", "line 2, column 'invasiveness': 'LPA' is not AIS, MIA, IAC"),
    ("p1,s1,1,2,3,IAC,50,50,,,,,,", "line 2, column 'papillary': is empty while other"),
    ("p1,s1,1,2,3,IAC,50,40,,0,0,0,0,", "line 2, column 'papillary': is empty while other"),
    ("p1,s1,1,2,3,IAC,50,40,5,0,0,0,0,", "line 2, column 'lepidic': the seven proportions sum"),
    ("p1,s1,1,2,3,IAC,150,-50,0,0,0,0,0,", "line 2, column 'lepidic': 150 is not a percentage"),
    ("p1,s1,1,2,3,IAC,x,100,0,0,0,0,0,", "line 2, column 'lepidic': 'x' is not a number"),
    ("p1,s1,1,2,3,IAC,,,,,,,,-1", "line 2, column 'fold': '-1' is not an integer >= 0"),
    ("p1,s1,1,2,3,IAC,,,,,,,,,extra", "line 2, column '': more cells than header"),
])
def test_each_kind_of_bad_row(tmp_path: Path, row: str, expected: str) -> None:
    found = problems(write(tmp_path, row, GOOD.replace("p1", "p0")))
    assert any(p.startswith(expected) for p in found), found


def test_every_bad_row_is_reported_not_only_the_first(tmp_path: Path) -> None:
    found = problems(write(tmp_path, ",s1,1,2,3,IAC,,,,,,,,", GOOD,
                           "p3,s1,1,2,3,XYZ,,,,,,,,"))
    assert [p.split(",")[0] for p in found] == ["line 2", "line 4"]


def test_duplicate_nodule_is_refused(tmp_path: Path) -> None:
    found = problems(write(tmp_path, GOOD, GOOD.replace("p1", "p9")))
    assert found == ["line 3, column 'series_dir': same series and nodule position as line 2"]


@pytest.mark.parametrize(("header", "expected"), [
    (HEADER.replace("patient_id", "patient"), "column 'patient_id': required column"),
    (HEADER + ",weight", "column 'weight': unknown column"),
    (HEADER.replace("series_dir", "folder"), "column 'series_dir': need series_dir"),
    ("patient_id,series_dir,invasiveness", "column 'centre_x_mm': need centre"),
])
def test_bad_headers(tmp_path: Path, header: str, expected: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(header + "\n")
    assert any(expected in p for p in problems(path))


def test_mixed_sources_and_seg_without_file(tmp_path: Path) -> None:
    header = ("patient_id,series_dir,study_dir,series_uid,centre_x_mm,centre_y_mm,centre_z_mm,"
              "seg_file,segment_number")
    found = problems(write(tmp_path, "p1,s1,s1,1.2,1,2,3,,", "p2,,s1,,,,,,1",
                           "p3,s1,,,,,,seg.dcm,0", header=header))
    assert "line 2, column 'series_dir': give series_dir or study_dir + series_uid" in found[0]
    assert any(p.startswith("line 3, column 'series_uid': study_dir and series_uid go")
               for p in found)
    assert any(p.startswith("line 3, column 'seg_file': is empty") for p in found)
    assert any(p.startswith("line 4, column 'segment_number': '0' is not an integer")
               for p in found)


def test_empty_and_unreadable_files(tmp_path: Path) -> None:
    assert problems(write(tmp_path)) == ["header, column '': the manifest has no rows"]
    assert "cannot read the file" in problems(tmp_path / "absent.csv")[0]
