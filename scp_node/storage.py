"""Durable storage of received instances: ``<store>/<StudyUID>/<SeriesUID>/<SOPUID>.dcm``.

A file is written to ``<store>/.incoming/`` first, fsynced, renamed into place and its folder
fsynced, so after ``write`` returns the file survives a crash or a power cut, and a reader
never sees half a file. Temporary files that a crash left behind are removed by
``remove_stale_temporaries`` when the node starts. The bytes written are the File Meta
Information the node builds plus the data set exactly as it was received: no decoding, no
re-encoding.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from scp_node.uids import is_valid_uid

INCOMING = ".incoming"
TEMP_SUFFIX = ".tmp"
#: Folders the store creates: no access for other users (files are 0600 from ``mkstemp``);
#: the study and series folder names are UIDs, which other users need not list.
FOLDER_MODE = 0o750

#: The node's implementation class UID and version name, written into every stored file's
#: File Meta Information (PS3.7 Annex D.3.3.2).
IMPLEMENTATION_CLASS_UID = "2.25.208844186398472119376405526391183637117"
IMPLEMENTATION_VERSION_NAME = "LUNGPATH_0_1"


@dataclass(frozen=True)
class StoredFile:
    """Where an instance was written, its size and SHA-256 (of the whole file)."""

    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class InstanceKey:
    """The UIDs that place an instance in the store; validated here, before any path."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str

    def __post_init__(self) -> None:
        for name in ("study_uid", "series_uid", "sop_instance_uid"):
            value = getattr(self, name)
            if not is_valid_uid(value):
                raise ValueError(f"{name} {value!r} is not a valid DICOM UID")


class InstanceStore:
    """The folder of received instances and how to write into it durably."""

    def __init__(self, root: Path, *, min_free_bytes: int = 0) -> None:
        if min_free_bytes < 0:
            raise ValueError(f"min_free_bytes must be >= 0, got {min_free_bytes}")
        self.root = Path(root)
        self.min_free_bytes = min_free_bytes
        self.incoming = self.root / INCOMING
        self.root.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        self.incoming.mkdir(mode=FOLDER_MODE, exist_ok=True)
        self._known_dirs: set[Path] = set()
        self._dirs_lock = threading.Lock()

    def path_of(self, key: InstanceKey) -> Path:
        """The final path of an instance."""
        return self.root / key.study_uid / key.series_uid / f"{key.sop_instance_uid}.dcm"

    def free_bytes(self) -> int:
        """Bytes available to the node on the store's file system."""
        stat = os.statvfs(self.root)
        return stat.f_bavail * stat.f_frsize

    def has_room(self, size: int) -> bool:
        """Whether ``size`` more bytes leave at least ``min_free_bytes`` free."""
        return self.free_bytes() - size >= self.min_free_bytes

    def describe(self, key: InstanceKey, file_meta: bytes, data_set: bytes) -> StoredFile:
        """Where ``write`` puts this file, its size and SHA-256, without touching the disk."""
        digest = hashlib.sha256(file_meta)
        digest.update(data_set)
        return StoredFile(self.path_of(key), len(file_meta) + len(data_set), digest.hexdigest())

    def write(self, key: InstanceKey, file_meta: bytes, data_set: bytes) -> None:
        """Write the file ``file_meta + data_set`` durably at ``path_of(key)``.

        An existing file of the same SOP Instance UID is replaced atomically. Raises
        ``OSError`` when the disk refuses; no partial file is left at the final path.
        """
        target = self.path_of(key)
        fd, temp_name = tempfile.mkstemp(dir=self.incoming, suffix=TEMP_SUFFIX)
        try:
            _write_all(fd, file_meta, data_set)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(temp_name)
            raise
        os.close(fd)
        try:
            self._ensure_dir(target.parent)
            os.rename(temp_name, target)
        except BaseException:
            os.unlink(temp_name)
            raise
        _fsync_dir(target.parent)

    def discard_replaced(self, previous: str | None, current: Path) -> None:
        """Remove the file a replaced instance had, when it lay elsewhere in the store.

        A replacement that moved the instance to another study or series leaves the old
        file behind; the database no longer points at it.
        """
        if previous is None:
            return
        old = Path(previous)
        if old != current and old.is_relative_to(self.root) and old.suffix == ".dcm":
            old.unlink(missing_ok=True)

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files a crashed writer left behind; return how many.

        Call only while no receiver writes into this store (at node start).
        """
        removed = 0
        for path in self.incoming.glob(f"*{TEMP_SUFFIX}"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def _ensure_dir(self, folder: Path) -> None:
        """Create the series folder (and study folder) durably the first time it is used."""
        if folder in self._known_dirs:
            return
        with self._dirs_lock:
            for path in (folder.parent, folder):
                if not path.is_dir():
                    path.mkdir(mode=FOLDER_MODE, exist_ok=True)
                    _fsync_dir(path.parent)
            self._known_dirs.add(folder)


def _write_all(fd: int, *parts: bytes) -> None:
    views = [memoryview(p) for p in parts if p]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_meta(*, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str,
              source_ae_title: str) -> bytes:
    """The preamble, ``DICM`` prefix and File Meta Information (PS3.10 section 7.1).

    Encoded directly (explicit VR little endian) rather than through pydicom: it runs once
    per received instance on the request path.
    """
    elements = b"".join((
        _element(0x0001, b"OB", b"\x00\x01"),
        _element(0x0002, b"UI", _ui(sop_class_uid)),
        _element(0x0003, b"UI", _ui(sop_instance_uid)),
        _element(0x0010, b"UI", _ui(transfer_syntax_uid)),
        _element(0x0012, b"UI", _ui(IMPLEMENTATION_CLASS_UID)),
        _element(0x0013, b"SH", _padded(IMPLEMENTATION_VERSION_NAME)),
        _element(0x0016, b"AE", _padded(source_ae_title.strip())),
    ))
    group_length = _element(0x0000, b"UL", struct.pack("<L", len(elements)))
    return b"\x00" * 128 + b"DICM" + group_length + elements


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2sHL", 0x0002, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _ui(uid: str) -> bytes:
    value = uid.encode("ascii")
    return value + b"\x00" if len(value) % 2 else value


def _padded(text: str) -> bytes:
    value = text.encode("ascii")
    return value + b" " if len(value) % 2 else value
