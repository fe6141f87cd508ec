"""``graphile-worker run``: run a worker until it is stopped, or until the queue is empty."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ._common import (
    check_schema,
    check_uvloop,
    concurrency_option,
    configure_logging,
    connection_option,
    driver_option,
    run_async,
    schema_option,
)
from ._cron import default_crontab
from ._tasks import load_registry, tasks_option

if TYPE_CHECKING:
    from ..prometheus import PrometheusPlugin
    from ..recovery import RecoveryOptions

__all__ = ["run_command"]


@click.command("run", short_help="Run jobs until stopped, or until none are left (--once).")
@connection_option
@schema_option
@tasks_option
@click.option(
    "--once",
    is_flag=True,
    help="Run until there are no runnable jobs left, then exit (status 1 if a job failed "
    "permanently).",
)
@click.option(
    "--fail-on-error",
    is_flag=True,
    help="With --once, exit with status 1 if any attempt failed, not only a job's last.",
)
@click.option(
    "--no-migrate",
    is_flag=True,
    help="Do not install or upgrade the schema (for a role without DDL rights); refuse to "
    "start if it is behind. Run `graphile-worker migrate` when deploying instead.",
)
@click.option(
    "--crontab",
    "crontab_file",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
    default=None,
    metavar="FILE",
    help="Schedule the recurring jobs in this crontab file [default: ./crontab when it "
    "exists, as in Node]. Check one with `graphile-worker cron check FILE`.",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="Worker processes to run under one supervisor, to use N cores (POSIX only); "
    "signals are forwarded and a crashed process is restarted.",
)
@concurrency_option(default=1)
@click.option(
    "-m",
    "--max-pool-size",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Maximum size of the PostgreSQL connection pool.",
)
@click.option(
    "--poll-interval",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    metavar="MS",
    help="Milliseconds between polls for jobs, a fallback for LISTEN/NOTIFY "
    "(as in Node, milliseconds).",
)
@click.option(
    "--no-prepared-statements",
    is_flag=True,
    help="Disable prepared statements, e.g. behind PgBouncer in transaction mode.",
)
@click.option(
    "--listen-connection",
    "listen_connection",
    metavar="URL",
    default=None,
    help="Direct PostgreSQL URL for the LISTEN connection when --connection is a pooler "
    "that cannot carry LISTEN (PgBouncer in transaction mode); default: --connection.",
)
@click.option(
    "--local-queue-size",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Claim up to N jobs at a time and start them from memory: far fewer queries for "
    "many short jobs. At least --jobs is sensible. [default: off]",
)
@click.option(
    "--local-queue-ttl",
    type=click.IntRange(min=1),
    default=300_000,
    show_default=True,
    metavar="MS",
    help="Milliseconds claimed jobs may wait in the local queue before they are handed back.",
)
@click.option(
    "--local-queue-refetch-delay",
    type=click.IntRange(min=1),
    default=None,
    metavar="MS",
    help="After a fetch returns --local-queue-refetch-threshold jobs or fewer, wait about "
    "MS milliseconds before fetching again (at most --poll-interval). [default: off]",
)
@click.option(
    "--local-queue-refetch-threshold",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="N",
    help="A fetch of N jobs or fewer starts the refetch delay.",
)
@click.option(
    "--complete-job-batch-delay",
    type=click.IntRange(min=0),
    default=None,
    metavar="MS",
    help="Record successes in batches, one statement for all that finish within MS "
    "milliseconds of the first (0: those finishing together). [default: one at a time]",
)
@click.option(
    "--fail-job-batch-delay",
    type=click.IntRange(min=0),
    default=None,
    metavar="MS",
    help="Record failed attempts in batches, as --complete-job-batch-delay does successes. "
    "[default: one at a time]",
)
@click.option(
    "--shutdown-grace-period",
    type=click.IntRange(min=0),
    default=5000,
    show_default=True,
    metavar="MS",
    help="Milliseconds running jobs get to finish after SIGINT/SIGTERM; then they are "
    "released for a later run (a plain def handler's thread is left behind) and the "
    "process exits.",
)
@click.option(
    "--heartbeat-interval",
    type=click.IntRange(min=1),
    default=30_000,
    show_default=True,
    metavar="MS",
    help="Milliseconds between heartbeats in the worker registry (and between sweeps for "
    "dead workers).",
)
@click.option(
    "--stale-after",
    type=click.IntRange(min=1),
    default=300_000,
    show_default=True,
    metavar="MS",
    help="Milliseconds without a heartbeat after which this worker is presumed dead and "
    "its jobs are handed back (at least twice --heartbeat-interval).",
)
@click.option(
    "--recovery-delay",
    type=click.IntRange(min=0),
    default=30_000,
    show_default=True,
    metavar="MS",
    help="Milliseconds a job recovered from a dead worker waits before it runs again.",
)
@click.option(
    "--long-running-stale-after",
    type=click.IntRange(min=1),
    default=3_600_000,
    show_default=True,
    metavar="MS",
    help="The same as --stale-after for jobs flagged long-running (at least --stale-after).",
)
@click.option(
    "--no-recovery",
    is_flag=True,
    help="Do not register, heartbeat or sweep: if this worker dies, its jobs wait for the "
    "four-hour lock expiry (Node's behaviour).",
)
@click.option(
    "--retry-undecodable-payloads",
    is_flag=True,
    help="Retry jobs whose payload does not decode into the task's payload type, with "
    "back-off, instead of failing them for good at once (while producers and workers are "
    "deployed out of step).",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Log no line per completed job (failures are still logged as errors).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    metavar="PORT",
    help="Serve Prometheus metrics on http://HOST:PORT/metrics and a health check on "
    "/healthz (pip install graphile-worker[prometheus]). [default: off]",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    metavar="HOST",
    help="Address --metrics-port listens on (0.0.0.0 for every interface).",
)
@click.option(
    "--health-max-outage",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="/healthz fails once the database has not answered for this long.",
)
@driver_option
@click.option(
    "--runtime",
    type=click.Choice(("asyncio", "uvloop", "trio")),
    default="asyncio",
    show_default=True,
    help="Async runtime to run on: uvloop is asyncio on uvloop's event loop (pip install "
    "uvloop). On trio the default driver is psycopg-anyio.",
)
def run_command(
    connection: str | None,
    schema: str,
    task_targets: tuple[str, ...],
    once: bool,
    fail_on_error: bool,
    no_migrate: bool,
    crontab_file: Path | None,
    processes: int,
    concurrency: int,
    max_pool_size: int,
    poll_interval: int,
    no_prepared_statements: bool,
    listen_connection: str | None,
    local_queue_size: int | None,
    local_queue_ttl: int,
    local_queue_refetch_delay: int | None,
    local_queue_refetch_threshold: int,
    complete_job_batch_delay: int | None,
    fail_job_batch_delay: int | None,
    shutdown_grace_period: int,
    heartbeat_interval: int,
    stale_after: int,
    recovery_delay: int,
    long_running_stale_after: int,
    no_recovery: bool,
    retry_undecodable_payloads: bool,
    quiet: bool,
    metrics_port: int | None,
    metrics_host: str,
    health_max_outage: float,
    driver: str,
    runtime: str,
) -> None:
    """Run jobs until stopped (SIGINT/SIGTERM), or with --once until none are runnable.

    Installs or upgrades the schema first; with --no-migrate it only checks that the schema
    is current and refuses to start otherwise. Tasks come from --tasks: each names a module
    (myapp.tasks, importable from the current directory), module:attribute or a .py file.
    Every task function (@task) and handler class (with an IDENTIFIER and run()) defined or
    imported there is used, or what the module's `tasks` attribute (or the named attribute)
    holds. Without --tasks, tasks.py or the tasks/ package in the current directory is
    used, as Node uses ./tasks. Jobs for other task names are left for other workers.

    Recurring jobs come from --crontab, or ./crontab when that file exists (Node's
    default). Any number of workers may run one crontab: each minute is scheduled once.
    With --once nothing is scheduled (as in Node), but the crontab is still checked.

    On SIGINT or SIGTERM the worker stops taking jobs and lets running ones finish within
    --shutdown-grace-period; jobs still running then are released without spending their
    attempt, and the process exits (status 0). A second signal skips the wait.

    With --once the exit status is 1 when a job failed permanently (its last attempt), or
    with --fail-on-error when any attempt failed; the summary line is printed either way.

    The worker registers in the schema's worker registry and heartbeats; a worker silent
    for longer than its --stale-after (kill -9, a lost machine) is given up by the others,
    which hand its jobs back (see `graphile-worker workers` and `graphile-worker sweep`).

    With --processes N (POSIX only), N copies of this command run as child processes of a
    supervisor, one core each: it migrates once, passes SIGINT/SIGTERM on to every child,
    starts a crashed child again, and exits 0 only when all stopped cleanly.

    With --metrics-port the worker serves Prometheus metrics on /metrics and a health
    check on /healthz (503 until the worker is listening, once it shuts down, and once the
    database has not answered for --health-max-outage seconds).
    """
    configure_logging("info")
    if fail_on_error and not once:
        raise click.UsageError("--fail-on-error needs --once (a continuous worker keeps running)")
    if quiet:
        _silence_job_lines()
    check_schema(schema)
    if runtime == "uvloop":
        check_uvloop()
    if local_queue_size is None:
        _refuse_without_local_queue(
            "local_queue_ttl", "local_queue_refetch_delay", "local_queue_refetch_threshold"
        )
    if local_queue_refetch_delay is not None and local_queue_refetch_delay > poll_interval:
        raise click.UsageError(
            f"--local-queue-refetch-delay ({local_queue_refetch_delay} ms) must not be longer "
            f"than --poll-interval ({poll_interval} ms)"
        )
    recovery = _recovery_options(
        no_recovery, heartbeat_interval, stale_after, recovery_delay, long_running_stale_after
    )
    crontab = default_crontab() if crontab_file is None else crontab_file
    if crontab is not None:
        from ..crontab import load_crontab

        # Checked before any process starts, so that a bad line is reported once.
        load_crontab(crontab)
    if metrics_port is None:
        _refuse_without_metrics_port("metrics_host", "health_max_outage")
    elif processes > 1:
        raise click.UsageError(
            "--metrics-port cannot be combined with --processes: every process would need "
            "a port of its own; run one `graphile-worker run --metrics-port` per process "
            "instead, each with its own port"
        )
    if processes > 1:
        from ._supervisor import supervise

        supervise(click.get_current_context(), processes, once=once)
        return
    registry = load_registry(task_targets)
    metrics = None
    if metrics_port is not None:
        metrics = _start_metrics(connection, schema, metrics_host, metrics_port, health_max_outage)
    from ..worker import LocalQueueOptions, RefetchDelay, Worker, WorkerOptions

    local_queue = None
    if local_queue_size is not None:
        refetch = None
        if local_queue_refetch_delay is not None:
            refetch = RefetchDelay(
                duration=local_queue_refetch_delay / 1000,
                threshold=local_queue_refetch_threshold,
            )
        local_queue = LocalQueueOptions(
            size=local_queue_size, ttl=local_queue_ttl / 1000, refetch_delay=refetch
        )

    options = WorkerOptions(
        tasks=registry,
        database_url=connection,
        driver=driver,
        schema=schema,
        concurrency=concurrency,
        max_pool_size=max_pool_size,
        poll_interval=poll_interval / 1000,
        prepared_statements=not no_prepared_statements,
        listen_url=listen_connection,
        local_queue=local_queue,
        complete_job_batch_delay=_seconds(complete_job_batch_delay),
        fail_job_batch_delay=_seconds(fail_job_batch_delay),
        shutdown_grace_period=shutdown_grace_period / 1000,
        crontab=crontab,
        recovery=recovery,
        migrate=not no_migrate,
        hooks=() if metrics is None else (metrics,),
        retry_undecodable_payloads=retry_undecodable_payloads,
    )
    worker = Worker(options)
    if once:
        summary = run_async(worker.run_once, connection=connection, backend=runtime)
        click.echo(
            f"Ran {summary.total} job(s): {summary.completed} completed, {summary.failed} "
            f"failed ({summary.permanently_failed} permanently), {summary.interrupted} "
            "interrupted"
        )
        if summary.permanently_failed or (fail_on_error and summary.failed):
            raise click.ClickException(
                f"{summary.permanently_failed} job(s) failed permanently"
                if summary.permanently_failed
                else f"{summary.failed} attempt(s) failed (--fail-on-error)"
            )
    else:
        run_async(worker.run, connection=connection, backend=runtime)


def _start_metrics(
    connection: str | None, schema: str, host: str, port: int, max_outage: float
) -> PrometheusPlugin:
    """The metrics plugin, its HTTP server already listening; both end with the command."""
    try:
        import prometheus_client

        from ..prometheus import MetricsServer, PrometheusPlugin
    except ImportError as error:
        raise click.UsageError(
            "--metrics-port needs prometheus-client; pip install graphile-worker[prometheus]"
        ) from error
    # A registry of the command's own (not the process-wide default, which would refuse a
    # second plugin when the command runs twice in one process), with the usual extras.
    registry = prometheus_client.CollectorRegistry()
    prometheus_client.ProcessCollector(registry=registry)
    prometheus_client.PlatformCollector(registry=registry)
    prometheus_client.GCCollector(registry=registry)
    depth = importlib.util.find_spec("psycopg") is not None
    if not depth:
        logging.getLogger("graphile_worker.cli").warning(
            "--metrics-port: no queue depth metrics and no database check in /healthz "
            "without psycopg; pip install graphile-worker[psycopg]"
        )
    plugin = PrometheusPlugin(registry, database_url=connection, schema=schema, depth=depth)
    try:
        server = MetricsServer(plugin, host=host, port=port, max_outage=max_outage)
    except OSError as error:
        plugin.close()
        raise click.UsageError(
            f"--metrics-port: cannot listen on {host}:{port} ({error.strerror or error}); "
            "pick a free port"
        ) from error
    ctx = click.get_current_context()
    ctx.call_on_close(plugin.close)
    ctx.call_on_close(server.close)
    logging.getLogger("graphile_worker.cli").info(
        "serving metrics on http://%s:%d/metrics and /healthz", host, server.port
    )
    return plugin


def _refuse_without_metrics_port(*names: str) -> None:
    """A metrics setting given without --metrics-port would be silently ignored."""
    ctx = click.get_current_context()
    for name in names:
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
            flag = "--" + name.replace("_", "-")
            raise click.UsageError(f"{flag} needs --metrics-port PORT (metrics are off)")


def _recovery_options(
    off: bool, interval: int, stale_after: int, delay: int, long_stale_after: int
) -> RecoveryOptions | None:
    """The recovery flags (milliseconds), checked before any process starts."""
    if off:
        return None
    if stale_after < 2 * interval:
        raise click.UsageError(
            f"--stale-after ({stale_after} ms) must be at least twice --heartbeat-interval "
            f"({interval} ms): otherwise one late heartbeat gives a live worker up"
        )
    if long_stale_after < stale_after:
        raise click.UsageError(
            f"--long-running-stale-after ({long_stale_after} ms) must be at least "
            f"--stale-after ({stale_after} ms)"
        )
    from ..recovery import RecoveryOptions

    return RecoveryOptions(
        heartbeat_interval=interval / 1000,
        stale_after=stale_after / 1000,
        recovery_delay=delay / 1000,
        long_running_stale_after=long_stale_after / 1000,
    )


def _seconds(milliseconds: int | None) -> float | None:
    return None if milliseconds is None else milliseconds / 1000


def _refuse_without_local_queue(*names: str) -> None:
    """A local-queue setting given without --local-queue-size would be silently ignored."""
    ctx = click.get_current_context()
    for name in names:
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
            flag = "--" + name.replace("_", "-")
            raise click.UsageError(f"{flag} needs --local-queue-size N (the local queue is off)")


def _silence_job_lines() -> None:
    """Hide the worker's line per completed job until the command ends (``--quiet``).

    Those lines go to their own logger, ``graphile_worker.worker.jobs``, so everything
    else the worker says at info level (start-up, shutdown) is still shown.
    """
    job_lines = logging.getLogger("graphile_worker.worker.jobs")
    previous = job_lines.level
    job_lines.setLevel(logging.WARNING)
    click.get_current_context().call_on_close(lambda: job_lines.setLevel(previous))
