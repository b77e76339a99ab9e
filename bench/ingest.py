"""DICOM ingest: lungpath's node against Orthanc and dcmtk storescp, 300 x 512 x 512 CT.

    python -m bench.ingest [--instances 300] [--rounds 3] [--receivers 2]

The same series (Explicit VR Little Endian, made with pydicom) is sent by dcmtk ``storescu
+sd +r`` with ``TCP_NODELAY=1`` over loopback, in one association and in four concurrent
associations (the series split in four), to each receiver in turn, round after round
(interleaved, so that a slow moment of the shared machine hits every receiver alike):

- the lungpath node as in production (``lungpath serve``: fsync + rename + a committed row
  per instance), on SQLite and on PostgreSQL;
- Orthanc (the Debian package, its default fsync per file, ``TCP_NODELAY=1``) with its own
  configuration, storage and ports;
- dcmtk ``storescp -od`` without ``--fork`` (``TCP_NODELAY=1``), the transport ceiling.

Orthanc 1.10 and storescp cannot bind their DICOM port to one address, so each runs with its
senders in a private network namespace (``unshare -n``, loopback only; ../shared MEASURED.md).
Every receiver starts fresh (empty storage) for each measurement and is timed from the first
storescu start to the last storescu exit. Targets: one association >= 0.8x Orthanc's
instances/s, four associations >= 1.0x Orthanc's aggregate, for each back end; the ratio to
storescp is reported. Writes bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from sqlalchemy.engine import make_url

from bench.common import BenchResult, write_result
from db.migrations import upgrade

POSTGRES_URL = os.environ.get(
    "LUNGPATH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REPO = Path(__file__).resolve().parent.parent
LUNGPATH = Path(sys.executable).with_name("lungpath")
SENDER_AE = "BENCH"
TARGET_ONE = 0.8
TARGET_FOUR = 1.0
START_TIMEOUT_S = 60.0


# -- the series ----------------------------------------------------------------------------

def make_series(folder: Path, count: int) -> list[Path]:
    """``count`` 512 x 512 CT slices of one series (pydicom, Explicit VR Little Endian)."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    rng = np.random.default_rng(7)
    base = rng.integers(-1000, 400, size=(512, 512), dtype=np.int16)
    paths = []
    for index in range(count):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientName, ds.PatientID, ds.Modality = "Bench^Ingest", "BENCH-1", "CT"
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(index)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 1.0
        ds.Rows = ds.Columns = 512
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = np.roll(base, index, axis=0).tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def split(paths: list[Path], parts: int, root: Path) -> list[Path]:
    """Hard-link the files into ``parts`` folders of (nearly) equal size."""
    folders = []
    for part in range(parts):
        folder = root / f"part{part}"
        folder.mkdir(parents=True)
        for path in paths[part::parts]:
            os.link(path, folder / path.name)
        folders.append(folder)
    return folders


# -- one measurement (runs inside the network namespace for Orthanc and storescp) ----------

def _wait_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the receiver exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {START_TIMEOUT_S} s")


def measure(server: list[str], env: dict[str, str], port: int, called_ae: str,
            folders: list[Path], log: Path) -> float:
    """Start the receiver, send every folder in its own association at once; seconds."""
    with log.open("ab") as out:
        process = subprocess.Popen(server, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_port(port, process)
            sender_env = {**os.environ, "TCP_NODELAY": "1"}
            start = time.perf_counter()
            senders = [
                subprocess.Popen(["storescu", "+sd", "+r", "-aet", SENDER_AE, "-aec", called_ae,
                                  "127.0.0.1", str(port), str(folder)],
                                 env=sender_env, stdout=out, stderr=subprocess.STDOUT)
                for folder in folders
            ]
            codes = [sender.wait() for sender in senders]
            elapsed = time.perf_counter() - start
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if any(codes):
        raise RuntimeError(f"storescu failed ({codes}); see {log}")
    return elapsed


def _inner(args: argparse.Namespace) -> None:
    """``--inner``: bring loopback up in this namespace, measure, print the seconds."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    spec = json.loads(args.inner)
    seconds = measure(spec["server"], {**os.environ, **spec["env"]}, spec["port"],
                      spec["called_ae"], [Path(f) for f in spec["folders"]], Path(spec["log"]))
    print(json.dumps({"seconds": seconds}))


def measure_isolated(spec: dict[str, Any]) -> float:
    """``measure`` in a private network namespace (loopback only)."""
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "bench.ingest", "--inner", json.dumps(spec)],
        cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"isolated run failed: {done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


# -- receivers -----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_run(work: Path, database_url: str, folders: list[Path], receivers: int) -> float:
    """The lungpath node (``lungpath serve``), fresh store, database emptied beforehand."""
    var = work / "node"
    shutil.rmtree(var, ignore_errors=True)
    var.mkdir()
    port = _free_port()
    env = {**os.environ, "LUNGPATH_VAR_DIR": str(var), "LUNGPATH_DATABASE_URL": database_url,
           "LUNGPATH_PORT": str(port), "LUNGPATH_STABLE_SECONDS": "3600",
           "LUNGPATH_MIN_FREE_DISK_MB": "0", "LUNGPATH_LOG_LEVEL": "WARNING",
           "LUNGPATH_RECEIVERS": str(receivers), "LUNGPATH_MAX_ASSOCIATIONS": "16",
           "LUNGPATH_EMBEDDED_WORKER": "false"}
    return measure([str(LUNGPATH), "serve"], env, port, "LUNGPATH", folders, work / "node.log")


def orthanc_run(work: Path, folders: list[Path]) -> float:
    """Orthanc with its own configuration, storage and ports; its defaults otherwise."""
    root = work / "orthanc"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    port = 4242
    config = {
        "Name": "bench", "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "index"), "DicomAet": "ORTHANC", "DicomPort": port,
        "HttpPort": 8042, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False, "StorageCompression": False, "Plugins": [],
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    return measure_isolated({
        "server": ["Orthanc", str(root / "orthanc.json")], "env": {"TCP_NODELAY": "1"},
        "port": port, "called_ae": "ORTHANC", "folders": [str(f) for f in folders],
        "log": str(work / "orthanc.log")})


def storescp_run(work: Path, folders: list[Path]) -> float:
    """dcmtk storescp writing every instance to one folder, one process (no --fork)."""
    out = work / "storescp"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    port = 11112
    return measure_isolated({
        "server": ["storescp", "-od", str(out), str(port)], "env": {"TCP_NODELAY": "1"},
        "port": port, "called_ae": "STORESCP", "folders": [str(f) for f in folders],
        "log": str(work / "storescp.log")})


class PostgresDatabase:
    """A throw-away PostgreSQL database for the node, emptied (re-created) before each run."""

    def __init__(self) -> None:
        self.name = f"lungpath_bench_{uuid.uuid4().hex[:8]}"
        self.admin = make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(
            hide_password=False)

    @property
    def url(self) -> str:
        return make_url(POSTGRES_URL).set(database=self.name).render_as_string(
            hide_password=False)

    def recreate(self) -> str:
        self.drop()
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.name}")  # type: ignore[arg-type]
        upgrade(self.url)
        return self.url

    def drop(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")  # type: ignore[arg-type]


def fresh_sqlite(work: Path) -> str:
    path = work / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


# -- the run -------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> BenchResult:
    work = Path(tempfile.mkdtemp(prefix="lungpath-bench-ingest-"))
    postgres = PostgresDatabase()
    args.load_before = os.getloadavg()[0]
    try:
        paths = make_series(work / "series", args.instances)
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        layouts = {1: [work / "series"], 4: split(paths, 4, work / "split")}
        receivers: dict[str, Any] = {
            "lungpath (SQLite)": lambda f: node_run(work, fresh_sqlite(work), f, args.receivers),
            "lungpath (PostgreSQL)": lambda f: node_run(work, postgres.recreate(), f,
                                                        args.receivers),
            "Orthanc": lambda f: orthanc_run(work, f),
            "storescp": lambda f: storescp_run(work, f),
        }
        rates: dict[tuple[str, int], list[float]] = {}
        for round_index in range(args.rounds):
            for associations, folders in layouts.items():
                for name, runner in receivers.items():
                    seconds = runner(folders)
                    rate = args.instances / seconds
                    rates.setdefault((name, associations), []).append(rate)
                    print(f"round {round_index + 1} {name:24s} x{associations}: "
                          f"{rate:7.1f} instances/s", flush=True)
        return report(args, rates, megabytes)
    finally:
        postgres.drop()
        shutil.rmtree(work, ignore_errors=True)


def report(args: argparse.Namespace, rates: dict[tuple[str, int], list[float]],
           megabytes: float) -> BenchResult:
    result = BenchResult(name="ingest", title="DICOM ingest (C-STORE, 300 x 512 x 512 CT)")
    median = {key: statistics.median(values) for key, values in rates.items()}
    rows = []
    for (name, associations), values in rates.items():
        rows.append({
            "receiver": name, "associations": associations,
            "instances/s (median)": round(median[name, associations], 1),
            "MB/s": round(median[name, associations] * megabytes / args.instances, 1),
            "runs": ", ".join(f"{v:.0f}" for v in values),
            "x Orthanc": round(median[name, associations] / median["Orthanc", associations], 2),
            "x storescp": round(median[name, associations] / median["storescp", associations],
                                2),
        })
    result.add_table(f"{args.instances} instances ({megabytes:.1f} MB), {args.rounds} "
                     "interleaved rounds, median", rows)
    for backend in ("SQLite", "PostgreSQL"):
        for associations, target in ((1, TARGET_ONE), (4, TARGET_FOUR)):
            ratio = median[f"lungpath ({backend})", associations] / median["Orthanc",
                                                                           associations]
            result.add_target(
                f"{backend}, {associations} association{'s' if associations > 1 else ''}",
                f">= {target:.1f}x Orthanc", f"{ratio:.2f}x", ratio >= target)
    result.notes += [
        "Sender: dcmtk storescu +sd +r with TCP_NODELAY=1; loopback only. Orthanc and storescp "
        "run with their senders in a private network namespace (unshare -n).",
        "lungpath: `lungpath serve` with fsync of each file, rename, fsync of its folder and "
        f"a committed row per instance before the response; {args.receivers} receiving "
        "process(es) sharing the port (SO_REUSEPORT).",
        "Orthanc 1.10.1 (Debian package): its defaults (fsync per file, SQLite index), "
        "TCP_NODELAY=1. storescp: -od, no --fork, TCP_NODELAY=1.",
        "Each measurement starts the receiver fresh and times the first storescu start to the "
        "last storescu exit.",
        f"Load average of the machine (shared with other work): {args.load_before:.1f} before "
        f"the run, {os.getloadavg()[0]:.1f} after; on a loaded machine each receiver's share "
        "of the CPU, not its latency, sets its rate, which favours the receiver that spends "
        "the least CPU per instance.",
    ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--receivers", type=int, default=2,
                        help="receiving processes of the node (setting: receivers)")
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        _inner(args)
        return
    write_result(run(args))
    print("wrote bench/results/ingest.json")


if __name__ == "__main__":
    main()
