"""Extra servers for the tests that need them: a TLS-only PostgreSQL, and PgBouncer.

Neither starts unless a test asks for it. The suite's own server (``pg_cluster`` in
``tests/conftest.py``) stays as it is; these fixtures put something in front of it (PgBouncer)
or beside it (a second, TLS-only cluster made with :mod:`graphile_worker.embedded`).

To use a fixture in a test directory, import it into that directory's ``conftest.py``
(``pgbouncer_url`` needs ``pgbouncer`` too) and list the names in its ``__all__``::

    from tests._servers import pgbouncer, pgbouncer_url

    __all__ = ["pgbouncer", "pgbouncer_url"]

``pgbouncer_url`` is the one meant for reuse: the test's own migrated database (the same one
``database_url`` names), reached through PgBouncer in transaction mode.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pytest

from graphile_worker.embedded import Cluster, PostgresNotFoundError, TemporaryCluster

if TYPE_CHECKING:
    import pwd

__all__ = [
    "CertificateAuthority",
    "PgBouncer",
    "TlsServer",
    "find_pgbouncer",
    "pgbouncer",
    "pgbouncer_url",
    "replace_host",
    "tls_server",
    "with_query",
]

OPENSSL = "openssl"
TLS_HOST = "127.0.0.1"
"""Where the TLS server listens; its certificate names this address and ``localhost``."""


def with_query(url: str, **parameters: str) -> str:
    """``url`` with ``key=value`` query parameters appended, values percent-encoded."""
    query = "&".join(f"{key}={quote(value, safe='/')}" for key, value in parameters.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def replace_host(url: str, host: str, port: int) -> str:
    """``url`` pointing at ``host:port``, with its user, password, database and query kept."""
    parts = urlsplit(url)
    credentials, _, _ = parts.netloc.rpartition("@")
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _server_user() -> pwd.struct_passwd | None:
    """The OS user servers run as: ``postgres`` when we are root (PgBouncer refuses root
    too), else ourselves (``None``)."""
    if os.geteuid() != 0:
        return None
    import pwd

    return pwd.getpwnam("postgres")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _missing_tool(reason: str) -> NoReturn:
    """Skip with ``reason``; fail instead in CI, where a skip would hide lost coverage."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)", pytrace=False)
    pytest.skip(reason)


# ----------------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class CertificateAuthority:
    """A throwaway certificate authority made with the ``openssl`` command."""

    certificate: Path
    """The CA certificate (PEM): what a client passes as ``sslrootcert``."""
    key: Path

    @classmethod
    def create(cls, directory: Path, name: str) -> CertificateAuthority:
        certificate, key = directory / f"{name}.pem", directory / f"{name}.key"
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", certificate, "-days", "2",
            "-subj", f"/CN=graphile-worker test {name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        return cls(certificate, key)

    def issue_server_certificate(self, directory: Path, *names: str) -> tuple[Path, Path]:
        """A server certificate and key for ``names`` (DNS names or IP addresses)."""
        certificate, key = directory / "server.crt", directory / "server.key"
        request = directory / "server.csr"
        alt_names = ",".join(
            f"IP:{name}" if name.replace(".", "").isdigit() else f"DNS:{name}" for name in names
        )
        extensions = directory / "server.ext"
        extensions.write_text(
            f"subjectAltName={alt_names}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid\n"
        )
        _openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", request, "-subj", f"/CN={names[0]}",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", request, "-CA", self.certificate, "-CAkey", self.key,
            "-CAcreateserial", "-out", certificate, "-days", "2", "-extfile", extensions,
        )  # fmt: skip
        return certificate, key


def _openssl(*arguments: str | Path) -> None:
    completed = subprocess.run(
        [OPENSSL, *map(str, arguments)], capture_output=True, text=True, check=False, timeout=60
    )
    if completed.returncode != 0:
        pytest.fail(
            f"openssl {arguments[0]} failed with exit status {completed.returncode}:\n"
            f"{completed.stderr}",
            pytrace=False,
        )


@dataclass(frozen=True)
class TlsServer:
    """A running PostgreSQL that accepts TLS connections over TCP only."""

    cluster: TemporaryCluster
    authority: CertificateAuthority
    """The CA that signed the server's certificate."""
    other_authority: CertificateAuthority
    """A CA that signed nothing the server has: verifying against it must fail."""

    def url(self, database: str, **parameters: str) -> str:
        """URL of ``database`` with libpq query ``parameters``; the host is :data:`TLS_HOST`."""
        base = replace_host(self.cluster.database_url(database), TLS_HOST, self.cluster.port)
        return with_query(base, **parameters) if parameters else base

    def verified_url(self, database: str, *, authority: CertificateAuthority | None = None) -> str:
        """URL of ``database`` that verifies the server against ``authority`` (default: the
        right one), as a managed-PostgreSQL URL does."""
        root = (authority or self.authority).certificate
        return self.url(database, sslmode="verify-full", sslrootcert=str(root))


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsServer]:
    """A PostgreSQL of the module's own that refuses connections without TLS.

    ``pg_hba.conf`` has ``hostssl`` lines only, so a plain TCP connection (and the Unix
    socket) is refused. Module-scoped: only modules that ask for it start it.
    """
    if shutil.which(OPENSSL) is None:
        _missing_tool("the openssl command is not on PATH; it makes the test certificates")
    directory = Path(tempfile.mkdtemp(prefix="graphile-worker-tls-"))
    try:
        authority = CertificateAuthority.create(directory, "ca")
        other = CertificateAuthority.create(directory, "other-ca")
        certificate, key = authority.issue_server_certificate(directory, "localhost", TLS_HOST)
        cluster = TemporaryCluster(
            hba_lines=["hostssl all all 127.0.0.1/32 trust"],
            ssl_cert_file=certificate,
            ssl_key_file=key,
        )
        try:
            cluster.start()
        except PostgresNotFoundError as error:
            # Possible with DATABASE_URL, which needs no local binaries for the other tests.
            _missing_tool(f"the TLS tests start a server of their own: {error}")
        try:
            yield TlsServer(cluster, authority, other)
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# ------------------------------------------------------------------------------ PgBouncer

_PGBOUNCER_LOCATIONS = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer")
_PGBOUNCER_STARTUP_SECONDS = 15.0
_PORT_ATTEMPTS = 5


def find_pgbouncer() -> str | None:
    """Path of the ``pgbouncer`` program: on ``PATH``, or where distributions put it
    (``/usr/sbin`` is not on a normal user's ``PATH``)."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    return next((path for path in _PGBOUNCER_LOCATIONS if os.access(path, os.X_OK)), None)


class PgBouncer:
    """PgBouncer in transaction mode in front of one PostgreSQL, in a temporary directory.

    Every database of the server is reachable under its own name (a ``*`` entry), as the
    user of ``server_url``; clients log in without a password (``auth_type = trust``), and
    PgBouncer logs in to the server with the password of ``server_url``, if it has one.
    """

    def __init__(self, program: str, server_url: str) -> None:
        self._program = program
        self._server = urlsplit(server_url)
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: Path | None = None
        self.port = 0

    def url(self, database_url: str) -> str:
        """``database_url`` (a database on the server) reached through PgBouncer."""
        return replace_host(database_url, "127.0.0.1", self.port)

    def pools(self) -> dict[str, dict[str, Any]]:
        """PgBouncer's ``SHOW POOLS`` by database name: a database is listed once a client
        reached it through PgBouncer, with its ``pool_mode``."""
        import psycopg
        from psycopg.rows import dict_row

        console = replace_host(
            f"postgresql://{self._server.username or 'postgres'}@/pgbouncer", "127.0.0.1", self.port
        )
        # The console speaks the simple query protocol only, which ClientCursor uses.
        with psycopg.connect(
            console, autocommit=True, cursor_factory=psycopg.ClientCursor, row_factory=dict_row
        ) as connection:
            return {row["database"]: row for row in connection.execute("SHOW POOLS")}

    def start(self) -> None:
        """Write the configuration and start PgBouncer on a free port (retried if taken)."""
        user = _server_user()
        directory = Path(tempfile.mkdtemp(prefix="graphile-worker-pgbouncer-"))
        self._directory = directory
        if user is not None:
            os.chown(directory, user.pw_uid, user.pw_gid)
        name = unquote(self._server.username or "postgres")
        password = unquote(self._server.password or "")
        # The auth file quotes with ", doubled inside a value.
        quoted = ['"' + value.replace('"', '""') + '"' for value in (name, password)]
        (directory / "users.txt").write_text(" ".join(quoted) + "\n")
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            self.port = _free_port()
            log = directory / f"pgbouncer-{attempt}.log"
            (directory / "pgbouncer.ini").write_text(self._ini(directory, name, log))
            self._process = subprocess.Popen(
                [self._program, str(directory / "pgbouncer.ini")],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=directory,
                start_new_session=True,
                # PgBouncer refuses to run as root, as PostgreSQL does.
                user=None if user is None else user.pw_uid,
                group=None if user is None else user.pw_gid,
                extra_groups=None if user is None else [],
            )
            if self._wait_until_listening(log, may_retry=attempt < _PORT_ATTEMPTS):
                return

    def _ini(self, directory: Path, user: str, log: Path) -> str:
        host = unquote(self._server.hostname or "127.0.0.1")
        port = self._server.port or 5432
        return (
            "[databases]\n"
            f"* = host={host} port={port} user={user}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {directory}\n"
            "auth_type = trust\n"
            f"auth_file = {directory / 'users.txt'}\n"
            "pool_mode = transaction\n"
            # The admin console (database "pgbouncer") answers SHOW POOLS for the tests.
            f"admin_users = {user}\n"
            # Tests open a pool per driver; no client should ever wait for a server slot.
            "max_client_conn = 500\n"
            "default_pool_size = 20\n"
            # Settings psycopg and asyncpg may send at startup that PgBouncer does not track.
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {log}\n"
            f"pidfile = {directory / 'pgbouncer.pid'}\n"
        )

    def _wait_until_listening(self, log: Path, *, may_retry: bool) -> bool:
        """True once PgBouncer accepts connections; False if another process took the port."""
        assert self._process is not None
        deadline = time.monotonic() + _PGBOUNCER_STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                text = log.read_text(errors="replace") if log.exists() else "(no log)"
                if "Address already in use" in text and may_retry:
                    return False
                pytest.fail(
                    f"pgbouncer exited with status {self._process.returncode} while "
                    f"starting; its log:\n{text}",
                    pytrace=False,
                )
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                # Still running: the listener was PgBouncer, not whoever took the port.
                if self._process.poll() is None:
                    return True
            time.sleep(0.02)
        pytest.fail(
            f"pgbouncer did not listen on port {self.port} within "
            f"{_PGBOUNCER_STARTUP_SECONDS:g}s; its log:\n{log.read_text(errors='replace')}",
            pytrace=False,
        )

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


@pytest.fixture(scope="session")
def pgbouncer(pg_cluster: Cluster) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the session's server, started on first use.

    Skips when PgBouncer is not installed, unless ``CI`` is set: there it fails, so that the
    pooler tests cannot quietly stop running.
    """
    program = find_pgbouncer()
    if program is None:
        _missing_tool(
            "pgbouncer is not installed (apt-get install pgbouncer); it is needed for the "
            "tests that run the worker through PgBouncer in transaction mode"
        )
    bouncer = PgBouncer(program, pg_cluster.admin_url)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def pgbouncer_url(pgbouncer: PgBouncer, database_url: str) -> str:
    """The test's own migrated database (``database_url``) through PgBouncer in transaction
    mode. Pass ``prepared_statements=False`` (``--no-prepared-statements``) to the driver,
    and a direct ``listen_url`` (``database_url``) if the test needs ``LISTEN``."""
    return pgbouncer.url(database_url)
