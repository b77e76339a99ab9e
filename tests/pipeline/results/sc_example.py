"""Write the documentation's summary-image examples (docs/images/sc-example*.png) from the
synthetic test series: ``python -m tests.pipeline.results.sc_example``."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from pipeline.results import AnalysisStatus, build_sc
from tests.conftest import REPO_ROOT
from tests.pipeline.results.synthetic import SPHERES, ct_series, report

NODULE_EXAMPLE = REPO_ROOT / "docs" / "images" / "sc-example.png"
STATUS_EXAMPLE = REPO_ROOT / "docs" / "images" / "sc-example-not-analyzable.png"


def write_examples(nodule_path: Path = NODULE_EXAMPLE,
                   status_path: Path = STATUS_EXAMPLE) -> None:
    """nodule-1 of a three-nodule analysis, and a NOT_ANALYZABLE status image."""
    series = ct_series(list(SPHERES), study_uid="1.2.826.0.1.3680043.10.543.100")
    Image.fromarray(build_sc(report(series, 3))[0].pixel_array).save(nodule_path)
    status = report(series, 0, AnalysisStatus.NOT_ANALYZABLE,
                    reason="slice thickness 5.0 mm exceeds the 2.5 mm limit")
    Image.fromarray(build_sc(status)[0].pixel_array).save(status_path)


if __name__ == "__main__":
    write_examples()
