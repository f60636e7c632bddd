"""tests.support: the one reading of VOXPULSE_REQUIRE_<WHAT>, and the ports and polls the suite relies on."""

from __future__ import annotations

import socket

import pytest

from tests.support import closed_port, database_url, poll, required, throwaway_database, unavailable


@pytest.mark.parametrize("value", ["", "0", "false", "False", "no", "off", " 0 "])
def test_requirement_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("VOXPULSE_REQUIRE_LIVEKIT", value)
    assert not required("LIVEKIT")
    with pytest.raises(pytest.skip.Exception, match="no server"):
        unavailable("LIVEKIT", "no server")


@pytest.mark.parametrize("value", ["1", "true", "yes", "on", "ci"])
def test_requirement_on(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("VOXPULSE_REQUIRE_BROWSER", value)
    assert required("browser")  # the name is case-insensitive
    with pytest.raises(pytest.fail.Exception, match=r"no chromium \(VOXPULSE_REQUIRE_BROWSER is set\)"):
        unavailable("BROWSER", "no chromium")


def test_unset_requirement_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOXPULSE_REQUIRE_STACK", raising=False)
    assert not required("STACK")


def test_closed_port_refuses_connections() -> None:
    with closed_port() as port, pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_poll_returns_the_value_or_none_at_the_deadline() -> None:
    values = iter([None, 0, "ready"])
    value, _ = poll(lambda: next(values), deadline_s=5, every_s=0)
    assert value == "ready"
    value, waited = poll(lambda: None, deadline_s=0, every_s=0)
    assert value is None and waited >= 0


@pytest.mark.db
def test_a_throwaway_database_is_dropped_with_a_session_left_on_it() -> None:
    """A test that leaves a session on its database (a console still closing) does not keep the
    database: drop_database ends this role's sessions on it, then drops it without FORCE (which an
    autovacuum worker busy there makes PostgreSQL refuse to the tests' user)."""
    import asyncio

    import asyncpg

    async def left_open(dsn: str) -> asyncpg.Connection:
        conn = await asyncpg.connect(dsn)
        await conn.execute("CREATE TABLE t (x int)")
        return conn

    async def exists(name: str) -> bool:
        conn = await asyncpg.connect(database_url())
        try:
            return bool(await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name))
        finally:
            await conn.close()

    loop = asyncio.new_event_loop()
    try:
        with throwaway_database("vp_drop", migrate=False) as dsn:
            name = dsn.rsplit("/", 1)[1].split("?")[0]
            leftover = loop.run_until_complete(left_open(dsn))
            assert loop.run_until_complete(exists(name))
        assert not loop.run_until_complete(exists(name))
        leftover.terminate()
    finally:
        loop.close()
