"""``graphile-worker`` commands given a verify-full URL, by ``-c`` and by ``DATABASE_URL``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..cli.conftest import CliCall, assert_one_line_error
from ..cli.test_run import TASKS_SOURCE
from ..conftest import RUNTIME_DRIVER_PAIRS

if TYPE_CHECKING:
    from tests._servers import TlsServer


@pytest.fixture
def tasks_file(tmp_path: Path) -> Path:
    # In-process imports are cached for the session: every test needs a module of its own.
    path = tmp_path / f"tls_tasks_{uuid.uuid4().hex[:8]}.py"
    path.write_text(TASKS_SOURCE)
    return path


@pytest.mark.parametrize(
    ("runtime", "driver"),
    RUNTIME_DRIVER_PAIRS,
    ids=[f"{runtime}-{driver}" for runtime, driver in RUNTIME_DRIVER_PAIRS],
)
def test_migrate_add_and_run_with_a_verified_url(
    cli: CliCall,
    runtime: str,
    driver: str,
    tls_server: TlsServer,
    tls_database: str,
    tasks_file: Path,
    tmp_path: Path,
) -> None:
    url = tls_server.verified_url(tls_database)
    output = tmp_path / "out.txt"
    payload = json.dumps({"path": str(output), "text": "over tls"})

    migrated = cli("migrate", "-c", url, "--driver", driver)
    assert "applied 20 migrations" in migrated.stdout
    cli("add", "cli_write", payload, "--driver", driver, env={"DATABASE_URL": url})
    ran = cli(
        "run", "--once", "--tasks", str(tasks_file), "-c", url,
        "--driver", driver, "--runtime", runtime,
    )  # fmt: skip
    assert "1 completed" in ran.stdout
    assert output.read_text() == "over tls\n"


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg", "psycopg-threaded", "psycopg-anyio"])
def test_the_wrong_authority_is_one_clear_line(
    cli: CliCall, driver: str, tls_server: TlsServer, tls_database: str
) -> None:
    url = tls_server.verified_url(tls_database, authority=tls_server.other_authority)
    result = cli("migrate", "-c", url, "--driver", driver, expect=1)
    assert_one_line_error(
        result,
        f"PostgreSQL at 127.0.0.1:{tls_server.cluster.port} (database {tls_database!r})",
        "TLS certificate verification failed",
        "sslrootcert",
    )
