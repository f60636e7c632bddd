"""Where a call's insights live: files under ``<call_id>/`` in the object store (:mod:`._objects`: the
local disk, ``<folder>/<call_id>/`` mode 0600, or an S3 bucket) and one ``insights_calls`` row;
retention by age and erasure by ``call_id`` (recorded in ``insights_erasures``).

The files are written before the row, so a store that fails (:class:`ObjectStoreError`) leaves no row
that names them; erasure and retention delete the files inside the transaction that deletes the rows,
so a store that fails there rolls the deletion back (and the next pass retries it).

Every write is idempotent: a repeated upload of the same call rewrites the same files and upserts the
same row (tags and verdicts are merged by name).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from voxpulse_console.insights._objects import LocalObjects, ObjectStore, write_file
from voxpulse_console.insights._waveform import WAVEFORM_FILE
from voxpulse_console.insights._wire import CallEvents, OggCheck, RecordingHeader, call_id_for

__all__ = ["AUDIO_FILE", "CHAT_FILE", "NewEvents", "delete_expired", "erase", "objects", "save_events",
           "save_recording", "write_file"]

AUDIO_FILE: Final = "recording.ogg"
CHAT_FILE: Final = "chat_history.json"


def objects(where: Path | ObjectStore) -> ObjectStore:
    """``where`` as an object store: a folder is the local disk's."""
    return LocalObjects(where) if isinstance(where, Path) else where


_UPSERT_RECORDING: Final = """
INSERT INTO insights_calls (call_id, room_id, job_id, started_at, duration_s, simulated, redaction_enabled,
                            audio_bytes, audio_dropped, audio_broken, audio_problem, audio_seconds,
                            chat_bytes)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (call_id) DO UPDATE SET
    room_id = EXCLUDED.room_id, job_id = EXCLUDED.job_id, started_at = EXCLUDED.started_at,
    duration_s = EXCLUDED.duration_s, simulated = EXCLUDED.simulated,
    redaction_enabled = EXCLUDED.redaction_enabled, audio_bytes = EXCLUDED.audio_bytes,
    audio_dropped = EXCLUDED.audio_dropped, audio_broken = EXCLUDED.audio_broken,
    audio_problem = EXCLUDED.audio_problem, audio_seconds = EXCLUDED.audio_seconds,
    chat_bytes = EXCLUDED.chat_bytes, updated_at = now()
"""


async def save_recording(
    conn: Any, folder: Path | ObjectStore, header: RecordingHeader, *, chat: bytes | None, audio: bytes | None,
    ogg: OggCheck | None, keep_audio: bool, wave: bytes | None = None,
) -> str:
    """Store one ``recordings/v0`` upload (and the kept audio's ``wave``form, :mod:`._waveform`); returns
    its call_id. ValueError when the header names no usable room or job id."""
    call_id = call_id_for(header.room_id, header.job_id)
    if call_id is None:
        raise ValueError("the header names neither a room id nor a job id")
    store = objects(folder)
    if chat is not None:
        await store.put(f"{call_id}/{CHAT_FILE}", chat)
    kept = audio is not None and keep_audio
    if kept and audio is not None:
        await store.put(f"{call_id}/{AUDIO_FILE}", audio)
        if wave is not None:
            await store.put(f"{call_id}/{WAVEFORM_FILE}", wave)
    await conn.execute(
        _UPSERT_RECORDING, call_id, header.room_id or None, header.job_id or None, header.start_time,
        header.duration_ms / 1000 if header.duration_ms else None, header.simulated, header.redaction_enabled,
        len(audio) if kept and audio is not None else 0, audio is not None and not keep_audio,
        bool(kept and ogg is not None and not ogg.ok), ogg.problem if kept and ogg is not None else None,
        ogg.seconds if kept and ogg is not None else None, len(chat) if chat is not None else 0,
    )
    return call_id


_UPSERT_EVENTS: Final = """
INSERT INTO insights_calls (call_id, room_id, job_id, agent_name, sdk_version, tags, evaluations, outcome,
                            outcome_reason, chat_items)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10)
ON CONFLICT (call_id) DO UPDATE SET
    room_id = COALESCE(insights_calls.room_id, EXCLUDED.room_id),
    job_id = COALESCE(insights_calls.job_id, EXCLUDED.job_id),
    agent_name = COALESCE(EXCLUDED.agent_name, insights_calls.agent_name),
    sdk_version = COALESCE(EXCLUDED.sdk_version, insights_calls.sdk_version),
    tags = insights_calls.tags || EXCLUDED.tags,
    evaluations = insights_calls.evaluations || EXCLUDED.evaluations,
    outcome = COALESCE(EXCLUDED.outcome, insights_calls.outcome),
    outcome_reason = CASE WHEN EXCLUDED.outcome IS NULL THEN insights_calls.outcome_reason
                          ELSE EXCLUDED.outcome_reason END,
    chat_items = GREATEST(insights_calls.chat_items, EXCLUDED.chat_items),
    updated_at = now()
"""


@dataclass(slots=True)
class NewEvents:
    """What a logs upload added that no earlier upload of the same calls had stored: the receiver's
    metrics count these, so a repeated upload counts nothing."""

    verdicts: list[tuple[str, str]] = field(default_factory=list)  # (judge, verdict)
    outcomes: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


def _verdict(evaluation: Any) -> str | None:
    verdict = evaluation.get("verdict") if isinstance(evaluation, dict) else None
    return verdict if isinstance(verdict, str) else None


def _stored(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # asyncpg returns jsonb as text unless a codec is set
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


async def save_events(conn: Any, calls: dict[str, CallEvents]) -> NewEvents:
    """Merge what log records said about each call into its row (idempotent: merged by name); returns
    what is new: a judge's first verdict on the call, the call's first outcome, its tags not seen before.

    The row is created first and locked (``FOR UPDATE``), so two uploads of one call at once see each
    other's writes and count each verdict once between them."""
    new = NewEvents()
    async with conn.transaction():
        for call_id, ev in calls.items():
            await conn.execute("INSERT INTO insights_calls (call_id) VALUES ($1) ON CONFLICT (call_id) DO NOTHING",
                               call_id)
            before = await conn.fetchrow(
                "SELECT tags, evaluations, outcome FROM insights_calls WHERE call_id = $1 FOR UPDATE", call_id)
            tags, evaluations = _stored(before["tags"]), _stored(before["evaluations"])
            for judge, evaluation in ev.evaluations.items():
                verdict = _verdict(evaluation)
                if verdict is not None and _verdict(evaluations.get(judge)) is None:
                    new.verdicts.append((judge, verdict))
            if ev.outcome is not None and before["outcome"] is None:
                new.outcomes.append(ev.outcome)
            new.tags += [tag for tag in ev.tags if tag not in tags]
            await conn.execute(
                _UPSERT_EVENTS, call_id, ev.room_id, ev.job_id, ev.agent_name, ev.sdk_version,
                json.dumps(ev.tags, sort_keys=True, default=str),
                json.dumps(ev.evaluations, sort_keys=True, default=str), ev.outcome, ev.outcome_reason,
                ev.chat_items,
            )
    return new


async def _remove(folder: Path | ObjectStore, call_id: str) -> int:
    if call_id_for(call_id, None) != call_id:
        return 0
    return await objects(folder).delete_prefix(f"{call_id}/")


async def erase(
    conn: Any, folder: Path | ObjectStore, call_id: str, *, requested_by: str, reason: str | None = None,
) -> tuple[int, int]:
    """Delete one call's audio, transcript and row (an erasure request), recorded in
    ``insights_erasures`` whatever was found. Returns (rows removed, files removed)."""
    async with conn.transaction():
        result = await conn.execute("DELETE FROM insights_calls WHERE call_id = $1", call_id)
        rows = int(str(result).rsplit(" ", 1)[-1] or 0)
        files = await _remove(folder, call_id)
        await conn.execute(
            "INSERT INTO insights_erasures (call_id, requested_by, reason, rows_removed, files_removed)"
            " VALUES ($1, $2, $3, $4, $5)", call_id, requested_by, reason, rows, files,
        )
    return rows, files


async def delete_expired(conn: Any, folder: Path | ObjectStore, days: float, *,
                         now: dt.datetime | None = None) -> list[str]:
    """Delete the calls received more than ``days`` ago (rows and files); returns their call_ids.
    ``days`` <= 0 keeps everything. A store that fails part way rolls the rows' deletion back."""
    if days <= 0:
        return []
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)
    async with conn.transaction():
        rows = await conn.fetch("DELETE FROM insights_calls WHERE received_at < $1 RETURNING call_id", cutoff)
        gone = [str(r["call_id"]) for r in rows]
        for call_id in gone:
            await _remove(folder, call_id)
    return gone
