"""The preview mosaic: one tile per nodule, classes forced, labels drawn from the class."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pytest
from click.testing import CliRunner

from lungpath.cli import main
from model.pathology import Invasiveness
from training.synthetic.preview import PREVIEW_FILE, pathology_of_class, render_preview


@pytest.mark.parametrize("invasiveness", list(Invasiveness))
def test_pathology_of_class_keeps_the_class(invasiveness: Invasiveness) -> None:
    drawn = {pathology_of_class(invasiveness, seed=3, index=i) for i in range(20)}
    assert {p.invasiveness for p in drawn} == {invasiveness}
    assert len(drawn) > 1 or invasiveness is Invasiveness.AIS


def test_preview_is_a_png_mosaic(tmp_path: Path) -> None:
    path = render_preview(tmp_path, per_class=2, seed=1, acquisition="fast", workers=1)
    assert path == tmp_path / PREVIEW_FILE
    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    assert width > 300 and height > 500  # three rows of two tiles
    assert pixels.std() > 0.1  # images, not a blank canvas


def test_cli_preview(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["synth", "preview", "--n", "1", "--out", str(tmp_path),
                                       "--acquisition", "fast", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / PREVIEW_FILE).stat().st_size > 10_000
