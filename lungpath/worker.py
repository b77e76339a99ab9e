"""The worker process (``lungpath worker``): the Celery worker composed from Settings.

Imports the task bodies and so torch: the node imports this module only inside the child
process it spawns in embedded mode (``lungpath.dispatch.start_embedded_worker``).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl

from db.engine import create_engine_for
from lungpath import __version__
from lungpath.dispatch import WorkerError, checkpoint_path, processing_deadline_s, queue_config
from lungpath.health import start_health_server
from lungpath.settings import Settings
from model.checkpoint import CheckpointError, load_checkpoint
from pipeline.analysis import AnalysisConfig
from pipeline.delivery import DeliveryConfig, Destination
from pipeline.queue import create_app, declare_queues
from pipeline.tasks import WorkerRuntime, register

logger = logging.getLogger(__name__)

def worker_runtime(settings: Settings) -> WorkerRuntime:
    """What the tasks need, from the settings."""
    return WorkerRuntime(
        database_url=settings.database,
        checkpoint=checkpoint_path(settings),
        device=settings.device,
        queue=queue_config(settings),
        analysis=AnalysisConfig(
            store_dir=settings.store_path.resolve(), ae_title=settings.ae_title,
            routing=settings.routing_rules, min_series_images=settings.min_series_images,
            processing_deadline_s=processing_deadline_s(settings),
            software_version=f"lungpath {__version__}"),
        delivery=DeliveryConfig(
            calling_ae=settings.ae_title,
            destinations=tuple(Destination(d.ae_title, d.host, d.port, d.for_calling_ae, d.tls)
                               for d in settings.destinations),
            research_mode=settings.research_mode,
            initial_backoff_s=settings.delivery_initial_backoff_seconds,
            max_backoff_s=settings.delivery_max_backoff_seconds,
            window_s=settings.delivery_window_seconds,
            timeout_s=settings.network_timeout,
            tls_ca_file=settings.tls_ca_file, tls_cert_file=settings.tls_cert_file,
            tls_key_file=settings.tls_key_file),
    )


def run_worker(settings: Settings, queues: tuple[str, ...] = ("analysis", "delivery"), *,
               health: bool = True) -> None:
    """Consume ``queues`` with ``worker_concurrency`` prefork processes until a signal.

    ``health`` serves the health and metrics endpoints on ``metrics_port``; the embedded
    worker leaves them to its node, which already serves them on that port.
    """
    runtime = worker_runtime(settings)
    try:
        load_checkpoint(runtime.checkpoint)  # refuse a bad file now, not at the first study
    except CheckpointError as e:
        raise WorkerError(str(e)) from None
    if any(d.tls for d in runtime.delivery.destinations):
        try:
            runtime.delivery.tls_context()  # a bad key or CA file stops the start, not a send
        except (ssl.SSLError, OSError) as e:
            raise WorkerError(f"cannot set up TLS for the destinations: {e}") from None
    config = runtime.queue
    names = {"analysis": config.analysis_queue, "delivery": config.delivery_queue}
    unknown = sorted(set(queues) - set(names))
    if unknown or not queues:
        raise WorkerError(f"unknown queue {', '.join(unknown) or '(none)'}; use analysis, delivery")
    for chatty in ("pynetdicom", "highdicom"):  # one line per PDU / copied module at INFO
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    app = create_app(config)
    register(app, runtime)
    declare_queues(app, config)
    engine = create_engine_for(settings.database)
    server = start_health_server(settings, engine) if health else None
    logger.info("worker on %s: queues %s, %d processes, device %s, checkpoint %s",
                socket.gethostname(), ",".join(queues), settings.worker_concurrency,
                settings.device, runtime.checkpoint)
    try:
        app.worker_main([
            "worker", "--pool=prefork", f"--concurrency={settings.worker_concurrency}",
            f"--queues={','.join(names[q] for q in queues)}",
            f"--hostname=lungpath-{os.getpid()}@%h", f"--loglevel={settings.log_level}",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ])
    finally:
        if server is not None:
            server.stop()
        engine.dispose()
