"""Agent insights on the call page: what the insights receiver (:mod:`voxpulse_console.insights`) kept
about a call -- tags, LiveKit's outcome, the judges' verdicts, the recording -- as the console shows it.

* :func:`present_insights` turns the call's ``insights_calls`` row into the call view's ``insights``
  (personal data masked unless the user may see it; the recording placed on the call's time axis);
* :func:`api_call_audio` serves ``<VOXPULSE_INSIGHTS_DIR>/<call_id>/recording.ogg``, or that object of
  the receiver's S3 bucket (``VOXPULSE_INSIGHTS_S3_*``: a ranged GET per request), with Range requests
  (so the player seeks; ``Cache-Control: no-store``) to users with the ``audio`` permission only: a
  recording is personal data of its own, apart from viewing the call (403 without it).

A call id reaches the filesystem only when it is one path segment of the receiver's own alphabet
(:func:`voxpulse_console.insights.call_id_for`: ``[A-Za-z0-9_.-]``, never ``.`` or ``..``) and the
resolved file lies inside the receiver's folder; anything else is a 400 or a 404, never a file.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from aiohttp import web

from voxpulse_console.insights import call_id_for
from voxpulse_console.insights._objects import ObjectStoreError, S3Objects, S3Settings
from voxpulse_console.ui.callview import mask_json, mask_text
from voxpulse_console.ui.filters import BadRequest
from voxpulse_console.ui.middleware import _console, _error, _session

__all__ = ["AUDIO_FILE", "CHAT_FILE", "api_call_audio", "api_call_waveform", "audio_path", "chat_history",
           "present_insights", "transcript"]

AUDIO_FILE: Final = "recording.ogg"  # the receiver's name (voxpulse_console.insights._store.AUDIO_FILE)
CHAT_FILE: Final = "chat_history.json"  # ... and its CHAT_FILE: LiveKit's ChatContext.to_dict()
WAVEFORM_FILE: Final = "waveform.json"  # ... and its peaks (voxpulse_console.insights._waveform.WAVEFORM_FILE)
#: the roles of the chat history that were said aloud
SPOKEN: Final = ("user", "assistant")
#: LiveKit's recorder (livekit-agents 1.8, voice/recorder_io): a stereo Ogg Opus file, the caller's
#: audio on the first channel, the agent's on the second, both on the recording's one timeline
CHANNELS: Final = ("caller", "agent")


def audio_path(folder: Path | None, call_id: str) -> Path | None:
    """The call's recording in the receiver's ``folder``, or None: no folder, a call id that is not one
    safe path segment, a path that resolves outside the folder (a link), or no such file."""
    return _kept(folder, call_id, AUDIO_FILE)


async def chat_history(folder: Path | None, s3: S3Settings | None, call_id: str) -> bytes | None:
    """The chat history LiveKit uploaded with the call's recording, as the receiver kept it (the
    bucket when one is configured, else its folder); None when there is none or it cannot be read."""
    if call_id_for(call_id, None) != call_id:
        return None
    try:
        return await _read_kept(folder, s3, call_id, CHAT_FILE)
    except ObjectStoreError:
        return None


def transcript(chat: bytes | None, *, pii: bool, t0: float | None) -> list[dict[str, Any]]:
    """What was said on the call, from its ``chat`` history (:func:`chat_history`): one line per spoken
    message (``role`` user or assistant, ``text`` masked unless ``pii``, ``at`` its wall-clock time,
    ``offset_ms`` on the call's time axis), in order. Empty without a readable chat history."""
    try:
        items = json.loads(chat).get("items") if chat else None
    except (ValueError, AttributeError):
        return []
    lines: list[dict[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping) or item.get("type") != "message" or item.get("role") not in SPOKEN:
            continue
        content = item.get("content")
        text = " ".join(c for c in content if isinstance(c, str)) if isinstance(content, list) else ""
        at = item.get("created_at")
        at = float(at) if isinstance(at, int | float) else None
        lines.append({
            "role": item["role"], "text": mask_text(text, pii), "at": at,
            "offset_ms": round((at - t0) * 1000, 1) if at is not None and t0 is not None else None,
            "interrupted": bool(item.get("interrupted")),
        })
    lines.sort(key=lambda ln: ln["at"] if ln["at"] is not None else float("inf"))
    return lines


def _kept(folder: Path | None, call_id: str, name: str) -> Path | None:
    if folder is None or call_id_for(call_id, None) != call_id:
        return None
    base = folder.resolve()
    path = base / call_id / name
    try:
        if path.is_symlink() or path.parent.is_symlink() or not path.resolve().is_relative_to(base):
            return None
        return path if path.is_file() else None
    except OSError:
        return None


def _epoch(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, dt.datetime) else None


def _audio_state(row: Mapping[str, Any], on_disk: bool) -> str:
    if row.get("audio_broken"):
        return "broken" if on_disk else "missing"
    if int(row.get("audio_bytes") or 0) > 0:
        return "present" if on_disk else "missing"
    if row.get("audio_dropped"):
        return "dropped"
    return "none"


def present_insights(row: Mapping[str, Any], *, folder: Path | None, pii: bool, can_play_audio: bool,
                     t0: float | None, in_bucket: bool = False, chat: bytes | None = None) -> dict[str, Any]:
    """The call view's ``insights``: tags, outcome and verdicts (masked unless ``pii``) and the audio's
    state, length and start on the call's time axis (``offset_ms`` from the view's ``t0``). With the
    files ``in_bucket`` (S3) the row is trusted: the receiver writes it only once the object is stored."""
    call_id = str(row["call_id"])
    tags = row.get("tags") or {}
    evaluations = row.get("evaluations") or {}
    on_disk = in_bucket or audio_path(folder, call_id) is not None
    state = _audio_state(row, on_disk)
    started = _epoch(row.get("started_at"))
    playable = state in ("present", "broken")
    return {
        "tags": [{"name": mask_text(str(name), pii), "metadata": mask_json(meta, pii)}
                 for name, meta in sorted(tags.items())] if isinstance(tags, Mapping) else [],
        "outcome": row.get("outcome"),
        "outcome_reason": mask_text(row.get("outcome_reason"), pii) or None,
        "verdicts": [
            {"judge": mask_text(str(judge), pii), "result": (e or {}).get("verdict"),
             "reason": mask_text((e or {}).get("reasoning"), pii) or None}
            for judge, e in sorted(evaluations.items())
        ] if isinstance(evaluations, Mapping) else [],
        "agent_name": row.get("agent_name"),
        "sdk_version": row.get("sdk_version"),
        "simulated": bool(row.get("simulated")),
        "transcript": transcript(chat, pii=pii, t0=t0),
        "audio": {
            "state": state,
            "problem": row.get("audio_problem") if state in ("broken", "missing") else None,
            "bytes": int(row.get("audio_bytes") or 0),
            "duration_s": row.get("audio_seconds") if row.get("audio_seconds") is not None else row.get("duration_s"),
            "started_at": started,
            "offset_ms": round((started - t0) * 1000, 1) if started is not None and t0 is not None else 0.0,
            "channels": list(CHANNELS),
            "allowed": can_play_audio,
            "url": f"/api/calls/{quote(call_id, safe='')}/audio" if playable and can_play_audio else None,
            # the peaks the receiver kept; none for a recording stored before it kept them (the page decodes
            # the audio then); in a bucket the receiver has kept them since it could store there at all
            "waveform_url": _waveform_url(call_id, folder, in_bucket=in_bucket) if playable and can_play_audio
            else None,
        },
    }


def waveform_preload(request: web.Request, call_id: str) -> str | None:
    """The waveform route of ``call_id`` when the call page may preload it: the user may hear the
    recording and the receiver's folder holds its peaks (a bucket is not asked: the page asks for the
    peaks itself once the call says it has them)."""
    s = _session(request)
    if s is None or not s.can_play_audio:
        return None
    return _waveform_url(call_id, _console(request).config.insights_dir, in_bucket=False)


def _waveform_url(call_id: str, folder: Path | None, *, in_bucket: bool) -> str | None:
    """The route of the call's peaks when they are kept: in the bucket (``in_bucket``: trusted, as the
    row is) or in the receiver's folder; the caller has checked the audio permission."""
    if not in_bucket and _kept(folder, call_id, WAVEFORM_FILE) is None:
        return None
    return f"/api/calls/{quote(call_id, safe='')}/waveform"


async def api_call_audio(request: web.Request) -> web.StreamResponse:
    """The call's recording (Ogg Opus), with Range support; the ``audio`` permission, not only a login."""
    c = _console(request)
    s = _session(request)
    assert s is not None
    if not s.can_play_audio:
        return _error(403, "playing or downloading a call's recording needs the audio permission "
                           "(VOXPULSE_UI_USERS: NAME:HASH:audio)")
    call_id = request.match_info["call_id"]
    if call_id_for(call_id, None) != call_id:
        raise BadRequest("call id: 1-128 characters of letters, digits and _.- (not . or ..)")
    headers = {
        "Content-Type": "audio/ogg",
        "Cache-Control": "no-store",
        "Content-Disposition": f"inline; filename=\"{call_id}.ogg\"",
    }
    if c.config.insights_s3 is not None:
        return await _from_bucket(request, c.config.insights_s3, call_id, headers)
    path = audio_path(c.config.insights_dir, call_id)
    if path is None:
        return _error(404, f"no recording kept for call {call_id!r}")
    return web.FileResponse(path, headers=headers)


async def api_call_waveform(request: web.Request) -> web.Response:
    """The recording's peaks (``waveform.json``, :mod:`voxpulse_console.insights._waveform`): drawn at
    once, where decoding the recording in the browser takes seconds. Derived from the audio, so it needs
    the ``audio`` permission like the recording."""
    c = _console(request)
    s = _session(request)
    assert s is not None
    if not s.can_play_audio:
        return _error(403, "the recording's waveform needs the audio permission (VOXPULSE_UI_USERS: NAME:HASH:audio)")
    call_id = request.match_info["call_id"]
    if call_id_for(call_id, None) != call_id:
        raise BadRequest("call id: 1-128 characters of letters, digits and _.- (not . or ..)")
    try:
        data = await _read_kept(c.config.insights_dir, c.config.insights_s3, call_id, WAVEFORM_FILE)
    except ObjectStoreError as exc:
        return _error(503, f"the recordings' bucket is unavailable ({exc.__class__.__name__})")
    if data is None:
        return _error(404, f"no waveform kept for call {call_id!r}")
    return web.Response(body=data, content_type="application/json", headers={"Cache-Control": "no-store"})


async def _read_kept(folder: Path | None, s3: S3Settings | None, call_id: str, name: str) -> bytes | None:
    """One of the call's files as the receiver kept it: from the bucket when one is configured, else
    from its folder. None when there is no such file; ObjectStoreError when the bucket fails."""
    if s3 is not None:
        store = S3Objects(s3)
        try:
            return await store.get(f"{call_id}/{name}")
        finally:
            await store.aclose()
    path = _kept(folder, call_id, name)
    try:
        return path.read_bytes() if path is not None else None
    except OSError:
        return None


async def _from_bucket(request: web.Request, s3: S3Settings, call_id: str,
                       headers: dict[str, str]) -> web.StreamResponse:
    """The recording from the S3 bucket: its size (HEAD), then the asked range (a ranged GET)."""
    store = S3Objects(s3)
    key = f"{call_id}/{AUDIO_FILE}"
    try:
        size = await store.size(key)
        if size is None:
            return _error(404, f"no recording kept for call {call_id!r}")
        headers = {**headers, "Accept-Ranges": "bytes"}
        try:
            asked = request.http_range
        except ValueError:
            asked = slice(None, None)
        if asked.start is None and asked.stop is None:
            return web.Response(body=await store.get(key) or b"", headers=headers)
        start, stop = asked.start, asked.stop  # stop: exclusive
        if start is None:
            start = 0
        if start < 0:  # bytes=-N: the last N
            start = max(0, size + start)
        stop = size if stop is None else min(stop, size)
        if start >= size or start >= stop:
            return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
        data = await store.get(key, start, stop - 1) or b""
        return web.Response(status=206, body=data, headers={
            **headers, "Content-Range": f"bytes {start}-{start + len(data) - 1}/{size}"})
    except ObjectStoreError as exc:
        return _error(503, f"the recordings' bucket is unavailable ({exc.__class__.__name__})")
    finally:
        await store.aclose()
