"""create_driver: choosing a driver for the runtime, URLs, options and optional packages."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from graphile_worker.drivers import DRIVER_NAMES, DatabaseDriver, create_driver
from graphile_worker.errors import ConfigurationError, DatabaseError, DriverUnavailableError

pytestmark = pytest.mark.anyio

ASYNCIO_ONLY = ("asyncpg", "psycopg")


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter, so that its imports start from nothing."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, **env},
    )


class TestChoosingADriver:
    async def test_auto_matches_the_runtime(self, anyio_backend: str, database_url: str) -> None:
        async with create_driver(database_url) as driver:
            expected = "AsyncpgDriver" if anyio_backend == "asyncio" else "PsycopgAnyioDriver"
            assert type(driver).__name__ == expected
            assert await driver.fetchval("select 1") == 1

    @pytest.mark.parametrize(
        ("name", "implementation"),
        [
            ("psycopg-threaded", "PsycopgThreadedDriver"),
            ("psycopg_threaded", "PsycopgThreadedDriver"),
            (" Psycopg-Threaded ", "PsycopgThreadedDriver"),
            ("psycopg-anyio", "PsycopgAnyioDriver"),
            ("psycopg_anyio", "PsycopgAnyioDriver"),
            (" Psycopg-Anyio ", "PsycopgAnyioDriver"),
        ],
    )
    async def test_spellings_of_the_drivers_that_run_anywhere(
        self, anyio_backend: str, database_url: str, name: str, implementation: str
    ) -> None:
        async with create_driver(database_url, driver=name) as driver:
            assert type(driver).__name__ == implementation

    @pytest.mark.parametrize("name", ASYNCIO_ONLY)
    async def test_asyncio_only_drivers(
        self, anyio_backend: str, database_url: str, name: str
    ) -> None:
        if anyio_backend == "trio":
            with pytest.raises(DriverUnavailableError, match="psycopg-threaded") as caught:
                await create_driver(database_url, driver=name)
            assert "asyncio" in str(caught.value)
            assert "trio" in str(caught.value)
        else:
            async with create_driver(database_url, driver=name) as driver:
                assert await driver.fetchval("select 1") == 1

    def test_unknown_driver_is_refused_before_connecting(self) -> None:
        with pytest.raises(ConfigurationError, match="'psycopg-threaded'"):
            create_driver("postgresql://localhost/app", driver="pg8000")

    def test_driver_names(self) -> None:
        assert set(DRIVER_NAMES) == {
            "auto",
            "asyncpg",
            "psycopg",
            "psycopg-threaded",
            "psycopg-anyio",
        }

    async def test_await_returns_an_open_driver(
        self, anyio_backend: str, database_url: str
    ) -> None:
        driver = await create_driver(database_url)
        try:
            assert isinstance(driver, DatabaseDriver)
            assert await driver.fetchval("select 1") == 1
        finally:
            await driver.aclose()

    async def test_driver_is_its_own_context_manager(
        self, database_url: str, driver_name: str
    ) -> None:
        opened = await create_driver(database_url, driver=driver_name)
        async with opened as driver:
            assert driver is opened
            assert await driver.fetchval("select 1") == 1
        with pytest.raises(DatabaseError):
            await opened.fetchval("select 1")


class TestOptions:
    @pytest.mark.parametrize(
        "scheme", ["postgres://", "postgresql+asyncpg://", "postgresql+psycopg://"]
    )
    async def test_sqlalchemy_and_heroku_urls(
        self, database_url: str, driver_name: str, scheme: str
    ) -> None:
        url = scheme + database_url.split("://", 1)[1]
        async with create_driver(url, driver=driver_name) as driver:
            assert await driver.fetchval("select current_database()") in database_url

    async def test_database_url_from_the_environment(
        self, database_url: str, driver_name: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DATABASE_URL", database_url)
        async with create_driver(driver=driver_name) as driver:
            assert await driver.fetchval("select current_database()") in database_url

    def test_no_url_and_no_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
        with pytest.raises(ConfigurationError, match="DATABASE_URL"):
            create_driver()

    @pytest.mark.parametrize(("min_size", "max_size"), [(-1, 10), (5, 2), (0, 0)])
    def test_bad_pool_sizes(self, min_size: int, max_size: int) -> None:
        with pytest.raises(ConfigurationError):
            create_driver("postgresql://localhost/app", min_size=min_size, max_size=max_size)

    async def test_without_prepared_statements(self, database_url: str, driver_name: str) -> None:
        async with create_driver(
            database_url, driver=driver_name, prepared_statements=False, max_size=1
        ) as driver:
            for n in range(12):  # past psycopg's prepare threshold and asyncpg's first use
                assert await driver.fetchval("select CAST(:n AS int)", {"n": n}) == n
            assert await driver.fetchval("select count(*) from pg_prepared_statements") == 0

    async def test_with_prepared_statements(self, database_url: str, driver_name: str) -> None:
        async with create_driver(database_url, driver=driver_name, max_size=1) as driver:
            for n in range(12):
                assert await driver.fetchval("select CAST(:n AS int) + 0", {"n": n}) == n
            assert await driver.fetchval("select count(*) from pg_prepared_statements") > 0


class TestOptionalPackages:
    def test_importing_the_package_imports_no_driver(self) -> None:
        result = _run_python(
            """
            import sys
            import graphile_worker
            import graphile_worker.drivers
            from graphile_worker.drivers import create_driver, DatabaseDriver
            loaded = sorted(
                name for name in sys.modules
                if name.split(".")[0] in {"asyncpg", "psycopg", "psycopg_pool"}
            )
            print(loaded)
            """
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[]"

    def test_driver_classes_are_exported_lazily(self) -> None:
        result = _run_python(
            """
            import sys
            from graphile_worker.drivers import PsycopgThreadedDriver
            print(PsycopgThreadedDriver.__name__, "asyncpg" in sys.modules)
            """
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["PsycopgThreadedDriver", "False"]

    def test_missing_package_names_the_extra(self, database_url: str) -> None:
        result = _run_python(
            """
            import sys
            sys.modules["asyncpg"] = None  # behave as if asyncpg were not installed
            import anyio
            from graphile_worker.drivers import create_driver
            from graphile_worker.errors import DriverUnavailableError

            async def main(url):
                try:
                    await create_driver(url, driver="asyncpg")
                except DriverUnavailableError as error:
                    print("unavailable:", error)
                async with create_driver(url) as driver:
                    print("auto:", type(driver).__name__)

            anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else None)
            """,
            DATABASE_URL=database_url,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].startswith("unavailable:")
        assert "pip install 'graphile-worker[asyncpg]'" in lines[0]
        assert lines[1] == "auto: PsycopgAnyioDriver"

    def test_nothing_installed_for_trio(self, database_url: str) -> None:
        result = _run_python(
            """
            import sys
            sys.modules["psycopg"] = None
            sys.modules["psycopg_pool"] = None
            import anyio
            from graphile_worker.drivers import create_driver
            from graphile_worker.errors import DriverUnavailableError

            async def main():
                try:
                    await create_driver()
                except DriverUnavailableError as error:
                    print(error)

            anyio.run(main, backend="trio")
            """,
            DATABASE_URL=database_url,
        )
        assert result.returncode == 0, result.stderr
        assert "pip install 'graphile-worker[psycopg]'" in result.stdout
