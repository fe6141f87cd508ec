"""``graphile-worker admin``: the admin web app (:mod:`graphile_worker.admin`) served by uvicorn.

Everything a person can get wrong is checked before the server starts: the auth mode and
its secret, ``--auth none`` on an address other machines can reach, the crontab, the
database and its schema, the port. Then one line on stderr says where the app is and how to
get in. Secrets only ever come from the environment, never from the command line, where
other users of the machine could read them in the process list.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from ._common import (
    check_schema,
    configure_logging,
    connection_option,
    driver_option,
    run_async,
    schema_option,
)
from ._cron import default_crontab
from ._output import BadInput

if TYPE_CHECKING:
    from collections.abc import Iterator

    import uvicorn
    from starlette.applications import Starlette

    from ..admin import AdminAuth

__all__ = ["admin_command"]

AUTH_MODES = ("basic", "bearer", "header", "none")
PASSWORD_VARIABLE = "GRAPHILE_WORKER_ADMIN_PASSWORD"
TOKEN_VARIABLE = "GRAPHILE_WORKER_ADMIN_TOKEN"
USERNAME_VARIABLE = "GRAPHILE_WORKER_ADMIN_USERNAME"
INSTALL_HINT = "pip install 'graphile-worker[admin]'"

# Seconds open connections (a browser's keep-alive, a page being rendered) get to finish
# after SIGINT/SIGTERM before they are closed.
_GRACEFUL_SHUTDOWN_SECONDS = 5


@dataclass(frozen=True)
class _Access:
    """How people get in: the auth object for the app, and how to say so on the ready line."""

    auth: AdminAuth
    description: str


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine.

    Only literal loopback addresses and ``localhost`` count: any other name could resolve
    to an address that other machines reach, today or after a DNS change.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _explicit(name: str) -> bool:
    """Whether option ``name`` was typed on the command line (not only set in the environment,
    which may be shared by invocations in several auth modes)."""
    source = click.get_current_context().get_parameter_source(name)
    return source is ParameterSource.COMMANDLINE


def _secret_from(variable: str) -> str | None:
    """The secret in ``variable``; ``None`` when unset, refused when set but empty."""
    value = os.environ.get(variable)
    if value is None:
        return None
    if not value.strip():
        raise BadInput(
            f"${variable} is set but empty; put the secret in it, or unset it"
            + (" to have a password generated" if variable == PASSWORD_VARIABLE else "")
        )
    return value


def _access(mode: str, username: str, header_name: str) -> _Access:
    """The auth object for ``mode``, built from the environment; refused with the fix if not."""
    from ..admin import AdminAuth
    from ..errors import ConfigurationError

    if mode != "basic" and _explicit("username"):
        raise BadInput(f"--username only applies to --auth basic, not --auth {mode}")
    if mode != "header" and _explicit("header_name"):
        raise BadInput(f"--header-name only applies to --auth header, not --auth {mode}")
    try:
        if mode == "basic":
            password = _secret_from(PASSWORD_VARIABLE)
            if password is None:
                password = secrets.token_urlsafe(16)
                told = f"generated password: {password}"
            else:
                told = f"password from ${PASSWORD_VARIABLE}"
            return _Access(
                AdminAuth.basic(password, username=username), f"basic, user {username!r}, {told}"
            )
        if mode in ("bearer", "header"):
            token = _secret_from(TOKEN_VARIABLE)
            if token is None:
                raise BadInput(
                    f"--auth {mode} needs the token in ${TOKEN_VARIABLE} (secrets are never "
                    "taken on the command line); for example: "
                    f'export {TOKEN_VARIABLE}="$(python -c "import secrets; '
                    'print(secrets.token_urlsafe(32))")"'
                )
            if mode == "bearer":
                description = f"bearer, token from ${TOKEN_VARIABLE}"
                return _Access(AdminAuth.bearer(token), description)
            description = f"header {header_name}, token from ${TOKEN_VARIABLE}"
            return _Access(AdminAuth.header(token, name=header_name), description)
        return _Access(AdminAuth.none(loopback_only=True), "none, clients on this machine only")
    except ConfigurationError as error:
        raise BadInput(str(error)) from None


def _crontab(path: Path | None) -> Path | None:
    """The crontab whose next runs /cron shows: checked now, so a bad line fails at start."""
    chosen = default_crontab() if path is None else path
    if chosen is not None:
        from ..crontab import load_crontab

        load_crontab(chosen)
    return chosen


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (port 0: any free one), or a clear refusal.

    Bound here rather than by uvicorn so that a busy port is one ``Error:`` line, and so
    that the ready line can name the port the system chose.
    """
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise BadInput(f"--host {host!r} cannot be resolved: {error.strerror}") from None
    listener = socket.socket(family, kind, protocol)
    try:
        if os.name == "posix":
            # Restarting right after a stop must not fail on the old connections' TIME_WAIT.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
    except OSError as error:
        listener.close()
        raise click.ClickException(
            f"cannot listen on {_url_host(host)}:{port}: {error.strerror or error}; "
            "choose another --port (or stop what uses it)"
        ) from None
    return listener


def _url_host(host: str) -> str:
    bare = host.strip("[]")
    return f"[{bare}]" if ":" in bare else bare


def _ready_line(host: str, port: int, root_path: str, access: _Access, read_only: bool) -> str:
    url = f"http://{_url_host(host)}:{port}/"
    line = f"graphile-worker admin on {url} (auth: {access.description}"
    if read_only:
        line += "; read-only"
    line += ")"
    if root_path:
        line += f"; links use the prefix {root_path}: open it through your proxy"
    return line


@contextmanager
def _reported(what: str) -> Iterator[None]:
    """Turn a missing optional dependency into the install command that adds it."""
    try:
        yield
    except ImportError as error:
        message = str(error)
        if INSTALL_HINT not in message:
            message = f"{what} needs the admin extra ({message}): {INSTALL_HINT}"
        raise click.ClickException(message) from None


@click.command("admin", short_help="Serve the admin web app (needs the admin extra).")
@connection_option
@schema_option
@driver_option
@click.option(
    "--host",
    default="127.0.0.1",
    metavar="ADDRESS",
    show_default=True,
    help="Address to listen on; anything but a loopback address lets other machines connect.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on (0: any free port; the ready line names it).",
)
@click.option(
    "--auth",
    type=click.Choice(AUTH_MODES),
    default="basic",
    show_default=True,
    help="basic: user and password ($GRAPHILE_WORKER_ADMIN_PASSWORD, else one is generated "
    "and printed); bearer: 'Authorization: Bearer' with $GRAPHILE_WORKER_ADMIN_TOKEN; header: "
    "the token in --header-name; none: no credentials, loopback clients only.",
)
@click.option(
    "--username",
    default="admin",
    metavar="NAME",
    show_default=True,
    envvar=USERNAME_VARIABLE,
    show_envvar=True,
    help="User name for --auth basic.",
)
@click.option(
    "--header-name",
    default="X-Admin-Token",
    show_default=True,
    metavar="NAME",
    help="Request header that carries the token for --auth header.",
)
@click.option(
    "--read-only",
    is_flag=True,
    help="Show everything, change nothing: every action is refused by the server.",
)
@click.option(
    "--crontab",
    "crontab_file",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
    default=None,
    metavar="FILE",
    help="Crontab whose entries and next runs the cron page shows [default: ./crontab when "
    "it exists].",
)
@click.option(
    "--root-path",
    default="",
    metavar="PREFIX",
    help="URL prefix under which a reverse proxy serves the app, such as /jobs-admin.",
)
def admin_command(
    connection: str | None,
    schema: str,
    driver: str,
    host: str,
    port: int,
    auth: str,
    username: str,
    header_name: str,
    read_only: bool,
    crontab_file: Path | None,
    root_path: str,
) -> None:
    """Serve the admin web app until SIGINT/SIGTERM: job counts and throughput, jobs by
    filter with retry, cancel and delete, queues, workers and their locks, cron, add a job.

    Needs the admin extra: pip install 'graphile-worker[admin]'. When it is ready, one line
    on stderr gives the URL and how to sign in, including a generated password (printed
    this once) when $GRAPHILE_WORKER_ADMIN_PASSWORD is unset. Tokens for --auth bearer and
    header come from $GRAPHILE_WORKER_ADMIN_TOKEN: secrets are never taken on the command
    line. --auth none is refused unless --host is a loopback address.

    Listens on 127.0.0.1 by default. To reach it from elsewhere, prefer an SSH tunnel or a
    reverse proxy with TLS in front (then pass --root-path when it serves the app under a
    prefix) over --host 0.0.0.0: the app itself speaks plain HTTP.
    """
    configure_logging("warning")
    check_schema(schema)
    if auth == "none" and not is_loopback(host):
        raise BadInput(
            f"--auth none on --host {host} would let anyone who can reach this machine "
            "change jobs; listen on 127.0.0.1 (the default), or choose --auth basic, "
            "bearer or header"
        )
    if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
        raise BadInput(
            f"--root-path {root_path!r} must start with / and not end with one, such as /admin"
        )
    with _reported("graphile-worker admin"):
        access = _access(auth, username, header_name)
        import uvicorn  # noqa: F401  (checked here, so a missing server fails before connecting)
    crontab = _crontab(crontab_file)

    async def serve() -> None:
        await _serve(
            connection=connection,
            schema=schema,
            driver=driver,
            host=host,
            port=port,
            access=access,
            read_only=read_only,
            crontab=crontab,
            root_path=root_path,
        )

    run_async(serve, connection=connection)


async def _serve(
    *,
    connection: str | None,
    schema: str,
    driver: str,
    host: str,
    port: int,
    access: _Access,
    read_only: bool,
    crontab: Path | None,
    root_path: str,
) -> None:
    """Connect, check the schema, listen, then serve until a signal stops the server."""
    from ..admin import admin_app
    from ..drivers import create_driver
    from ..utils import WorkerUtils

    # No prepared statements, as the other operator commands: a page runs a few statements,
    # and the app then works through PgBouncer in transaction mode too.
    async with create_driver(
        connection, driver=driver, max_size=4, prepared_statements=False
    ) as database:
        # A missing or outdated schema fails here, with the fix, rather than on every page.
        await WorkerUtils(database, schema=schema).get_job(0)
        listener = _listen(host, port)
        try:
            chosen_port = listener.getsockname()[1]
            app = admin_app(
                database, auth=access.auth, schema=schema, read_only=read_only, crontab=crontab
            )
            line = _ready_line(host, chosen_port, root_path, access, read_only)
            server = _server(app, host, chosen_port, root_path, line)
            await server.serve(sockets=[listener])
        finally:
            listener.close()


def _server(
    app: Starlette, host: str, port: int, root_path: str, ready_line: str
) -> uvicorn.Server:
    """A uvicorn server for ``app`` that prints ``ready_line`` once it accepts connections."""
    import uvicorn
    from uvicorn.server import HANDLED_SIGNALS

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                click.echo(ready_line, err=True)

        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn's own version raises the signal again after a graceful stop, so the
            # process would die of SIGTERM (status -15) after stopping cleanly; a stop asked
            # for is a success here, as for `graphile-worker run`.
            import signal

            previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="asyncio",
        ws="none",
        lifespan="on",
        root_path=root_path,
        # Logging goes through the command's own handler (--log-level): request lines show
        # at info, problems at warning.
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
    )
    return Server(config)
