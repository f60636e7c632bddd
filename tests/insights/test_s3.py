"""The insights receiver's files in a REAL S3-compatible server (SeaweedFS, :mod:`tests.support.s3server`)
and the REAL PostgreSQL: the object store itself (put, ranged get, list, delete, signatures checked),
an upload stored in the bucket (again: the same objects), a bucket that cannot be reached (503,
nothing stored), erasure and retention deleting the objects, and the console's player reading a
range from the bucket."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.insights.capture import ROOM_ID
from tests.insights.test_receiver import Receiver, names, request_of, running
from tests.support import closed_port
from tests.support.s3server import S3Server, s3_server
from voxpulse_console.insights import ObjectStoreError, S3Objects, _wire
from voxpulse_console.insights._store import delete_expired, erase


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
async def bucket(s3: S3Server) -> AsyncIterator[S3Objects]:
    store = S3Objects(s3.settings)
    await store.delete_prefix("")  # each test starts from an empty bucket (the module shares one server)
    yield store
    await store.aclose()


@pytest.fixture
async def receiver(migrated_db: str, tmp_path: Path, s3: S3Server) -> AsyncIterator[Receiver]:
    async for r in running(migrated_db, tmp_path / "insights", objects=S3Objects(s3.settings)):
        yield r


def fixture_parts() -> tuple[bytes, bytes]:
    """(audio, chat) of the captured livekit-agents 1.8.9 recording upload."""
    _, headers, body = request_of("recordings")
    parts = _wire.read_multipart(headers["Content-Type"], body)
    return parts["audio"][1], parts["chat_history"][1]


async def test_put_get_range_delete(bucket: S3Objects) -> None:
    audio, chat = fixture_parts()
    await bucket.put("RM_a/recording.ogg", audio)
    await bucket.put("RM_a/chat_history.json", chat)
    await bucket.put("RM_ab/recording.ogg", b"another call")
    assert await bucket.get("RM_a/recording.ogg") == audio
    assert await bucket.size("RM_a/recording.ogg") == len(audio)
    assert await bucket.get("RM_a/recording.ogg", 100, 199) == audio[100:200]
    assert await bucket.get("RM_a/recording.ogg", len(audio) - 50) == audio[-50:]
    assert await bucket.list_prefix("RM_a/") == ["RM_a/chat_history.json", "RM_a/recording.ogg"]
    await bucket.put("RM_a/recording.ogg", audio)  # the same again: replaced, not doubled
    assert await bucket.list_prefix("RM_a/") == ["RM_a/chat_history.json", "RM_a/recording.ogg"]
    assert await bucket.delete_prefix("RM_a/") == 2
    assert await bucket.get("RM_a/recording.ogg") is None and await bucket.size("RM_a/recording.ogg") is None
    assert await bucket.list_prefix("") == ["RM_ab/recording.ogg"]  # the prefix is a folder, not a stem


async def test_wrong_secret_refused(s3: S3Server, bucket: S3Objects) -> None:
    """The server checks every request's signature: a wrong secret stores nothing."""
    wrong = S3Objects(dataclasses.replace(s3.settings, secret_access_key="not-the-secret"))
    try:
        with pytest.raises(ObjectStoreError, match="HTTP 403"):
            await wrong.put("RM_x/recording.ogg", b"x")
    finally:
        await wrong.aclose()
    assert await bucket.list_prefix("") == []


async def test_upload_stored_in_the_bucket_idempotent(receiver: Receiver, bucket: S3Objects) -> None:
    audio, chat = fixture_parts()
    for kind in ("logs", "recordings"):
        assert (await receiver.post(kind)).status_code == 200, kind
    (first,) = await receiver.rows()
    assert await bucket.list_prefix("") == [f"{ROOM_ID}/chat_history.json", f"{ROOM_ID}/recording.ogg",
                                            f"{ROOM_ID}/waveform.json"]  # the peaks the call page draws
    assert await bucket.get(f"{ROOM_ID}/recording.ogg") == audio and first["audio_bytes"] == len(audio)
    assert await bucket.get(f"{ROOM_ID}/chat_history.json") == chat and first["chat_bytes"] == len(chat)
    assert not receiver.folder.exists()  # nothing on the local disk
    for kind in ("recordings", "logs"):  # a second upload of the same call
        assert (await receiver.post(kind)).status_code == 200, kind
    (again,) = await receiver.rows()
    assert {k: v for k, v in again.items() if k != "updated_at"} == \
        {k: v for k, v in first.items() if k != "updated_at"}
    assert await bucket.list_prefix("") == [f"{ROOM_ID}/chat_history.json", f"{ROOM_ID}/recording.ogg",
                                            f"{ROOM_ID}/waveform.json"]  # the peaks the call page draws
    assert await bucket.get(f"{ROOM_ID}/recording.ogg") == audio


async def test_unreachable_bucket_503_nothing_stored(migrated_db: str, tmp_path: Path, s3: S3Server) -> None:
    with closed_port() as port:
        down = dataclasses.replace(s3.settings, endpoint=f"http://127.0.0.1:{port}")
        async for r in running(migrated_db, tmp_path, objects=S3Objects(down)):
            resp = await r.post("recordings")
            assert resp.status_code == 503 and resp.json() == {"error": "object store unavailable"}
            assert await r.rows() == [] and names(tmp_path) == []


async def test_erasure_and_retention_delete_the_objects(receiver: Receiver, bucket: S3Objects) -> None:
    assert (await receiver.post("recordings")).status_code == 200
    conn = await asyncpg.connect(receiver.dsn)
    try:
        assert await erase(conn, bucket, ROOM_ID, requested_by="dpo", reason="caller asked") == (1, 3)
        assert await bucket.list_prefix("") == [] and await receiver.rows() == []
        audit = await conn.fetch("SELECT call_id, requested_by, rows_removed, files_removed FROM insights_erasures")
        assert [tuple(a) for a in audit] == [(ROOM_ID, "dpo", 1, 3)]
        assert (await receiver.post("recordings")).status_code == 200
        await conn.execute("UPDATE insights_calls SET received_at = now() - interval '31 days'")
        assert await delete_expired(conn, bucket, 30) == [ROOM_ID]
    finally:
        await conn.close()
    assert await bucket.list_prefix("") == [] and await receiver.rows() == []


async def test_failed_bucket_rolls_the_erasure_back(receiver: Receiver, s3: S3Server, bucket: S3Objects) -> None:
    """Erasure with the bucket unreachable fails loudly and deletes nothing (no row without its files)."""
    assert (await receiver.post("recordings")).status_code == 200
    with closed_port() as port:
        down = S3Objects(dataclasses.replace(s3.settings, endpoint=f"http://127.0.0.1:{port}"))
        conn = await asyncpg.connect(receiver.dsn)
        try:
            with pytest.raises(ObjectStoreError):
                await erase(conn, down, ROOM_ID, requested_by="dpo")
            assert await conn.fetchval("SELECT count(*) FROM insights_erasures") == 0
        finally:
            await conn.close()
            await down.aclose()
    assert len(await receiver.rows()) == 1 and len(await bucket.list_prefix(f"{ROOM_ID}/")) == 3


async def test_console_plays_a_range_from_the_bucket(receiver: Receiver, s3: S3Server, tmp_path: Path) -> None:
    from tests.ui.conftest import ADMIN, start_console, stop_console

    audio, _ = fixture_parts()
    assert (await receiver.post("recordings")).status_code == 200
    console = start_console(tmp_path, receiver.dsn, VOXPULSE_INSIGHTS_DIR=str(tmp_path / "empty"), **s3.env())
    try:
        c = console.client(ADMIN)
        path = f"/api/calls/{ROOM_ID}/audio"
        r = c.get(path)
        assert r.status_code == 200 and r.content == audio
        assert r.headers["content-type"] == "audio/ogg" and r.headers["cache-control"] == "no-store"
        r = c.http.get(path, headers={"Range": "bytes=100-199"})
        assert r.status_code == 206 and r.content == audio[100:200]
        assert r.headers["content-range"] == f"bytes 100-199/{len(audio)}"
        r = c.http.get(path, headers={"Range": "bytes=-50"})
        assert r.status_code == 206 and r.content == audio[-50:]
        assert c.http.get(path, headers={"Range": f"bytes={len(audio) + 10}-"}).status_code == 416
        assert c.get("/api/calls/RM_noSuchCall/audio").status_code == 404
        ins = c.get(f"/api/calls/{ROOM_ID}").json()["insights"]
        assert (ins["audio"]["state"], ins["audio"]["url"]) == ("present", path)
        # the transcript comes from the bucket too (the fixture's chat history: the greeting, the caller)
        assert [ln["role"] for ln in ins["transcript"]] == ["assistant", "user"]
        c.close()
    finally:
        stop_console(console)
