"""Prometheus metrics read from the audit database at scrape time.

The database is the source of truth for studies, jobs and deliveries (DESIGN.md), shared by
the node and every worker; reading the metrics from it means every process reports the same
figures and nothing is lost when a process restarts. A scrape costs a handful of aggregate
queries on indexed columns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from statistics import quantiles
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from db.models import Association, Delivery, Instance, Job, Study, StudyState

logger = logging.getLogger(__name__)

#: Stage timings are summarised over this many most recent finished jobs.
RECENT_JOBS = 200


class DatabaseCollector(Collector):
    """Associations, instances, studies per state, stage timings and delivery failures."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Any]:
        try:
            with self._engine.connect() as connection:
                states = dict(connection.execute(
                    select(Study.state, func.count()).group_by(Study.state)).all())
                associations = connection.scalar(select(func.count()).select_from(Association))
                refused = connection.scalar(select(func.coalesce(func.sum(Association.refused), 0)))
                instances = dict(connection.execute(
                    select(Instance.own_output, func.count()).group_by(Instance.own_output)).all())
                attempts, delivered, waiting = connection.execute(select(
                    func.coalesce(func.sum(Delivery.attempts), 0),
                    func.count(Delivery.delivered_at),
                    func.count().filter(Delivery.delivered_at.is_(None), Delivery.attempts > 0),
                )).one()
                timings = connection.scalars(
                    select(Job.timings).where(Job.ended_at.is_not(None), Job.timings.is_not(None))
                    .order_by(Job.ended_at.desc()).limit(RECENT_JOBS)).all()
        except Exception:
            logger.exception("metrics: the database could not be read")
            return
        studies = GaugeMetricFamily("lungpath_studies", "Studies by state", labels=["state"])
        for state in StudyState:
            studies.add_metric([state.value], states.get(state.value, 0))
        yield studies
        yield CounterMetricFamily("lungpath_associations", "DICOM associations accepted",
                                  value=associations or 0)
        yield CounterMetricFamily("lungpath_instances_refused",
                                  "Instances refused with a failure status", value=refused or 0)
        received = CounterMetricFamily("lungpath_instances", "Instances stored",
                                       labels=["own_output"])
        for own in (False, True):
            received.add_metric([str(own).lower()], instances.get(own, 0))
        yield received
        yield CounterMetricFamily("lungpath_delivery_failures",
                                  "Delivery attempts that did not deliver",
                                  value=max(0, int(attempts) - int(delivered)))
        yield GaugeMetricFamily("lungpath_deliveries_waiting",
                                "Deliveries that failed and wait for a retry", value=waiting)
        yield _stage_timings(timings)


def _stage_timings(timings: Sequence[dict[str, Any]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "lungpath_stage_seconds",
        f"Median and 95th percentile of each analysis stage over the last {RECENT_JOBS} jobs",
        labels=["stage", "quantile"])
    stages: dict[str, list[float]] = {}
    for timing in timings:
        for stage, seconds in timing.items():
            if isinstance(seconds, int | float):
                stages.setdefault(stage, []).append(float(seconds))
    for stage, values in sorted(stages.items()):
        if len(values) == 1:
            p50 = p95 = values[0]
        else:
            cuts = quantiles(values, n=20, method="inclusive")
            p50, p95 = cuts[9], cuts[18]
        family.add_metric([stage, "0.5"], p50)
        family.add_metric([stage, "0.95"], p95)
    return family


def database_registry(engine: Engine) -> CollectorRegistry:
    """A registry holding the database collector (and nothing process-global)."""
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(engine))
    return registry
