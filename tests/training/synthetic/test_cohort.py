"""Cohorts: the same seed gives byte-identical files whatever the number of processes."""

from __future__ import annotations

import csv
from pathlib import Path

from click.testing import CliRunner

from lungpath.cli import main
from training.synthetic.cohort import generate_boxes, generate_studies


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_studies_are_byte_identical_with_one_or_two_processes(tmp_path: Path) -> None:
    generate_studies(tmp_path / "one", 2, seed=9, acquisition="fast", workers=1)
    generate_studies(tmp_path / "two", 2, seed=9, acquisition="fast", workers=2)
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert len(one) > 100 and one == two


def test_boxes_are_byte_identical_with_one_or_two_processes(tmp_path: Path) -> None:
    generate_boxes(tmp_path / "one", 4, seed=9, acquisition="fast", workers=1, labelled=False)
    generate_boxes(tmp_path / "two", 4, seed=9, acquisition="fast", workers=2, labelled=False)
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert set(one) == {*(f"unlabelled_{i:06d}.mha" for i in range(4)), "boxes.csv",
                        "withheld.csv"}
    assert one == two


def test_another_seed_gives_other_boxes(tmp_path: Path) -> None:
    generate_boxes(tmp_path / "a", 1, seed=1, acquisition="fast", workers=1)
    generate_boxes(tmp_path / "b", 1, seed=2, acquisition="fast", workers=1)
    assert _files(tmp_path / "a") != _files(tmp_path / "b")


def test_cli_boxes_and_studies(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["synth", "boxes", "--n", "3", "--seed", "2", "--out",
                                  str(tmp_path / "boxes"), "--acquisition", "fast",
                                  "--workers", "1"])
    assert result.exit_code == 0, result.output
    with (tmp_path / "boxes" / "boxes.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == [f"box_{i:06d}.mha" for i in range(3)]
    assert all(r["invasiveness"] in {"AIS", "MIA", "IAC"} for r in rows)
    result = runner.invoke(main, ["synth", "studies", "--n", "1", "--out",
                                  str(tmp_path / "studies"), "--acquisition", "fast",
                                  "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "studies" / "study_00000" / "truth.json").exists()
    assert (tmp_path / "studies" / "nodules.csv").exists()


def test_cli_refuses_a_bad_acquisition(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["synth", "boxes", "--out", str(tmp_path),
                                       "--acquisition", "slow"])
    assert result.exit_code == 2 and "slow" in result.output


def test_cli_reports_an_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(main, ["synth", "studies", "--n", "1", "--acquisition", "fast",
                                       "--workers", "1", "--out", str(blocker / "studies")])
    assert result.exit_code == 1
    assert "cannot write the synthetic data" in result.output
    assert "Traceback" not in result.output


def test_cli_refuses_a_negative_seed(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["synth", "boxes", "--out", str(tmp_path), "--seed", "-1"])
    assert result.exit_code == 2 and "--seed" in result.output
