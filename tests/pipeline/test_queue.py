"""The Celery app's configuration and sending tasks by name, without a worker."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import subprocess
import sys
from base64 import b64decode
from pathlib import Path

import pytest

from pipeline.queue import (
    ANALYZE_TASK,
    DELIVER_TASK,
    BrokerUnavailable,
    QueueConfig,
    create_app,
    declare_queues,
    send_analysis,
    send_delivery,
)
from tests.conftest import REPO_ROOT, free_port


def sqla_config(tmp_path: Path, **overrides: object) -> QueueConfig:
    values: dict[str, object] = {"broker_url": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
                                 "queue_prefix": "unit.", "polling_interval": 0.2}
    values.update(overrides)
    return QueueConfig(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(("overrides", "argument"), [
    ({"broker_url": "redis"}, "broker_url"),
    ({"queue_prefix": "a b"}, "queue_prefix"),
    ({"soft_time_limit": 10.0, "time_limit": 10.0}, "soft_time_limit"),
    ({"polling_interval": 0.0}, "polling_interval"),
    ({"connect_timeout": -1.0}, "connect_timeout"),
])
def test_bad_configuration_names_the_argument(tmp_path: Path, overrides: dict[str, object],
                                              argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        sqla_config(tmp_path, **overrides)


def test_app_settings_for_reliability(tmp_path: Path) -> None:
    config = sqla_config(tmp_path, soft_time_limit=50.0, time_limit=60.0)
    conf = create_app(config).conf
    assert {q.name for q in conf.task_queues} == {"unit.analysis", "unit.delivery"}
    assert conf.task_routes[ANALYZE_TASK] == {"queue": "unit.analysis"}
    assert conf.task_routes[DELIVER_TASK] == {"queue": "unit.delivery"}
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (50.0, 60.0)
    assert conf.task_ignore_result and not conf.result_backend
    assert conf.broker_polling_interval == 0.2
    # options of the SQLAlchemy transport go to create_engine: no polling_interval there
    assert conf.broker_transport_options == {"connect_args": {"timeout": 30.0}}


def test_redis_visibility_timeout_exceeds_the_hard_limit() -> None:
    config = QueueConfig("redis://127.0.0.1:6379/12", soft_time_limit=100.0, time_limit=120.0)
    options = create_app(config).conf.broker_transport_options
    assert options["visibility_timeout"] > config.time_limit


def _messages(broker: Path) -> list[tuple[str, dict[str, object]]]:
    with sqlite3.connect(broker) as db:
        rows = db.execute("SELECT q.name, m.payload FROM kombu_message m "
                          "JOIN kombu_queue q ON m.queue_id = q.id ORDER BY m.id").fetchall()
    return [(name, json.loads(payload)) for name, payload in rows]


def test_tasks_carry_ids_only_on_their_queues(tmp_path: Path) -> None:
    config = sqla_config(tmp_path)
    app = create_app(config)
    send_analysis(app, config, study_id=7, revision=2, task_id="a-1")
    send_delivery(app, config, result_id=5, task_id="d-1")
    (q1, analysis), (q2, delivery) = _messages(tmp_path / "broker.db")
    assert (q1, q2) == ("unit.analysis", "unit.delivery")
    for message, name, args, task_id in ((analysis, ANALYZE_TASK, [7, 2], "a-1"),
                                         (delivery, DELIVER_TASK, [5], "d-1")):
        headers = message["headers"]
        assert isinstance(headers, dict)
        assert (headers["task"], headers["id"]) == (name, task_id)
        body = json.loads(b64decode(str(message["body"])))
        assert body[0] == args and body[1] == {}


def test_unreachable_broker_raises_broker_unavailable() -> None:
    config = QueueConfig(f"redis://127.0.0.1:{free_port()}/12", connect_timeout=1.0)
    with pytest.raises(BrokerUnavailable, match=ANALYZE_TASK):
        send_analysis(create_app(config), config, study_id=1, revision=1, task_id="x")


def test_the_queue_module_never_loads_torch() -> None:
    code = ("import sys, pipeline.queue, pipeline.delivery, lungpath.node, lungpath.dispatch; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"


def _declare_together(config: QueueConfig, barrier: multiprocessing.synchronize.Barrier,
                      outcomes: multiprocessing.Queue[str]) -> None:
    app = create_app(config)
    barrier.wait()
    try:
        declare_queues(app, config)
        outcomes.put("ok")
    except Exception as e:  # the outcome is what the test checks
        outcomes.put(f"{type(e).__name__}: {e}")


def test_workers_starting_together_all_declare_the_server_less_queues(tmp_path: Path) -> None:
    """Without the retry, processes declaring a fresh broker at the same moment fail on
    "table kombu_queue already exists" or on the queue's unique name (seen in about one
    round in two)."""
    context = multiprocessing.get_context("spawn")
    for round_ in range(4):
        config = sqla_config(tmp_path / str(round_))
        (tmp_path / str(round_)).mkdir()
        barrier, outcomes = context.Barrier(6), context.Queue()
        processes = [context.Process(target=_declare_together, args=(config, barrier, outcomes))
                     for _ in range(6)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(120)
        assert [outcomes.get(timeout=10) for _ in processes] == ["ok"] * 6
        with sqlite3.connect(tmp_path / str(round_) / "broker.db") as db:
            names = sorted(r[0] for r in db.execute("SELECT name FROM kombu_queue"))
        assert names == sorted([config.analysis_queue, config.delivery_queue])
