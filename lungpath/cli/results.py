"""Reading lungpath's result objects."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from lungpath.cli import fail, main
from model.pathology import INVASIVENESS, PATTERNS

if TYPE_CHECKING:
    from pipeline.results import ParsedNodule, ParsedReport


@main.command(name="show-sr")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
def show_sr(file: Path) -> None:
    """Print the findings of a lungpath result SR as a table per nodule.

    A file that is not DICOM, or not a lungpath result SR, ends with a message and exit
    code 1.
    """
    # imported here: highdicom and matplotlib would slow every other command's start
    import pydicom
    from pydicom.errors import InvalidDicomError

    from pipeline.results import ReportError, read_findings

    try:
        dataset = pydicom.dcmread(file)
    except (InvalidDicomError, OSError, ValueError) as e:
        fail(f"{file}: not a readable DICOM file ({e})")
    try:
        report = read_findings(dataset)
    except ReportError as e:
        fail(f"{file}: not a lungpath result SR: {e}")
    click.echo(format_report(report))


def format_report(report: ParsedReport) -> str:
    """The header lines, then one two-column table per nodule."""
    lines = [
        f"lungpath result SR (contract {report.contract_version}): {report.status.value}",
        f"  study        {report.study_instance_uid}",
        f"  document     {report.sop_instance_uid}",
    ]
    if report.reason:
        lines.append(f"  reason       {report.reason}")
    lines.append(f"  series       {report.series_note}")
    lines.append(f"  intended use {report.use_statement}")
    for uid in report.predecessor_uids:
        lines.append(f"  replaces     {uid}")
    if not report.nodules:
        lines.append("  no nodules")
    for nodule in report.nodules:
        lines += ["", *_nodule_table(nodule)]
    return "\n".join(lines)


def _nodule_table(n: ParsedNodule) -> list[str]:
    probabilities = " / ".join(f"{v:.2f}" for v in n.probabilities_percent)
    proportions = ", ".join(f"{p.value.replace('_', ' ')} {v}"
                            for p, v in zip(PATTERNS, n.proportions, strict=True))
    rows = [
        ("finding site", f"{n.laterality.value} lung"),
        ("long / short axis", f"{n.long_axis_mm:.2f} / {n.short_axis_mm:.2f} mm"),
        ("volume", f"{n.volume_mm3:.1f} mm3"),
        ("solid long axis", f"{n.solid_long_axis_mm:.2f} mm"),
        ("CTR", f"{n.ctr:.3f}"),
        ("mean attenuation", f"{n.mean_hu:.1f} HU"),
        (f"P({'/'.join(c.value for c in INVASIVENESS)})", f"{probabilities} %"),
        ("invasiveness", n.invasiveness.value),
        ("pattern proportions %", proportions),
        ("predominant pattern", n.predominant.value.replace("_", " ")),
        ("IASLC grade", n.grade.value),
        ("uncertainty", f"{n.uncertainty:.2f} %"),
        ("outline", f"{len(n.outline)} points on image {n.outline_image_uid}"),
        ("algorithm", f"{n.algorithm_name} {n.algorithm_version}"),
        ("checkpoint SHA-256", n.checkpoint_sha256),
        ("tracking UID", n.tracking_uid),
    ]
    width = max(len(name) for name, _ in rows)
    return [f"nodule-{n.number}", *(f"  {name:<{width}}  {value}" for name, value in rows)]
