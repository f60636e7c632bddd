"""The insights receiver on the REAL PostgreSQL: the committed capture of livekit-agents 1.8.9
replayed (with fresh tokens), live uploads from livekit-agents' own code, and the bad inputs."""

from __future__ import annotations

import datetime as dt
import json
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.insights.capture import (
    FIXTURE_KEY,
    FIXTURE_SECRET,
    FIXTURES,
    JOB_ID,
    REAL_CALL,
    ROOM_ID,
    make_ogg,
    run_agent,
)
from tests.insights.test_wire import token
from voxpulse_console.insights import InsightsConfig, start
from voxpulse_console.insights._store import delete_expired, erase

MANIFEST = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
Upload = Callable[..., Any]


def names(folder: Path) -> list[str]:
    """The files in ``folder`` (none when it does not exist)."""
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def request_of(kind: str) -> tuple[str, dict[str, str], bytes]:
    (req,) = [r for r in MANIFEST["requests"] if r["path"].split("/")[2] == kind]
    headers = {k: v for k, v in req["headers"].items() if k.lower() != "content-length"}
    return req["path"], headers, (FIXTURES / req["body"]).read_bytes()


class Receiver:
    def __init__(self, url: str, folder: Path, dsn: str) -> None:
        self.url, self.folder, self.dsn = url, folder, dsn

    async def post(self, kind: str, *, body: bytes | None = None, auth: str | None = "fresh") -> httpx.Response:
        path, headers, fixture_body = request_of(kind)
        if auth is not None:
            headers["Authorization"] = f"Bearer {token()}" if auth == "fresh" else auth
        async with httpx.AsyncClient() as client:
            return await client.post(self.url + path, content=fixture_body if body is None else body,
                                     headers=headers)

    async def rows(self) -> list[dict[str, Any]]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return [dict(r) for r in await conn.fetch("SELECT * FROM insights_calls ORDER BY call_id")]
        finally:
            await conn.close()


async def running(dsn: str, folder: Path, **kw: Any) -> AsyncIterator[Receiver]:
    conn = await asyncpg.connect(dsn)
    try:  # each test starts from no calls (the module shares one database)
        await conn.execute("DELETE FROM insights_calls WHERE true")
        await conn.execute("DELETE FROM insights_erasures WHERE true")
    except asyncpg.UndefinedTableError:
        pass
    finally:
        await conn.close()
    config = InsightsConfig(dsn=dsn, keys={FIXTURE_KEY: FIXTURE_SECRET}, folder=folder,
                            **{"keep_audio": True, **kw})
    runner = await start(config, "127.0.0.1:0")
    host, port = runner.addresses[0][:2]
    try:
        yield Receiver(f"http://{host}:{port}", folder, dsn)
    finally:
        await runner.cleanup()


@pytest.fixture
async def receiver(migrated_db: str, tmp_path: Path) -> AsyncIterator[Receiver]:
    async for r in running(migrated_db, tmp_path / "insights"):
        yield r


async def test_livekit_capture_stored(receiver: Receiver) -> None:
    for kind in ("traces", "metrics", "logs", "recordings"):
        resp = await receiver.post(kind)
        assert resp.status_code == 200, (kind, resp.text)
    assert resp.json() == {"call_id": ROOM_ID, "audio_broken": False}
    (row,) = await receiver.rows()
    assert (row["call_id"], row["room_id"], row["job_id"]) == (ROOM_ID, ROOM_ID, JOB_ID)
    assert row["duration_s"] == 5.0 and row["started_at"] is not None
    assert row["audio_seconds"] == pytest.approx(0.4, abs=0.03) and not row["audio_broken"]
    assert row["outcome"] == "success" and row["outcome_reason"] == "booked" and row["chat_items"] == 2
    assert json.loads(row["evaluations"])["conciseness"]["verdict"] == "fail"
    assert json.loads(row["tags"])["language:ru"] == {"confidence": 0.9}
    audio, chat = receiver.folder / ROOM_ID / "recording.ogg", receiver.folder / ROOM_ID / "chat_history.json"
    assert audio.stat().st_size == row["audio_bytes"] > 0 and chat.stat().st_size == row["chat_bytes"] > 0
    assert stat.S_IMODE(audio.stat().st_mode) == 0o600 and stat.S_IMODE(chat.stat().st_mode) == 0o600
    assert [i["content"] for i in json.loads(chat.read_text())["items"]][1] == ["Хочу записаться на шиномонтаж"]
    assert "380501234567" not in json.dumps({k: str(v) for k, v in row.items()})  # the room name is not kept


async def test_a_real_calls_upload_stored_once(receiver: Receiver) -> None:
    """Every request a live livekit-agents 1.8.9 worker sent on a real call through the stack's LiveKit
    server (tests/fixtures/livekit_observability_v0_real: a stock agent with ``record=True``, two judges
    and a tagger), replayed in their order with fresh tokens, twice: one call, kept whole, once."""
    manifest = json.loads((REAL_CALL / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["livekit_agents"] == MANIFEST["livekit_agents"]
    for _ in range(2):  # LiveKit's exporters retry: a repeated request must change nothing
        async with httpx.AsyncClient() as client:
            for req in manifest["requests"]:
                headers = {k: v for k, v in req["headers"].items() if k.lower() != "content-length"}
                headers["Authorization"] = f"Bearer {token()}"
                resp = await client.post(receiver.url + req["path"], content=(REAL_CALL / req["body"]).read_bytes(),
                                         headers=headers)
                assert resp.status_code == 200, (req["path"], resp.text)
        (row,) = await receiver.rows()
        assert str(row["call_id"]).startswith("RM_") and row["room_id"] == row["call_id"]
        assert not row["audio_broken"] and row["audio_seconds"] > 20, row
        assert row["outcome"] == "success"
        verdicts = {k: v["verdict"] for k, v in json.loads(row["evaluations"]).items()}
        assert verdicts == {"greeted": "pass", "booked": "fail"}
        assert "zero-code" in json.loads(row["tags"])
        chat = json.loads((receiver.folder / row["call_id"] / "chat_history.json").read_text())
        assert [i["role"] for i in chat["items"] if i["type"] == "message"][:2] == ["assistant", "user"]


async def test_repeated_upload_idempotent(receiver: Receiver) -> None:
    for kind in ("logs", "recordings"):
        assert (await receiver.post(kind)).status_code == 200
    first = await receiver.rows()
    files = {p.name: p.read_bytes() for p in (receiver.folder / ROOM_ID).iterdir()}
    for kind in ("recordings", "logs"):
        assert (await receiver.post(kind)).status_code == 200
    again = await receiver.rows()
    drop = ("updated_at",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in again] == \
        [{k: v for k, v in r.items() if k not in drop} for r in first]
    assert {p.name: p.read_bytes() for p in (receiver.folder / ROOM_ID).iterdir()} == files


@pytest.mark.parametrize("kind", ["traces", "logs", "metrics", "recordings"])
@pytest.mark.parametrize("auth", [
    None, "Bearer x.y.z", "Basic Zm9vOmJhcg==",
    "Bearer " + token(secret="a-different-secret-of-enough-length-000"),
    "Bearer " + token(ttl=dt.timedelta(minutes=-5)),
    "Bearer " + token(write=False),
    "Bearer " + token(key="APIunknown"),
])
async def test_bad_token_401_nothing_stored(receiver: Receiver, kind: str, auth: str | None) -> None:
    resp = await receiver.post(kind, auth=auth)
    assert resp.status_code == 401
    assert await receiver.rows() == [] and not receiver.folder.exists()


async def test_body_over_limit_413(migrated_db: str, tmp_path: Path) -> None:
    async for r in running(migrated_db, tmp_path, max_body=1024):
        for kind in ("recordings", "logs"):
            assert (await r.post(kind)).status_code == 413, kind
        assert await r.rows() == [] and names(tmp_path) == []


async def test_corrupt_ogg_kept_broken(receiver: Receiver) -> None:
    _, _, body = request_of("recordings")
    at = body.index(b"OggS") + 100
    resp = await receiver.post("recordings", body=body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1:])
    assert resp.status_code == 200 and resp.json()["audio_broken"] is True
    (row,) = await receiver.rows()
    assert row["audio_broken"] and "checksum mismatch" in row["audio_problem"] and row["audio_seconds"] is None
    assert (receiver.folder / ROOM_ID / "recording.ogg").stat().st_size == row["audio_bytes"]


async def test_not_a_recording_400(receiver: Receiver) -> None:
    assert (await receiver.post("recordings", body=b"garbage")).status_code == 400
    assert await receiver.rows() == []


async def test_audio_off_dropped(migrated_db: str, tmp_path: Path) -> None:
    async for r in running(migrated_db, tmp_path, keep_audio=False):
        assert (await r.post("recordings")).status_code == 200
        (row,) = await r.rows()
        assert row["audio_dropped"] and row["audio_bytes"] == 0 and row["chat_bytes"] > 0
        assert names(tmp_path / ROOM_ID) == ["chat_history.json"]


async def test_erasure_audited(receiver: Receiver) -> None:
    for kind in ("logs", "recordings"):
        assert (await receiver.post(kind)).status_code == 200
    conn = await asyncpg.connect(receiver.dsn)
    try:
        # the recording, its peaks and the chat history
        assert await erase(conn, receiver.folder, ROOM_ID, requested_by="dpo", reason="caller asked") == (1, 3)
        assert await erase(conn, receiver.folder, ROOM_ID, requested_by="dpo") == (0, 0)
        audit = await conn.fetch("SELECT * FROM insights_erasures ORDER BY id")
    finally:
        await conn.close()
    assert await receiver.rows() == [] and not (receiver.folder / ROOM_ID).exists()
    assert [(a["call_id"], a["requested_by"], a["rows_removed"], a["files_removed"]) for a in audit] == \
        [(ROOM_ID, "dpo", 1, 3), (ROOM_ID, "dpo", 0, 0)]


async def test_retention_deletes_old_calls(receiver: Receiver) -> None:
    assert (await receiver.post("recordings")).status_code == 200
    conn = await asyncpg.connect(receiver.dsn)
    try:
        assert await delete_expired(conn, receiver.folder, 30) == []
        await conn.execute("UPDATE insights_calls SET received_at = now() - interval '31 days'")
        assert await delete_expired(conn, receiver.folder, 0) == []  # 0: kept until erased
        assert await delete_expired(conn, receiver.folder, 30) == [ROOM_ID]
    finally:
        await conn.close()
    assert await receiver.rows() == [] and not (receiver.folder / ROOM_ID).exists()


async def test_live_upload_from_livekit_agents(receiver: Receiver, tmp_path: Path) -> None:
    """livekit-agents' own code uploads one call to the receiver: every request accepted, the call stored."""
    ogg = tmp_path / "live.ogg"
    make_ogg(ogg, seconds=1.0)
    import asyncio

    await asyncio.to_thread(run_agent, receiver.url, ogg=ogg, room_id="RM_liveRoom", job_id="AJ_liveJob")
    (row,) = await receiver.rows()
    assert row["call_id"] == "RM_liveRoom" and row["job_id"] == "AJ_liveJob"
    assert row["audio_seconds"] == pytest.approx(1.0, abs=0.03) and not row["audio_broken"]
    assert row["outcome"] == "success" and json.loads(row["evaluations"])["task_completion"]["verdict"] == "pass"
    assert (receiver.folder / "RM_liveRoom" / "recording.ogg").read_bytes() == ogg.read_bytes()
