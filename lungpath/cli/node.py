"""Commands that run lungpath's processes: the node, a worker, the demo, and a C-ECHO."""

from __future__ import annotations

from pathlib import Path

import click

from lungpath.cli import Context, fail, main, pass_context


@main.command()
@click.option("--host", help="Address to listen on (setting: host).")
@click.option("--port", type=int, help="DICOM port (setting: port).")
@click.option("--ae-title", help="The node's AE title (setting: ae_title).")
@pass_context
def serve(ctx: Context, host: str | None, port: int | None, ae_title: str | None) -> None:
    """Run the DICOM node: C-ECHO/C-STORE SCP, dispatcher and reconciler.

    In the embedded mode (the default) it also starts an analysis worker as a child process.
    """
    from lungpath.dispatch import WorkerError
    from lungpath.node import NodeError, run_node

    settings = ctx.settings(host=host, port=port, ae_title=ae_title)
    try:
        run_node(settings)
    except (NodeError, WorkerError) as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot listen on {settings.host}:{settings.port}: {e.strerror or e}")


@main.command()
@click.option("--device", help="auto, cpu, cuda or cuda:N (setting: device).")
@click.option("--queues", default="analysis,delivery", show_default=True,
              help="Celery queues this worker consumes.")
@click.option("--concurrency", type=click.IntRange(1, 64),
              help="Worker processes (setting: worker_concurrency).")
@pass_context
def worker(ctx: Context, device: str | None, queues: str, concurrency: int | None) -> None:
    """Run an analysis and delivery worker (Celery) on this host."""
    from lungpath.dispatch import WorkerError
    from lungpath.worker import run_worker

    settings = ctx.settings(device=device, worker_concurrency=concurrency)
    try:
        run_worker(settings, tuple(q.strip() for q in queues.split(",") if q.strip()))
    except WorkerError as e:
        fail(str(e))


@main.command()
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="New or empty folder for the results, database and logs "
                   "(default: a new folder lungpath-demo-<time> here).")
@click.option("--study", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Send this DICOM study instead of generating a synthetic one.")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True,
              help="Seed of the synthetic study.")
@click.option("--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="Seconds to wait for the SR before giving up.")
@pass_context
def demo(ctx: Context, out: Path | None, study: Path | None, seed: int, timeout: float) -> None:
    """Show the whole flow on one study: C-STORE in, SR back, findings and audit trail.

    Starts a node and a worker in the embedded mode in a folder of their own (research
    mode on: the shipped weights were trained on synthetic data), a Storage SCP as the PACS,
    sends the study and prints the findings of the SR that comes back.
    """
    import time

    from lungpath.demo import DemoError, DemoOptions, run_demo

    settings = ctx.settings(research_mode=True)
    folder = out or Path(time.strftime("lungpath-demo-%Y%m%d-%H%M%S"))
    try:
        run_demo(DemoOptions(out=folder, study=study, seed=seed, timeout_s=timeout,
                             checkpoint=settings.checkpoint, device=settings.device))
    except DemoError as e:
        fail(str(e))


@main.command()
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@click.argument("ae")
@click.option("--calling-ae", help="Our AE title in the association (default: setting ae_title).")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait.")
@click.option("--tls", is_flag=True,
              help="Over TLS, as results go to a destination with tls = true: the peer's "
                   "certificate checked against tls_ca_file, ours shown from tls_cert_file.")
@pass_context
def echo(ctx: Context, host: str, port: int, ae: str, calling_ae: str | None,
         timeout: float, tls: bool) -> None:
    """Send a C-ECHO to the DICOM peer AE at HOST:PORT and report its status."""
    import ssl

    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    from lungpath.settings import validate_ae_title
    from pipeline.scu import client_context, prepare_requestor

    settings = ctx.settings()
    try:
        validate_ae_title(ae)
        calling = validate_ae_title(calling_ae or settings.ae_title)
    except ValueError as e:
        fail(str(e), 2)
    app = AE(ae_title=calling)
    app.acse_timeout = app.network_timeout = timeout
    app.add_requested_context(Verification)
    tls_args = None
    if tls:
        try:
            tls_args = (client_context(settings.tls_ca_file, settings.tls_cert_file,
                                       settings.tls_key_file), host)
        except (ssl.SSLError, OSError) as e:
            fail(f"cannot set up TLS: {e}", 2)
    assoc = app.associate(host, port, ae_title=ae, tls_args=tls_args)
    if not assoc.is_established:
        handshake = ", or the TLS handshake failed" if tls else ""
        fail(f"no association with {ae} at {host}:{port} (rejected, aborted or unreachable"
             f"{handshake})")
    prepare_requestor(assoc)
    status = assoc.send_c_echo()
    assoc.release()
    if not status or status.Status != 0:
        code = f"0x{status.Status:04X}" if status else "none (timeout or abort)"
        fail(f"C-ECHO to {ae} at {host}:{port} failed: status {code}")
    click.echo(f"C-ECHO to {ae} at {host}:{port}: success (0x0000)")
