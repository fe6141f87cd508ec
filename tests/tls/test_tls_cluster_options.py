"""The options a TLS-only temporary cluster is built with, checked before anything starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from graphile_worker.embedded import EmbeddedPostgresError, TemporaryCluster
from graphile_worker.errors import ConfigurationError

if TYPE_CHECKING:
    from pathlib import Path


def test_a_certificate_needs_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="ssl_cert_file and ssl_key_file go together"):
        TemporaryCluster(ssl_cert_file=tmp_path / "server.crt")


def test_hba_lines_are_a_list(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="list of pg_hba.conf lines"):
        TemporaryCluster(hba_lines="hostssl all all 127.0.0.1/32 trust")


def test_an_unreadable_certificate_is_named_before_anything_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing.crt"
    cluster = TemporaryCluster(
        base_dir=tmp_path, ssl_cert_file=missing, ssl_key_file=tmp_path / "missing.key"
    )
    with pytest.raises(EmbeddedPostgresError, match="could not read") as caught:
        cluster.start()
    assert str(missing) in str(caught.value)
    assert not cluster.running
    assert [path.name for path in tmp_path.iterdir()] == []
