"""The helpers the end-to-end benches measure with: resampled studies, the study timeline,
process trees from /proc and the report's summary of targets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from bench.report import render
from bench.stack import Timeline, cpu_seconds, memory_kib, process_tree
from bench.synthetic_studies import resampled
from db.models import Job


def write_series(folder: Path, count: int) -> None:
    """``count`` 4 x 4 images at z = 0, 2, 4, ... whose pixels all hold their index."""
    folder.mkdir()
    for index in range(count):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.StudyInstanceUID = ds.SeriesInstanceUID = "1.2.3"
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * index]
        ds.Rows = ds.Columns = 4
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = np.full((4, 4), index, dtype=np.uint16).tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(folder / f"{4 - index}.dcm", enforce_file_format=True)  # names reversed


def test_resampled_covers_the_same_extent_with_the_nearest_images(tmp_path: Path) -> None:
    write_series(tmp_path / "source", 5)  # z 0..8
    target = resampled(tmp_path / "source", 9, tmp_path / "out")
    images = [pydicom.dcmread(p) for p in sorted(target.glob("*.dcm"))]
    assert [float(ds.ImagePositionPatient[2]) for ds in images] == [float(z) for z in range(9)]
    assert [int(ds.pixel_array[0, 0]) for ds in images] == [0, 0, 1, 2, 2, 2, 3, 4, 4]
    assert len({ds.SOPInstanceUID for ds in images}) == 9
    assert len({ds.SeriesInstanceUID for ds in images}) == 1
    assert images[0].SeriesInstanceUID != "1.2.3"
    stamp = (target / "0000.dcm").stat().st_mtime_ns
    resampled(tmp_path / "source", 9, target)  # written once
    assert (target / "0000.dcm").stat().st_mtime_ns == stamp


def test_timeline_splits_the_study_into_hops_and_job_stages() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def at(seconds: float) -> datetime:
        return t0 + timedelta(seconds=seconds)

    job = Job(queued_at=at(2.5), started_at=at(3.0), ended_at=at(9.0),
              timings={"read": 1.0, "nodules": 2.0, "total": 5.5})
    seconds = Timeline(sent_at=at(0.0), last_instance_at=at(-0.1), complete_at=at(2.0),
                       job=job, sr_at=at(9.5)).seconds()
    assert seconds["stable-age wait"] == 2.1
    assert seconds["latency"] == 7.5
    assert seconds["store to SR"] == 9.5
    assert (seconds["dispatch"], seconds["queue wait"]) == (0.5, 0.5)
    assert (seconds["read"], seconds["nodules"], seconds["total"]) == (1.0, 2.0, 5.5)
    assert seconds["finish"] == 0.5
    assert seconds["delivery"] == 0.5


def test_process_tree_cpu_and_memory_come_from_proc() -> None:
    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nx = bytearray(64 << 20)\n"
                              "t = time.process_time()\n"
                              "while time.process_time() - t < 0.3: pass\n"
                              "time.sleep(30)"])
    try:
        deadline = time.monotonic() + 30
        while cpu_seconds([child.pid]) < 0.2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert child.pid in process_tree(os.getpid())
        assert cpu_seconds([child.pid]) >= 0.2
        rss, peak = memory_kib(child.pid)
        assert peak >= rss >= 64 * 1024
    finally:
        child.kill()
        child.wait()
    assert child.pid not in process_tree(os.getpid())
    assert memory_kib(child.pid) == (0, 0)


def test_report_lists_every_target_first_and_says_when_gpu_figures_are_missing() -> None:
    result = {"name": "latency", "title": "Latency", "commit": "abc", "date": "2026-01-01",
              "command": "python -m bench.latency", "tables": [], "notes": [],
              "machine": {"cpu": "x", "cores": 2, "memory_gib": 8, "os": "Linux"},
              "targets": [{"what": "p50", "target": "<= 8 s", "measured": "9.1 s",
                           "met": False}]}
    text = render([result])
    assert text.index("## Targets at a glance") < text.index("## Latency")
    assert "| Latency | p50 | <= 8 s | 9.1 s | **no** |" in text
    assert "`bench/gpu.sh` has not been run" in text
    assert "has not been run" not in render([{**result, "name": "gpu"}])
