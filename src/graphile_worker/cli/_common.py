"""What every command shares: the connection options, error reporting, logging and async entry.

Errors follow one rule: anything the library raises on purpose (a
:class:`~graphile_worker.errors.GraphileWorkerError`, possibly wrapped in an exception group
by a task group) becomes a single ``Error: ...`` line on stderr and exit status 1, because the
message already says what went wrong and how to fix it; a traceback would only hide it.
Anything else is a bug and keeps its traceback. A command line that cannot be parsed (an
unknown option, a missing argument, options that contradict each other) is a usage error
and exits with status 2, as click does.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import anyio
import click
from click.core import ParameterSource

from ..drivers import DRIVER_NAMES
from ..errors import ConnectionLostError, DatabaseError, GraphileWorkerError, QueryError
from ..sql import DEFAULT_SCHEMA, validate_schema_name
from ._logs import LOG_FORMATS, JsonFormatter

__all__ = [
    "LOG_LEVELS",
    "CliGroup",
    "check_schema",
    "check_uvloop",
    "concurrency_option",
    "configure_logging",
    "connection_option",
    "describe_server",
    "driver_option",
    "library_error",
    "run_async",
    "schema_option",
]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

LOG_LEVELS = ("debug", "info", "warning", "error")

connection_option: Callable[[F], F] = click.option(
    "-c",
    "--connection",
    metavar="URL",
    default=None,
    help="PostgreSQL URL (postgresql://, postgres:// or a SQLAlchemy URL such as "
    "postgresql+asyncpg://); default: $DATABASE_URL.",
)

schema_option: Callable[[F], F] = click.option(
    "-s",
    "--schema",
    metavar="NAME",
    default=DEFAULT_SCHEMA,
    show_default=True,
    envvar="GRAPHILE_WORKER_SCHEMA",
    show_envvar=True,
    help="The schema in which Graphile Worker is (to be) located.",
)


def concurrency_option(default: int) -> Callable[[F], F]:
    """``-j/--jobs/--concurrency``, shared by every command that runs a worker."""
    return click.option(
        "-j",
        "--jobs",
        "--concurrency",
        "concurrency",
        type=click.IntRange(min=1),
        default=default,
        show_default=True,
        help="Number of jobs to run concurrently.",
    )


driver_option: Callable[[F], F] = click.option(
    "--driver",
    type=click.Choice(DRIVER_NAMES),
    default="auto",
    show_default=True,
    help="Database driver; 'auto' picks asyncpg when installed, else psycopg-anyio.",
)


def check_schema(schema: str) -> str:
    """Refuse a bad schema name before any connection is opened (raises InvalidSchemaNameError)."""
    return validate_schema_name(schema)


def library_error(error: BaseException) -> GraphileWorkerError | None:
    """The library error ``error`` stands for, if it is one, looking inside exception groups.

    anyio task groups wrap whatever their tasks raise in an exception group; a group holding
    only library errors is reported through its first one.
    """
    if isinstance(error, GraphileWorkerError):
        return error
    nested = getattr(error, "exceptions", None)
    if not isinstance(nested, tuple) or not nested:
        return None
    found = [library_error(inner) for inner in nested]
    if any(item is None for item in found):
        return None
    return found[0]


def _one_line(error: GraphileWorkerError) -> str:
    """The message's first line; the rest (a server log, say) is shown with debug logging."""
    message = str(error).strip() or type(error).__name__
    first, _, rest = message.partition("\n")
    return first + (" (run with --log-level debug for details)" if rest else "")


def _set_log_level(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Hand a sub-command's ``--log-level`` to the group, where every command looks for it.

    The source is recorded as the command line so that ``run --processes`` passes the level
    on to its worker processes, as it does a level given before the command.
    """
    if value is None:
        return
    root = ctx.find_root()
    root.params["log_level"] = value
    root.set_parameter_source("log_level", ParameterSource.COMMANDLINE)


def _set_log_format(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Hand a sub-command's ``--log-format`` to the group, as :func:`_set_log_level` does."""
    if value is None:
        return
    root = ctx.find_root()
    root.params["log_format"] = value
    root.set_parameter_source("log_format", ParameterSource.COMMANDLINE)


def _accept_log_level(command: click.Command) -> None:
    """Let ``command`` (and its sub-commands) take ``--log-level`` and ``--log-format``
    after its name too.

    ``graphile-worker run --log-level debug`` is what people type; click would only accept
    the group's options before the command name.
    """
    if not any(param.name == "log_level" for param in command.params):
        command.params.append(
            click.Option(
                ["--log-level"],
                type=click.Choice(LOG_LEVELS, case_sensitive=False),
                default=None,
                expose_value=False,
                callback=_set_log_level,
                help="Log records shown on stderr (also accepted before the command; "
                "default: $GRAPHILE_WORKER_LOG_LEVEL).",
            )
        )
    if not any(param.name == "log_format" for param in command.params):
        command.params.append(
            click.Option(
                ["--log-format"],
                type=click.Choice(LOG_FORMATS, case_sensitive=False),
                default=None,
                expose_value=False,
                callback=_set_log_format,
                help="text, or json: one JSON object per record (also accepted before the "
                "command; default: $GRAPHILE_WORKER_LOG_FORMAT, else text).",
            )
        )
    if isinstance(command, click.Group):
        for sub_command in command.commands.values():
            _accept_log_level(sub_command)


class CliGroup(click.Group):
    """A click group that reports library errors as one line instead of a traceback.

    With ``--log-level debug`` the whole message and the traceback are shown as well, for
    bug reports.
    """

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        _accept_log_level(cmd)
        super().add_command(cmd, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Commands in the order they were added (most used first), not alphabetically."""
        return list(self.commands)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except Exception as error:
            found = library_error(error)
            if found is None:
                raise
            if (ctx.params.get("log_level") or "").lower() == "debug":
                details = "".join(traceback.format_exception(error))
                click.echo(details.rstrip(), err=True)
                raise click.ClickException(str(found).strip()) from error
            raise click.ClickException(_one_line(found)) from error


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record.

    A plain StreamHandler keeps the stream it was created with, but click's test runner
    (and anything else that redirects ``sys.stderr`` for a while) swaps it per invocation.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """Ignored: the stream is always the current ``sys.stderr``."""


_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(default_level: str) -> None:
    """Send log records to stderr until the command finishes.

    The level is the group's ``--log-level`` when given, else the command's
    ``default_level``: ``run`` shows each job (info), one-shot commands only problems. The
    group's ``--log-format json`` writes one JSON object per record instead of a line of
    text.

    Only the command line does this: the library never configures logging, so an application
    embedding a worker keeps full control. The handler goes on the root logger so that task
    modules' own loggers are shown too, and it is removed again when the click context
    closes (which matters when commands run in-process, as in tests).
    """
    ctx = click.get_current_context()
    params = ctx.find_root().params
    chosen = params.get("log_level") or default_level
    root = logging.getLogger()
    handler = _StderrHandler()
    if params.get("log_format") == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(getattr(logging, chosen.upper()))

    def restore() -> None:
        root.removeHandler(handler)
        root.setLevel(previous_level)

    ctx.call_on_close(restore)


def describe_server(url: str | None) -> str:
    """Where ``url`` (or ``$DATABASE_URL``) points, without credentials: for error messages."""
    url = url or os.environ.get("DATABASE_URL") or ""
    parts = urlsplit(url)
    try:
        port = parts.port or 5432
    except ValueError:
        return "the database"
    host = parts.hostname or "the local socket"
    database = unquote(parts.path.lstrip("/")) or parts.username or "postgres"
    return f"PostgreSQL at {host}:{port} (database {database!r})"


def check_uvloop() -> None:
    """Refuse ``--runtime uvloop`` up front, with the fix, when uvloop is not installed.

    anyio would quietly fall back to the default event loop.
    """
    if importlib.util.find_spec("uvloop") is None:
        raise click.UsageError(
            "--runtime uvloop needs the uvloop package: pip install uvloop "
            '(or pip install "graphile-worker[speedups]")'
        )


def run_async(
    function: Callable[[], Awaitable[T]],
    *,
    connection: str | None,
    backend: str = "asyncio",
) -> T:
    """Run one coroutine function to completion on a fresh event loop of ``backend``.

    A connection failure is reported with the server it was talking to (host, port and
    database, never the password): drivers only know the socket error, and "connection
    refused" alone does not say which of several configured URLs was wrong.
    """

    async def call() -> T:
        return await function()

    options: dict[str, object] = {}
    if backend == "uvloop":
        backend, options = "asyncio", {"use_uvloop": True}
    try:
        return anyio.run(call, backend=backend, backend_options=options)
    except Exception as error:
        found = library_error(error)
        if isinstance(found, ConnectionLostError):
            raise ConnectionLostError(
                f"{describe_server(connection)}: {found}", sqlstate=found.sqlstate
            ) from error
        if isinstance(found, QueryError) and found.sqlstate in _SCHEMA_MISSING_STATES:
            raise QueryError(_missing_schema_message(found), sqlstate=found.sqlstate) from error
        raise


_SCHEMA_MISSING_STATES = frozenset({"42P01", "3F000", "42883"})
"""undefined_table, invalid_schema_name and undefined_function: what our queries meet on a
database whose schema was never installed, or was installed by an older version."""


def _missing_schema_message(error: DatabaseError) -> str:
    """The server's complaint, with what it most likely means and the command that fixes it."""
    from ..migrations.migrator import migrate_hint

    ctx = click.get_current_context(silent=True)
    schema = ctx.params.get("schema") if ctx is not None else None
    if not isinstance(schema, str):
        schema = DEFAULT_SCHEMA
    complaint = (str(error).strip() or type(error).__name__).partition("\n")[0]
    return (
        f"schema {schema!r} is not installed or not up to date ({complaint}): "
        f"run {migrate_hint(schema)}"
    )
