"""voxpulse_console/alert_receiver.py: Alertmanager webhook -> alerts_history on the REAL PostgreSQL.

The unit tests parse Alertmanager payloads; the db tests run the aiohttp receiver on a port it picks,
POST a firing then a resolved notification (and replays), and read alerts_history back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support import binary, closed_port
from voxpulse_console.alert_receiver import parse_notification, start

ROOT = Path(__file__).resolve().parents[2]
AM_TEMPLATE = (ROOT / "prometheus" / "alertmanager.yml").read_text()


def notification(status: str, *, starts: str = "2026-11-23T10:00:00.123456789Z",
                 ends: str = "0001-01-01T00:00:00Z", fingerprint: str = "a1b2c3d4e5f60718") -> dict[str, Any]:
    """An Alertmanager 0.25 webhook body (version 4), as sent by prometheus/alertmanager.yml."""
    labels = {"alertname": "VoiceStageErrors", "severity": "critical", "service": "voice-agent",
              "pipeline": "otel", "monitor": "voxpulse"}
    annotations = {"summary": "6 STT/TTS/LLM errors in the last 10 minutes (> 5)",
                   "description": "A speech or language provider is failing.",
                   "runbook_url": "prometheus/runbooks.md#voicestageerrors",
                   "dashboard": "/d/voxpulse-realtime/real-time",
                   "traceql": '{ span.voice.stage =~ "stt|tts|llm" && status = error }'}
    return {
        "version": "4", "groupKey": '{}/{}:{alertname="VoiceStageErrors"}', "truncatedAlerts": 0,
        "status": status, "receiver": "alerts-history", "groupLabels": {"alertname": "VoiceStageErrors"},
        "commonLabels": labels, "commonAnnotations": annotations, "externalURL": "http://127.0.0.1:9093",
        "alerts": [{"status": status, "labels": labels, "annotations": annotations, "startsAt": starts,
                    "endsAt": ends, "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=x",
                    "fingerprint": fingerprint}],
    }


def test_parse_firing() -> None:
    (row,) = parse_notification(notification("firing"))
    assert row["alertname"] == "VoiceStageErrors" and row["severity"] == "critical"
    assert row["service"] == "voice-agent" and row["status"] == "firing"
    assert row["starts_at"] == dt.datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=dt.UTC)
    assert row["resolved_at"] is None
    assert row["summary"].startswith("6 STT/TTS/LLM errors")
    assert row["annotations"]["traceql"].startswith("{ span.voice.stage")


def test_parse_resolved() -> None:
    (row,) = parse_notification(notification("resolved", ends="2026-11-23T10:30:00Z"))
    assert row["resolved_at"] == dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize("payload", [None, [], {"alerts": "x"}, {"alerts": [{"status": "weird",
                                                                               "startsAt": "2026-01-01T00:00:00Z"}]},
                                     {"alerts": [{"status": "firing"}]}])
def test_parse_rejects_garbage(payload: Any) -> None:
    with pytest.raises(ValueError, match=r"notification|alert|status|startsAt"):
        parse_notification(payload)


def _url(runner: Any) -> str:
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}"


@pytest.mark.db
async def test_alerts_history_is_idempotent_on_fingerprint_start_status(migrated_db: str) -> None:
    conn = await asyncpg.connect(migrated_db)
    try:
        await conn.execute("TRUNCATE alerts_history RESTART IDENTITY")
        sql = """INSERT INTO alerts_history (fingerprint, alertname, severity, service, status, message,
                                             labels, starts_at, triggered_at, resolved_at)
                 VALUES ($1, 'HighLatency', 'critical', 'agent', $2, 'p95 > 3s', $3::jsonb, $4, $4, $5)
                 ON CONFLICT (fingerprint, starts_at, status) DO NOTHING"""
        t = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)
        labels = json.dumps({"alertname": "HighLatency", "severity": "critical"})
        for _ in range(3):  # Alertmanager retries the webhook
            await conn.execute(sql, "fp1", "firing", labels, t, None)
        await conn.execute(sql, "fp1", "resolved", labels, t, t + dt.timedelta(minutes=5))
        rows = await conn.fetch("SELECT status, acknowledged FROM alerts_history ORDER BY id")
        assert [(r["status"], r["acknowledged"]) for r in rows] == [("firing", False), ("resolved", False)]
    finally:
        await conn.close()


@pytest.mark.db
async def test_the_receiver_schema_is_in_the_one_migration_tree(migrated_db: str) -> None:
    """alerts_history and the live feed's triggers come from telemetry/history/migrations, recorded in
    schema_migrations with the call history's; the console's former namespace is gone."""
    from telemetry.history import load_migrations, migrate

    assert await migrate(migrated_db) == []  # applied by the fixture; idempotent
    conn = await asyncpg.connect(migrated_db)
    try:
        recorded = [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations ORDER BY version")]
        assert recorded == [m.name for m in load_migrations()]
        assert {"alerts_history", "live_notify", "ttfw_index"} <= set(recorded)
        assert await conn.fetchval("SELECT to_regclass('console_schema_migrations')") is None
    finally:
        await conn.close()


@pytest.mark.db
async def test_receiver_stores_firing_and_resolved(migrated_db: str) -> None:
    conn = await asyncpg.connect(migrated_db)
    await conn.execute("TRUNCATE alerts_history RESTART IDENTITY")
    runner = await start(migrated_db, "127.0.0.1:0")
    try:
        base = _url(runner)
        url = f"{base}/alerts"
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(f"{base}/healthz")).status_code == 200
            r = await client.post(url, json=notification("firing"))
            assert r.status_code == 200 and r.json() == {"received": 1, "stored": 1}
            r = await client.post(url, json=notification("firing"))  # Alertmanager repeats / retries
            assert r.json() == {"received": 1, "stored": 0}
            r = await client.post(url, json=notification("resolved", ends="2026-11-23T10:30:00Z"))
            assert r.json() == {"received": 1, "stored": 1}
            r = await client.post(url, json=notification("resolved", ends="2026-11-23T10:30:00Z"))
            assert r.json() == {"received": 1, "stored": 0}
            r = await client.post(url, content=b"not json", headers={"Content-Type": "application/json"})
            assert r.status_code == 400
        rows = await conn.fetch("SELECT * FROM alerts_history ORDER BY id")
        assert [r["status"] for r in rows] == ["firing", "resolved"]
        firing, resolved = rows
        for row in rows:
            assert row["alertname"] == "VoiceStageErrors" and row["severity"] == "critical"
            assert row["service"] == "voice-agent" and row["fingerprint"] == "a1b2c3d4e5f60718"
            assert row["starts_at"] == dt.datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=dt.UTC)
            assert json.loads(row["labels"])["pipeline"] == "otel"
            assert json.loads(row["annotations"])["dashboard"] == "/d/voxpulse-realtime/real-time"
        assert firing["summary"].startswith("6 STT/TTS/LLM errors") and firing["message"]
        # the resolution is its own row and also closes the firing row
        assert resolved["resolved_at"] == firing["resolved_at"] == dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)
        # a new episode of the same alert (new startsAt) is a new row
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.post(url, json=notification("firing", starts="2026-11-23T11:00:00Z"))
            assert r.json()["stored"] == 1
        assert await conn.fetchval("SELECT count(*) FROM alerts_history WHERE resolved_at IS NULL") == 1
    finally:
        await runner.cleanup()
        await conn.close()


async def test_receiver_answers_503_when_the_database_is_down() -> None:
    with closed_port() as dead:
        runner = await start(f"postgresql://x:y@127.0.0.1:{dead}/none", "127.0.0.1:0")
        try:
            async with httpx.AsyncClient(timeout=20) as client:
                r = await client.post(f"{_url(runner)}/alerts", json=notification("firing"))
            assert r.status_code == 503  # Alertmanager retries 5xx
        finally:
            await runner.cleanup()


async def _start_alertmanager(config: Path, data: Path) -> tuple[asyncio.subprocess.Process, str, asyncio.Task[None]]:
    """The real Alertmanager on a port it picks; returns (process, its URL, the task draining its log)
    once it logs where it listens (which is also when it is ready)."""
    am = await asyncio.create_subprocess_exec(
        str(binary("alertmanager")), f"--config.file={config}", f"--storage.path={data}",
        "--web.listen-address=127.0.0.1:0", "--cluster.listen-address=",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert am.stderr is not None
    log: list[str] = []

    async def listening() -> str:
        assert am.stderr is not None
        while line := (await am.stderr.readline()).decode():
            log.append(line)
            if (m := re.search(r'msg="Listening on" address=(\S+)', line)) is not None:
                return m.group(1)
        raise AssertionError("alertmanager exited:\n" + "".join(log))

    try:
        address = await asyncio.wait_for(listening(), 30)
    except BaseException:
        am.kill()
        await am.wait()
        raise

    async def drain() -> None:  # keep its log pipe from filling up
        assert am.stderr is not None
        while await am.stderr.readline():
            pass

    return am, f"http://{address}", asyncio.create_task(drain())


@pytest.mark.db
@pytest.mark.stack
@pytest.mark.slow
async def test_alertmanager_delivers_firing_and_resolved_to_history(migrated_db: str, tmp_path: Path) -> None:
    """The real Alertmanager 0.25 with prometheus/alertmanager.yml (rendered without secrets) sends
    an alert to the receiver, which stores it firing, then resolved."""
    from voxpulse_console.alert_receiver import render_alertmanager_config, write_alertmanager_config

    conn = await asyncpg.connect(migrated_db)
    await conn.execute("TRUNCATE alerts_history RESTART IDENTITY")
    runner = await start(migrated_db, "127.0.0.1:0")
    text = render_alertmanager_config(AM_TEMPLATE, {"ALERTS_RECEIVER_URL": f"{_url(runner)}/alerts"},
                                      allow_missing=True)
    cfg = tmp_path / "alertmanager.yml"
    write_alertmanager_config(cfg, text, ROOT / "prometheus")
    am, base, drain = await _start_alertmanager(cfg, tmp_path / "data")
    name = f"DashTest{os.getpid()}"
    try:
        starts = dt.datetime.now(dt.UTC).replace(microsecond=0)
        alert = {"labels": {"alertname": name, "severity": "warning", "service": "voice-agent"},
                 "annotations": {"summary": "test alert"}, "startsAt": starts.isoformat().replace("+00:00", "Z"),
                 "generatorURL": "http://127.0.0.1:9090/graph"}

        async def wait_for(status: str, deadline: float) -> list[Any]:
            end = asyncio.get_running_loop().time() + deadline
            while asyncio.get_running_loop().time() < end:
                rows = await conn.fetch("SELECT * FROM alerts_history WHERE alertname = $1 AND status = $2",
                                        name, status)
                if rows:
                    return list(rows)
                await asyncio.sleep(1)
            raise AssertionError(f"no {status} row for {name} in alerts_history")

        async with httpx.AsyncClient(timeout=5) as client:
            r = await client.post(f"{base}/api/v2/alerts", json=[alert])
            assert r.status_code == 200, r.text
            (firing,) = await wait_for("firing", 30)
            assert firing["severity"] == "warning" and firing["service"] == "voice-agent"
            assert firing["starts_at"] == starts
            ended = dt.datetime.now(dt.UTC).replace(microsecond=0)
            r = await client.post(f"{base}/api/v2/alerts",
                                  json=[alert | {"endsAt": ended.isoformat().replace("+00:00", "Z")}])
            assert r.status_code == 200, r.text
            (resolved,) = await wait_for("resolved", 100)  # next group_interval (1m) of the history route
        assert resolved["fingerprint"] == firing["fingerprint"] and resolved["resolved_at"] is not None
        assert await conn.fetchval("SELECT resolved_at FROM alerts_history WHERE id = $1", firing["id"]) is not None
    finally:
        am.terminate()
        await am.wait()
        await drain
        await runner.cleanup()
        await conn.close()
