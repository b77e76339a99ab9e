"""The bad-input corpus over real associations: every category gets its status, the node goes
on serving, and every instance it acknowledged is on disk and in the database.

Hand-made cases (fixed seeds, every category) and a bounded hypothesis search over the same
generators and over arbitrary UID text. The long run is ``bench/fuzz.py``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import _config
from sqlalchemy import Engine

from db.engine import create_engine_for
from scp_node.server import StorageSCP
from scp_node.uids import is_valid_uid
from tests.hardening.conftest import Reliability
from tests.hardening.corpus import CATEGORIES, Case, make_case, valid
from tests.hardening.sending import Sent, lost_instances, send_cases, unexpected
from tests.scp_node.support import (
    CT,
    associate,
    ct_slice,
    encode_data_set,
    scp_config,
    stored_files,
)

SEEDS_PER_CATEGORY = 3


class Node:
    """A Storage SCP of this module, its engine and store."""

    def __init__(self, scp: StorageSCP, engine: Engine, store: Path, work: Path) -> None:
        self.scp, self.engine, self.store, self.work = scp, engine, store, work

    def send(self, cases: list[Case]) -> list[Sent]:
        return send_cases(self.scp.port, cases, self.work)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Node]:
    folder = tmp_path_factory.mktemp("corpus-node")
    database = folder / "lungpath.db"
    database.write_bytes(sqlite_template.read_bytes())
    url = f"sqlite:///{database}"
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    engine = create_engine_for(url)
    scp = StorageSCP(scp_config(url, folder / "store"), engine)
    scp.start()
    try:
        yield Node(scp, engine, folder / "store", folder / "work")
    finally:
        scp.stop()
        engine.dispose()
        _config.STORE_SEND_CHUNKED_DATASET = previous


def _still_serving(node: Node) -> bool:
    assoc = associate(node.scp.port, [(CT, [ExplicitVRLittleEndian])])
    status = assoc.send_c_store(ct_slice("1.2.826.0.13.1", "1.2.826.0.13.1.1", 0)).Status
    assoc.release()
    return int(status) == 0x0000


def test_every_category_gets_its_status(node: Node, reliability: Reliability) -> None:
    cases = [make_case(category, random.Random(seed))
             for category in CATEGORIES for seed in range(SEEDS_PER_CATEGORY)]
    sent = node.send(cases)
    assert unexpected(sent) == []
    assert lost_instances(node.engine, node.store, sent) == []
    assert _still_serving(node)
    assert not [p for p in stored_files(node.store) if not p.is_relative_to(node.store)]
    counts = Counter(s.case.category for s in sent)
    for category in CATEGORIES:
        statuses = sorted({f"0x{s.status:04X}" for s in sent
                           if s.case.category == category and s.status is not None})
        reliability.record(f"C-STORE {category}", group="bad input at C-STORE",
                           inputs=counts[category], outcome="status " + ", ".join(statuses))


def test_path_characters_never_leave_the_store(node: Node) -> None:
    cases = [make_case("path_uid", random.Random(seed)) for seed in range(40)]
    sent = node.send(cases)
    assert {s.status for s in sent} == {0xA900}
    for path in node.store.rglob("*"):
        assert path.resolve().is_relative_to(node.store.resolve())
    assert not (node.store.parent / "etc").exists()


def test_fuzz_corpus_categories(node: Node, reliability: Reliability) -> None:
    sent: list[Sent] = []

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(category=st.sampled_from(CATEGORIES), rng=st.randoms(use_true_random=False))
    def one(category: str, rng: random.Random) -> None:
        result = node.send([make_case(category, rng)])
        assert unexpected(result) == []
        sent.extend(result)

    one()
    assert lost_instances(node.engine, node.store, sent) == []
    assert _still_serving(node)
    reliability.record("C-STORE fuzz (hypothesis, all categories)", group="fuzzing",
                       inputs=len(sent), outcome="expected status for every input",
                       counts=dict(Counter(s.case.category for s in sent)))


def test_fuzz_study_uid_text(node: Node, reliability: Reliability) -> None:
    sent: list[Sent] = []

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(uid=st.one_of(st.text(st.characters(max_codepoint=255), max_size=80),
                         st.from_regex(r"[0-9.]{1,70}", fullmatch=True)))
    def one(uid: str) -> None:
        case = valid(random.Random(len(sent)))
        ds = ct_slice(uid, "1.2.826.0.13.2", 0, size=4, sop_instance_uid=case.sop_instance_uid)
        body = encode_data_set(ds)
        stored = is_valid_uid(str(ds.StudyInstanceUID).rstrip("\x00 "))  # as pydicom wrote it
        fuzzed = Case("uid_text", body, case.sop_instance_uid,
                      frozenset({0x0000} if stored else {0xA900, 0xC000}))
        result = node.send([fuzzed])
        assert unexpected(result) == [], uid
        sent.extend(result)

    one()
    assert lost_instances(node.engine, node.store, sent) == []
    reliability.record("Study Instance UID as arbitrary text (hypothesis)", group="fuzzing",
                       inputs=len(sent), outcome="0x0000 exactly when the UID is valid, "
                       "else 0xA900")
