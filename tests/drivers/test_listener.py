"""The shared LISTEN pieces that need no database: back-off and statement text."""

from __future__ import annotations

import itertools

import pytest

from graphile_worker.drivers._listener import (
    listen_statement,
    reconnect_delays,
    validate_channels,
)
from graphile_worker.errors import ConfigurationError


def test_first_reconnect_is_immediate_then_backs_off_to_the_cap() -> None:
    delays = list(itertools.islice(reconnect_delays(first=0.1, cap=2.0, jitter=0.0), 8))
    assert delays == [0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


def test_jitter_only_shortens_delays() -> None:
    for _ in range(50):
        delays = list(itertools.islice(reconnect_delays(first=1.0, cap=4.0, jitter=0.5), 5))
        for delay, ceiling in zip(delays[1:], [1.0, 2.0, 4.0, 4.0], strict=True):
            assert ceiling * 0.5 <= delay <= ceiling


def test_listen_statement_quotes_channels() -> None:
    assert listen_statement(["jobs:insert", 'we"ird']) == ('LISTEN "jobs:insert"; LISTEN "we""ird"')


def test_channels_are_deduplicated_in_order() -> None:
    assert validate_channels(["b", "a", "b"]) == ("b", "a")


@pytest.mark.parametrize("channels", [(), ("",), ("a\x00b",), (42,)])
def test_bad_channels(channels: tuple[object, ...]) -> None:
    with pytest.raises(ConfigurationError):
        validate_channels(channels)  # type: ignore[arg-type]
