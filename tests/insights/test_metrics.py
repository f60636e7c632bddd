"""The insights receiver's metrics (voxpulse.insights.*), on the REAL PostgreSQL: verdicts, outcomes and
tags counted once per call however often it is uploaded, uploads by kind and status, label values
bounded; read from the OTel SDK's own in-memory reader."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from telemetry.semconv import OTHER, Attr, Metric, metric_spec
from tests.insights.capture import FIXTURE_KEY, FIXTURE_SECRET, ROOM_ID
from tests.insights.test_receiver import Receiver, running
from tests.insights.test_wire import token
from voxpulse_console.insights import InsightsConfig, start
from voxpulse_console.insights._metrics import LabelCap

VERDICTS, OUTCOMES = metric_spec(Metric.INSIGHTS_VERDICTS).name, metric_spec(Metric.INSIGHTS_OUTCOMES).name
TAGS, UPLOADS = metric_spec(Metric.INSIGHTS_TAGS).name, metric_spec(Metric.INSIGHTS_UPLOADS).name
LOGS_PATH = "/observability/logs/otlp/v0"


# ----------------------------------------------------------------------------------- label cap
def test_label_cap_keeps_the_first_values_and_folds_the_rest() -> None:
    cap = LabelCap(limit=2)
    assert [cap("task_completion"), cap("conciseness"), cap("politeness")] == ["task_completion", "conciseness", OTHER]
    assert cap("task_completion") == "task_completion"  # one seen before stays itself past the cap
    assert cap("politeness") == OTHER


@pytest.mark.parametrize("value", ["", "has a space", "x" * 65, "+380501234567", "ім'я", "-leading", OTHER])
def test_label_cap_refuses_what_is_not_a_short_identifier(value: str) -> None:
    cap = LabelCap(limit=10)
    assert cap(value) == OTHER
    assert cap("lk.judge.conciseness:fail") == "lk.judge.conciseness:fail" and len(cap._seen) == 1


# -------------------------------------------------------------------------------- the receiver
def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, dict):
        kvlist = KeyValueList(values=[_kv(k, v) for k, v in value.items()])
        return KeyValue(key=key, value=AnyValue(kvlist_value=kvlist))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def logs_body(room_id: str, *, verdicts: dict[str, str] = {}, outcome: str | None = None,  # noqa: B006
              tags: tuple[str, ...] = ()) -> bytes:
    """An OTLP logs request shaped like livekit-agents' (records ``evaluation``, ``outcome``, ``tag``)."""
    req = ExportLogsServiceRequest()
    records = req.resource_logs.add().scope_logs.add().log_records
    ids = {"room_id": room_id, "job_id": f"AJ_{room_id}"}

    def add(body: str, **attrs: Any) -> None:
        rec = records.add()
        rec.body.string_value = body
        rec.attributes.extend([_kv(k, v) for k, v in {**ids, **attrs}.items()])

    for judge, verdict in verdicts.items():
        add("evaluation", evaluation={"name": judge, "verdict": verdict, "reasoning": "r"})
    if outcome is not None:
        add("outcome", outcome={"outcome": outcome, "reason": "r"})
    for tag in tags:
        add("tag", tag={"name": tag})
    return gzip.compress(req.SerializeToString())


class Counted:
    def __init__(self, receiver: Receiver, reader: InMemoryMetricReader) -> None:
        self.receiver, self.reader = receiver, reader

    async def post_logs(self, body: bytes, auth: str | None = None) -> int:
        headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip",
                   "Authorization": auth or f"Bearer {token()}"}
        async with httpx.AsyncClient() as client:
            return (await client.post(self.receiver.url + LOGS_PATH, content=body, headers=headers)).status_code

    def points(self, name: str) -> dict[tuple[tuple[str, Any], ...], float]:
        """{sorted attributes: cumulative value} of one counter (empty: never recorded)."""
        data = self.reader.get_metrics_data()
        out: dict[tuple[tuple[str, Any], ...], float] = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        for p in m.data.data_points:
                            out[tuple(sorted((p.attributes or {}).items()))] = p.value
        return out


async def counted(dsn: str, folder: Path, **kw: Any) -> AsyncIterator[Counted]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        async for r in running(dsn, folder, meter_provider=provider, **kw):
            yield Counted(r, reader)
    finally:
        provider.shutdown()


@pytest.fixture
async def receiver(migrated_db: str, tmp_path: Path) -> AsyncIterator[Counted]:
    async for c in counted(migrated_db, tmp_path / "insights"):
        yield c


def verdict(judge: str, result: str) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted({Attr.INSIGHTS_JUDGE: judge, Attr.INSIGHTS_VERDICT: result}.items()))


async def test_livekit_capture_counted_once_however_often_uploaded(receiver: Counted) -> None:
    for _ in range(3):
        for kind in ("logs", "recordings", "logs"):
            assert (await receiver.receiver.post(kind)).status_code == 200
    assert receiver.points(VERDICTS) == {verdict("conciseness", "fail"): 1, verdict("task_completion", "pass"): 1}
    assert receiver.points(OUTCOMES) == {((Attr.INSIGHTS_OUTCOME, "success"),): 1}
    assert receiver.points(TAGS) == {((Attr.INSIGHTS_TAG, t),): 1 for t in (
        "language:ru", "lk.judge.conciseness:fail", "lk.judge.task_completion:pass", "lk.success")}
    uploads = receiver.points(UPLOADS)
    assert uploads == {
        ((Attr.HTTP_STATUS, 200), (Attr.INSIGHTS_UPLOAD_KIND, "logs")): 6,
        ((Attr.HTTP_STATUS, 200), (Attr.INSIGHTS_UPLOAD_KIND, "recordings")): 3,
    }
    (row,) = await receiver.receiver.rows()
    assert row["call_id"] == ROOM_ID  # one call, however many uploads


async def test_a_later_upload_counts_only_what_is_new(receiver: Counted) -> None:
    assert await receiver.post_logs(logs_body("RM_a", verdicts={"task_completion": "pass"}, tags=("vip",))) == 200
    # the same call again: the known judge and tag are not counted again; the new ones and the outcome are
    assert await receiver.post_logs(logs_body("RM_a", verdicts={"task_completion": "pass", "politeness": "maybe"},
                                              outcome="fail", tags=("vip", "angry"))) == 200
    # a second outcome for the call is not a second call
    assert await receiver.post_logs(logs_body("RM_a", outcome="success")) == 200
    # another call with the same judge is counted
    assert await receiver.post_logs(logs_body("RM_b", verdicts={"task_completion": "fail"})) == 200
    assert receiver.points(VERDICTS) == {verdict("task_completion", "pass"): 1, verdict("politeness", "maybe"): 1,
                                         verdict("task_completion", "fail"): 1}
    assert receiver.points(OUTCOMES) == {((Attr.INSIGHTS_OUTCOME, "fail"),): 1}
    assert receiver.points(TAGS) == {((Attr.INSIGHTS_TAG, "vip"),): 1, ((Attr.INSIGHTS_TAG, "angry"),): 1}


async def test_concurrent_uploads_of_one_call_count_once(receiver: Counted) -> None:
    body = logs_body("RM_race", verdicts={"task_completion": "fail", "conciseness": "pass"}, outcome="fail")
    statuses = await asyncio.gather(*(receiver.post_logs(body) for _ in range(8)))
    assert statuses == [200] * 8
    assert receiver.points(VERDICTS) == {verdict("task_completion", "fail"): 1, verdict("conciseness", "pass"): 1}
    assert receiver.points(OUTCOMES) == {((Attr.INSIGHTS_OUTCOME, "fail"),): 1}


async def test_refused_uploads_count_by_status_and_store_nothing(receiver: Counted) -> None:
    body = logs_body("RM_refused", verdicts={"task_completion": "fail"})
    assert await receiver.post_logs(body, auth="Bearer x.y.z") == 401
    assert await receiver.post_logs(b"not protobuf") == 400
    assert (await receiver.receiver.post("recordings", auth=None)).status_code == 401
    assert receiver.points(VERDICTS) == {}
    assert receiver.points(UPLOADS) == {
        ((Attr.HTTP_STATUS, 401), (Attr.INSIGHTS_UPLOAD_KIND, "logs")): 1,
        ((Attr.HTTP_STATUS, 400), (Attr.INSIGHTS_UPLOAD_KIND, "logs")): 1,
        ((Attr.HTTP_STATUS, 401), (Attr.INSIGHTS_UPLOAD_KIND, "recordings")): 1,
    }


async def test_database_down_counts_nothing_but_the_503(tmp_path: Path) -> None:
    """A logs upload the database did not take is retried by the agent: counted when it is stored."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    config = InsightsConfig(dsn="postgresql://nobody@127.0.0.1:1/none", keys={FIXTURE_KEY: FIXTURE_SECRET},
                            folder=tmp_path, meter_provider=provider)
    runner = await start(config, "127.0.0.1:0")
    host, port = runner.addresses[0][:2]
    try:
        c = Counted(Receiver(f"http://{host}:{port}", tmp_path, ""), reader)
        assert await c.post_logs(logs_body("RM_down", verdicts={"task_completion": "fail"})) == 503
        assert c.points(VERDICTS) == {}
        assert c.points(UPLOADS) == {((Attr.HTTP_STATUS, 503), (Attr.INSIGHTS_UPLOAD_KIND, "logs")): 1}
    finally:
        await runner.cleanup()
        provider.shutdown()


async def test_label_values_capped_through_the_receiver(migrated_db: str, tmp_path: Path) -> None:
    async for c in counted(migrated_db, tmp_path, label_values=2):
        judges = {f"judge_{i}": "fail" for i in range(4)}
        assert await c.post_logs(logs_body("RM_cap", verdicts=judges | {"free text judge": "pass"})) == 200
        points = c.points(VERDICTS)
        assert sum(points.values()) == 5  # every verdict counted, none lost
        assert {dict(k)[Attr.INSIGHTS_JUDGE] for k in points} == {"judge_0", "judge_1", OTHER}
        assert points[verdict(OTHER, "fail")] == 2 and points[verdict(OTHER, "pass")] == 1
