"""The manifest CSV of a real-data cohort: one row per nodule (format in docs/training.md).

Every problem is collected, each naming the line, the column and why, and the whole file is
refused if any row is bad: nothing is silently dropped, so the cohort a model was trained on is
exactly the file the user wrote.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from model.pathology import PATTERNS, Invasiveness

SOURCE_COLUMNS = ("series_dir", "study_dir", "series_uid")
CENTRE_COLUMNS = ("centre_x_mm", "centre_y_mm", "centre_z_mm")
SEG_COLUMNS = ("seg_file", "segment_number")
PATTERN_COLUMNS = tuple(p.value for p in PATTERNS)
COLUMNS = (
    "patient_id", *SOURCE_COLUMNS, *CENTRE_COLUMNS, *SEG_COLUMNS, "invasiveness",
    *PATTERN_COLUMNS, "fold", "nodule_id",
)
REQUIRED_COLUMNS = ("patient_id",)
#: Proportions are percentages; a row's seven must sum to 100 within this tolerance.
SUM_TOLERANCE = 0.5


@dataclass(frozen=True)
class Problem:
    """One reason a manifest is refused."""

    line: int
    column: str
    why: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "header"
        return f"{where}, column {self.column!r}: {self.why}"


class ManifestError(ValueError):
    """The manifest has bad rows; ``problems`` lists them all, ``str`` one per line."""

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s):\n{lines}")


@dataclass(frozen=True)
class ManifestRow:
    """One nodule, with paths resolved against the manifest's folder.

    ``series_dir`` is the folder of the CT series, or of the study when ``series_uid`` picks
    the series in it. The nodule's place is ``centre_mm`` (patient coordinates) or a SEG file
    and segment number. ``proportions`` are fractions (0-1) in the order of ``PATTERNS``.
    ``None`` labels mean unlabelled for that task.
    """

    line: int
    nodule_id: str
    patient_id: str
    series_dir: Path
    series_uid: str | None
    centre_mm: tuple[float, float, float] | None
    seg_file: Path | None
    segment_number: int | None
    invasiveness: Invasiveness | None
    proportions: tuple[float, ...] | None
    fold: int | None

    @property
    def labelled(self) -> bool:
        """Whether any task has a label (an unlabelled row feeds distillation only)."""
        return self.invasiveness is not None or self.proportions is not None


def read_manifest(path: Path) -> list[ManifestRow]:
    """Read and validate ``path``; raise ``ManifestError`` listing every problem."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            records = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ManifestError(path, [Problem(0, "", f"cannot read the file: {e}")]) from None
    problems = _header_problems(header)
    if problems:
        raise ManifestError(path, problems)
    rows: list[ManifestRow] = []
    for offset, record in enumerate(records):
        row = _parse_row(offset + 2, record, path.parent, problems)
        if row is not None:
            rows.append(row)
    problems.extend(_duplicate_problems(rows))
    if not rows and not problems:
        problems.append(Problem(0, "", "the manifest has no rows"))
    if problems:
        raise ManifestError(path, problems)
    return rows


def _header_problems(header: list[str]) -> list[Problem]:
    problems = [Problem(0, c, "required column is missing") for c in REQUIRED_COLUMNS
                if c not in header]
    problems += [Problem(0, c, f"unknown column (known: {', '.join(COLUMNS)})")
                 for c in header if c not in COLUMNS]
    problems += [Problem(0, c, "column appears twice") for c in sorted(set(header))
                 if header.count(c) > 1]
    if not any(c in header for c in ("series_dir", "study_dir")):
        problems.append(Problem(0, "series_dir", "need series_dir or study_dir + series_uid"))
    if not any(c in header for c in ("centre_x_mm", "seg_file")):
        problems.append(Problem(0, "centre_x_mm", "need centre_*_mm or seg_file + segment_number"))
    return problems


class _Row:
    """The cells of one record, collecting problems as they are read."""

    def __init__(self, line: int, record: dict[str, str | None], problems: list[Problem]):
        self.line = line
        self.record = record
        self.problems = problems
        self.count = len(problems)

    def text(self, column: str) -> str:
        value = self.record.get(column)
        return value.strip() if isinstance(value, str) else ""

    def bad(self, column: str, why: str) -> None:
        self.problems.append(Problem(self.line, column, why))

    @property
    def ok(self) -> bool:
        return len(self.problems) == self.count

    def number(self, column: str) -> float | None:
        text = self.text(column)
        try:
            value = float(text)
        except ValueError:
            self.bad(column, f"{text!r} is not a number")
            return None
        if not math.isfinite(value):
            self.bad(column, f"{text!r} is not a finite number")
            return None
        return value

    def integer(self, column: str, minimum: int) -> int | None:
        text = self.text(column)
        if not text.isdigit() or int(text) < minimum:
            self.bad(column, f"{text!r} is not an integer >= {minimum}")
            return None
        return int(text)


def _parse_row(
    line: int, record: dict[str, str | None], base: Path, problems: list[Problem]
) -> ManifestRow | None:
    row = _Row(line, record, problems)
    if None in record:
        row.bad("", "more cells than header columns")
    patient = row.text("patient_id")
    if not patient:
        row.bad("patient_id", "is empty")
    series_dir, series_uid = _source(row, base)
    centre, seg_file, segment = _place(row, base)
    invasiveness = _invasiveness(row)
    proportions = _proportions(row)
    fold = row.integer("fold", 0) if row.text("fold") else None
    if not row.ok or series_dir is None:
        return None
    return ManifestRow(
        line=line, nodule_id=row.text("nodule_id") or f"line{line}", patient_id=patient,
        series_dir=series_dir, series_uid=series_uid, centre_mm=centre, seg_file=seg_file,
        segment_number=segment, invasiveness=invasiveness, proportions=proportions, fold=fold,
    )


def _existing(row: _Row, column: str, base: Path, want_dir: bool) -> Path | None:
    path = base / row.text(column)
    exists = path.is_dir() if want_dir else path.is_file()
    if not exists:
        row.bad(column, f"{'folder' if want_dir else 'file'} {str(path)!r} does not exist")
        return None
    return path


def _source(row: _Row, base: Path) -> tuple[Path | None, str | None]:
    series, study, uid = (row.text(c) for c in SOURCE_COLUMNS)
    if series and (study or uid):
        row.bad("series_dir", "give series_dir or study_dir + series_uid, not both")
    elif series:
        return _existing(row, "series_dir", base, want_dir=True), None
    elif study and uid:
        return _existing(row, "study_dir", base, want_dir=True), uid
    elif study or uid:
        row.bad("series_uid" if study else "study_dir", "study_dir and series_uid go together")
    else:
        row.bad("series_dir", "no image source: give series_dir or study_dir + series_uid")
    return None, None


def _place(
    row: _Row, base: Path
) -> tuple[tuple[float, float, float] | None, Path | None, int | None]:
    given = [c for c in CENTRE_COLUMNS if row.text(c)]
    seg = row.text("seg_file") or row.text("segment_number")
    if given and seg:
        row.bad("seg_file", "give centre_*_mm or seg_file + segment_number, not both")
    elif given:
        if len(given) < 3:
            missing = next(c for c in CENTRE_COLUMNS if c not in given)
            row.bad(missing, "is empty while other centre coordinates are given")
            return None, None, None
        x, y, z = (row.number(c) for c in CENTRE_COLUMNS)
        if x is not None and y is not None and z is not None:
            return (x, y, z), None, None
    elif seg:
        seg_file = None
        if row.text("seg_file"):
            seg_file = _existing(row, "seg_file", base, want_dir=False)
        else:
            row.bad("seg_file", "is empty while segment_number is given")
        return None, seg_file, row.integer("segment_number", 1)
    else:
        row.bad("centre_x_mm", "no nodule position: give centre_*_mm or seg_file")
    return None, None, None


def _invasiveness(row: _Row) -> Invasiveness | None:
    text = row.text("invasiveness")
    if not text:
        return None
    try:
        return Invasiveness(text.upper())
    except ValueError:
        row.bad("invasiveness", f"{text!r} is not AIS, MIA, IAC or empty")
        return None


def _proportions(row: _Row) -> tuple[float, ...] | None:
    given = [c for c in PATTERN_COLUMNS if row.text(c)]
    if not given:
        return None
    if len(given) < len(PATTERN_COLUMNS):
        missing = [c for c in PATTERN_COLUMNS if c not in given]
        row.bad(missing[0], "is empty while other proportions are given (give all seven "
                "percentages, 0 for absent patterns, or none)")
        return None
    values = [row.number(c) for c in PATTERN_COLUMNS]
    for column, value in zip(PATTERN_COLUMNS, values, strict=True):
        if value is not None and not 0 <= value <= 100:
            row.bad(column, f"{value:g} is not a percentage in [0, 100]")
    if not row.ok:
        return None
    total = sum(v for v in values if v is not None)
    if abs(total - 100) > SUM_TOLERANCE:
        row.bad("lepidic", f"the seven proportions sum to {total:g}, not 100")
        return None
    return tuple(float(v) / total for v in values if v is not None)


def _duplicate_problems(rows: Iterable[ManifestRow]) -> list[Problem]:
    seen: dict[tuple[object, ...], int] = {}
    problems = []
    for row in rows:
        key = (row.series_dir.resolve(), row.series_uid, row.centre_mm, row.seg_file,
               row.segment_number)
        if key in seen:
            problems.append(Problem(row.line, "series_dir",
                                    f"same series and nodule position as line {seen[key]}"))
        seen.setdefault(key, row.line)
        ids = ("id", row.nodule_id)
        if ids in seen and not row.nodule_id.startswith("line"):
            problems.append(Problem(row.line, "nodule_id", f"repeats line {seen[ids]}"))
        seen.setdefault(ids, row.line)
    return problems
