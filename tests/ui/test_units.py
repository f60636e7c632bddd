"""The console's pure parts: password hashes, users, sessions and the login throttle; redirect
targets, client addresses and origins (``doors``); filter
validation; the call view's lanes on a REAL simulated call (a LiveKit AgentSession through the
telemetry library, captured in memory), with only history, only trace, and masking."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import pytest

from telemetry.semconv import TURN_SEGMENT_OWNERS, Attr, TurnSegment
from voxpulse_console.tracestore import Span, Trace
from voxpulse_console.ui import auth, doors, filters
from voxpulse_console.ui.callview import assign_lanes, build_call_view
from voxpulse_console.ui.config import UiConfig, UiConfigError


# ------------------------------------------------------------------------------------------ auth
def test_password_hash_round_trip_and_format() -> None:
    h = auth.hash_password("correct horse battery staple")
    assert h.startswith("scrypt.32768.8.1.") and "$" not in h and ":" not in h
    assert auth.verify_password("correct horse battery staple", h)
    assert not auth.verify_password("correct horse battery stapler", h)
    assert auth.hash_password("x" * 20) != auth.hash_password("x" * 20)  # salted


@pytest.mark.parametrize("spec", [None, "", "   ", "admin", "admin:secret", "admin:scrypt.1.2.3.a.b",
                                  "ad min:scrypt.32768.8.1.AAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                  "admin:scrypt.32768.8.1.AAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAA:root"])
def test_bad_user_specs_are_refused(spec: str | None) -> None:
    with pytest.raises(auth.AuthConfigError):
        auth.parse_users(spec)


def test_users_and_permissions() -> None:
    a, b = auth.hash_password("a-long-password"), auth.hash_password("b-long-password")
    users = auth.parse_users(f"alice:{a}:pii,\n bob:{b} carol:{b}:audio dave:{a}:pii+audio")
    assert users["alice"].can_view_pii and not users["bob"].can_view_pii
    # hearing a recording is a permission of its own, apart from seeing raw personal data
    assert [(u.can_view_pii, u.can_play_audio) for u in users.values()] == [
        (True, False), (False, False), (False, True), (True, True)]
    s = auth.SessionStore().create(users["carol"])
    assert s.can_play_audio and not s.can_view_pii
    with pytest.raises(auth.AuthConfigError, match="unknown permission"):
        auth.parse_users(f"alice:{a}:pii+root")
    with pytest.raises(auth.AuthConfigError, match="twice"):
        auth.parse_users(f"alice:{a} alice:{b}")


def test_config_refuses_to_start_without_users() -> None:
    with pytest.raises(auth.AuthConfigError, match="VOXPULSE_UI_USERS"):
        UiConfig.from_env({})
    users = f"a:{auth.hash_password('a-long-password')}"
    with pytest.raises(UiConfigError):
        UiConfig.from_env({"VOXPULSE_UI_USERS": users, "VOXPULSE_UI_LISTEN": "8090"})
    with pytest.raises(UiConfigError):
        UiConfig.from_env({"VOXPULSE_UI_USERS": users, "VOXPULSE_UI_TIMEZONE": "Mars/Olympus"})
    cfg = UiConfig.from_env({"VOXPULSE_UI_USERS": users, "VOXPULSE_UI_PUBLIC_URL": "https://c.example/"})
    assert cfg.port == 8090 and cfg.secure_cookies and cfg.public_url == "https://c.example"


def test_sessions_expire_and_limiter_slides(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    store = auth.SessionStore(idle_s=60, max_age_s=300)
    s = store.create(auth.User("a", "h"))
    assert store.get(s.token) is s
    now[0] += 59
    assert store.get(s.token) is s
    now[0] += 61
    assert store.get(s.token) is None


def test_login_throttle_backs_off_per_name_and_address(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    t = auth.LoginThrottle(free_failures=3, delay_s=1.0, max_delay_s=8.0, address_failures=100)
    for _ in range(3):  # free
        assert t.retry_after("Admin", "10.0.0.1") == 0
        t.failed("admin", "10.0.0.1")
    waits = []
    for _ in range(6):
        waits.append(t.retry_after("admin", "10.0.0.1"))
        now[0] += waits[-1]
        assert t.retry_after("ADMIN", "10.0.0.1") == 0  # names are case-blind
        t.failed("admin", "10.0.0.1")
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # doubling, capped
    assert t.retry_after("admin", "10.0.0.2") == 0  # another address: not held back
    assert t.retry_after("bob", "10.0.0.1") == 0  # another name from the address: not either
    t.succeeded("admin", "10.0.0.1")
    assert t.retry_after("admin", "10.0.0.1") == 0
    for _ in range(4):
        t.failed("admin", "10.0.0.1")
    now[0] += t.forget_s + 1  # an hour without failures forgets them
    assert t.retry_after("admin", "10.0.0.1") == 0


def test_login_throttle_per_address_and_per_user(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    t = auth.LoginThrottle(free_failures=3, delay_s=10.0, address_failures=4, address_window_s=100,
                           user_failures=5, user_window_s=50)
    for name in ("a", "b", "c", "d"):  # spraying names from one address
        assert t.retry_after(name, "10.0.0.1") == 0
        t.failed(name, "10.0.0.1")
    assert t.retry_after("e", "10.0.0.1") == pytest.approx(100)
    now[0] += 60
    assert t.retry_after("e", "10.0.0.1") == pytest.approx(40)
    # IPv6: a /64 is one client
    for i in range(4):
        t.failed(f"n{i}", f"2001:db8:1:2::{i + 1}")
    assert t.retry_after("x", "2001:db8:1:2:ffff::9") > 0 and t.retry_after("x", "2001:db8:1:3::1") == 0
    # five failures for one name from five addresses: each of those addresses now waits after one
    # failure; an address with none never does
    for i in range(5):
        t.failed("admin", f"192.0.2.{i}")
    assert t.retry_after("admin", "192.0.2.0") == pytest.approx(10.0)
    assert t.retry_after("admin", "192.0.2.99") == 0
    now[0] += 51  # the alarm's window slid on: one failure is free again
    assert t.retry_after("admin", "192.0.2.0") == 0


def test_login_throttle_memory_is_bounded() -> None:
    t = auth.LoginThrottle(max_entries=100)
    for i in range(1000):
        t.failed(f"user{i}", f"10.0.{i // 256}.{i % 256}")
    assert len(t._pairs) <= 100 and len(t._addresses) <= 100 and len(t._users) <= 100


# ------------------------------------------------------------------------------------------ doors
OWN = ("http://127.0.0.1:8090", "http://localhost:8090")


@pytest.mark.parametrize("target", [
    "/\\evil.example/x", "/\\evil", "\\\\evil.example", "\\/evil.example", "/\t/evil.example",
    "/\n/evil.example", "/\r/evil.example", "/\t\\evil.example", "\t//evil.example", " //evil.example",
    "\x00//evil.example", "\x0b//evil.example", "//evil.example", "///evil.example", "////evil.example",
    "https://evil.example", "HtTpS://evil.example/", "http://evil.example", "HTTP:\\\\evil.example",
    "http:/\\evil.example", "http:////evil.example", "https:evil.example", "http:evil.example",
    "javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,x", "vbscript:x", "calls", "?next=/x",
    "http://127.0.0.1:8090@evil.example/", "http://user@127.0.0.1:8090/", "http://evil.example\\@127.0.0.1:8090/",
    "http://127.0.0.1:8091/", "https://127.0.0.1:8090/", "http://127.0.0.1:80x/", "http://[::1:8090/",
    "/login", "/login?next=/calls", "/x" * 2000, "", None,
])
def test_safe_next_refuses_everything_but_the_console(target: str | None) -> None:
    assert doors.safe_next(target, OWN) == "/"


@pytest.mark.parametrize(("target", "path"), [
    ("/", "/"), ("/calls", "/calls"),
    ("/calls?outcome=transferred&q=a\\b#top", "/calls?outcome=transferred&q=a\\b#top"),
    ("/calls/abc-1", "/calls/abc-1"), ("http://127.0.0.1:8090/alerts", "/alerts"),
    ("HTTP://LocalHost:8090/latency?window=1h", "/latency?window=1h"), ("/%5Cevil.example", "/%5Cevil.example"),
    ("/%2F%2Fevil.example", "/%2F%2Fevil.example"), ("/.//evil.example", "/evil.example"),
    ("http://127.0.0.1:8090//evil.example", "/evil.example"), ("/ca\tlls", "/calls"), ("  /calls ", "/calls"),
])
def test_safe_next_keeps_paths_on_the_console(target: str, path: str) -> None:
    assert doors.safe_next(target, OWN) == path
    assert doors.safe_next(path, OWN) == path  # what it answers passes again unchanged


def test_client_address_reads_forwarded_for_only_from_trusted_proxies() -> None:
    proxies = doors.parse_networks("10.0.0.0/8, 127.0.0.1 ::1")
    assert doors.client_address("192.0.2.1", ["198.51.100.1"], proxies) == "192.0.2.1"  # not a proxy
    assert doors.client_address("10.0.0.2", ["198.51.100.1"], ()) == "10.0.0.2"  # no proxies configured
    assert doors.client_address("10.0.0.2", [], proxies) == "10.0.0.2"
    assert doors.client_address("10.0.0.2", ["198.51.100.1"], proxies) == "198.51.100.1"
    assert doors.client_address("10.0.0.2", ["203.0.113.9, 198.51.100.1"], proxies) == "198.51.100.1"
    assert doors.client_address("10.0.0.2", ["203.0.113.9", "198.51.100.1, 10.9.9.9"], proxies) == "198.51.100.1"
    assert doors.client_address("::ffff:127.0.0.1", ["10.1.1.1, 10.2.2.2"], proxies) == "10.1.1.1"  # all proxies
    assert doors.client_address("::1", ["[2001:db8::7]:4431"], proxies) == "2001:db8::7"
    assert doors.client_address("::1", ["198.51.100.1:5678"], proxies) == "198.51.100.1"
    assert doors.client_address("10.0.0.2", ["198.51.100.1, unknown"], proxies) == "10.0.0.2"  # stops there
    assert doors.client_address(None, ["198.51.100.1"], proxies) == "unknown"
    with pytest.raises(ValueError, match="CIDR"):
        doors.parse_networks("10.0.0.0/33")


def test_origins_are_parsed_and_derived() -> None:
    assert doors.parse_origins("HTTPS://Console.Example.com:443/, http://[::1]:8090 http://a:80") == (
        "https://console.example.com", "http://[::1]:8090", "http://a")
    for bad in ("console.example.com", "ftp://x", "https://x/path", "https://u@x", "null", "https://x?q", ""):
        with pytest.raises(ValueError, match="origin"):
            doors.parse_origins(bad)
    assert doors.default_origins("127.0.0.1", 8090) == OWN
    assert doors.default_origins("0.0.0.0", 8090) == OWN
    assert doors.default_origins("::", 9000)[-1] == "http://[::1]:9000"
    assert doors.default_origins("10.1.2.3", 8090) == ("http://10.1.2.3:8090",)
    assert doors.origin_of("https://x.example:443/a?b") == "https://x.example"
    assert doors.origin_of("javascript:alert(1)") is None


def test_config_reads_the_doors_settings() -> None:
    users = f"a:{auth.hash_password('a-long-password')}"
    cfg = UiConfig.from_env({"VOXPULSE_UI_USERS": users})
    assert cfg.allowed_origins == OWN and cfg.trusted_proxies == () and cfg.login_free_failures == 3
    cfg = UiConfig.from_env({"VOXPULSE_UI_USERS": users, "VOXPULSE_UI_LISTEN": "0.0.0.0:9000",
                             "VOXPULSE_UI_PUBLIC_URL": "https://c.example/"})
    assert cfg.allowed_origins == ("http://127.0.0.1:9000", "http://localhost:9000", "https://c.example")
    cfg = UiConfig.from_env({"VOXPULSE_UI_USERS": users, "VOXPULSE_UI_ORIGIN": "https://c.example, http://h:1",
                             "VOXPULSE_UI_TRUSTED_PROXIES": "10.0.0.0/8", "VOXPULSE_UI_LOGIN_DELAY_S": "2.5",
                             "VOXPULSE_UI_LOGIN_FREE_FAILURES": "5", "VOXPULSE_UI_LOGIN_ADDRESS_FAILURES": "50",
                             "VOXPULSE_UI_LOGIN_USER_FAILURES": "500"})
    assert cfg.allowed_origins == ("https://c.example", "http://h:1")
    assert [str(n) for n in cfg.trusted_proxies] == ["10.0.0.0/8"]
    assert (cfg.login_delay_s, cfg.login_free_failures, cfg.login_address_failures, cfg.login_user_failures) == (
        2.5, 5, 50, 500)
    for name, bad in (("VOXPULSE_UI_ORIGIN", "c.example"), ("VOXPULSE_UI_TRUSTED_PROXIES", "proxy.local"),
                      ("VOXPULSE_UI_LOGIN_DELAY_S", "0"), ("VOXPULSE_UI_LOGIN_DELAY_S", "soon"),
                      ("VOXPULSE_UI_LOGIN_FREE_FAILURES", "0"), ("VOXPULSE_UI_LOGIN_USER_FAILURES", "-1")):
        with pytest.raises(UiConfigError, match=name):
            UiConfig.from_env({"VOXPULSE_UI_USERS": users, name: bad})


# --------------------------------------------------------------------------------------- filters
def test_filters_parse_and_cursor_round_trip() -> None:
    f = filters.parse_call_filter({"from": "2026-11-20T10:00:00Z", "outcome": "transferred,failed",
                                   "min_ttfw_ms": "1500", "errors": "1", "q": "+38 (050) 123-45-67", "limit": "20"})
    assert f.outcomes == ("failed", "transferred") and f.min_ttfw_ms == 1500 and f.errors_only
    assert "+380501234567" in f.phones and "0501234567" in f.phones and f.call_id_prefix is None
    assert filters.parse_call_filter({"q": "sim-7-ab"}).call_id_prefix == "sim-7-ab"
    cur = (dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC), "sim-1")
    assert filters.decode_cursor(filters.encode_cursor(cur)) == cur
    with pytest.raises(filters.BadRequest):
        filters.decode_cursor(filters.encode_cursor(cur)[:-3] + "###")
    f = filters.parse_call_filter({"insight_outcome": "fail", "failed_judge": "task_completion"})
    assert (f.insight_outcome, f.failed_judge) == ("fail", "task_completion")
    assert filters.parse_call_filter({"failed_judge": "*"}).failed_judge == "*"
    for bad in ({"insight_outcome": "failed"}, {"failed_judge": "x'--"}, {"failed_judge": "a" * 129}):
        with pytest.raises(filters.BadRequest):
            filters.parse_call_filter(bad)


def test_audio_path_is_one_safe_segment_inside_the_folder(tmp_path: Any) -> None:
    from voxpulse_console.ui.insights import audio_path

    folder = tmp_path / "insights"
    (folder / "RM_ok").mkdir(parents=True)
    (folder / "RM_ok" / "recording.ogg").write_bytes(b"OggS")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "recording.ogg").write_bytes(b"OggS")
    (folder / "RM_link").symlink_to(outside, target_is_directory=True)
    (folder / "RM_filelink").mkdir()
    (folder / "RM_filelink" / "recording.ogg").symlink_to(outside / "recording.ogg")
    assert audio_path(folder, "RM_ok") == folder.resolve() / "RM_ok" / "recording.ogg"
    for bad in ("..", ".", "../outside", "RM_ok/../..", "/etc", "a:b", "a\\b", "", "x" * 129, "RM_link",
                "RM_filelink", "RM_absent"):
        assert audio_path(folder, bad) is None, bad
    assert audio_path(None, "RM_ok") is None


# ------------------------------------------------------------------------------------ call view
@pytest.fixture(scope="module")
def simulated() -> tuple[Trace, Any]:
    """One real simulated call (three turns, a tool call) captured in memory."""
    from agent.sim.simulator import simulate
    from telemetry.testing import capture_telemetry

    for name in ("livekit", "livekit.agents", "voxpulse.livekit", "agent"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    with capture_telemetry(deterministic_ids=False) as cap:
        summary = asyncio.run(simulate(calls=1, concurrency=1, seed=5, scenarios=["order_tyres"]))
        finished = cap.spans()
    spans = tuple(sorted((Span(
        trace_id=format(s.context.trace_id, "032x"), span_id=format(s.context.span_id, "016x"),
        parent_id=format(s.parent.span_id, "016x") if s.parent else None, name=s.name, service="sim",
        start_ns=s.start_time or 0, end_ns=s.end_time or 0, attributes=dict(s.attributes or {}),
        error=s.status.status_code.name == "ERROR") for s in finished), key=lambda s: s.start_ns))
    return Trace(spans[0].trace_id, spans), summary.calls[0]


def test_every_span_in_exactly_one_lane(simulated: tuple[Trace, Any]) -> None:
    trace, call = simulated
    lanes = assign_lanes(trace)
    placed = [s.span_id for v in lanes.values() for s in v]
    assert sorted(placed) == sorted(s.span_id for s in trace.spans)
    turns = sorted(k for k in lanes if k.startswith("turn:"))
    assert turns == [f"turn:{i}" for i in range(len(call.turns))]
    names = {s.name for s in lanes["call"]}
    assert "call" in names and "agent_session" in names  # the shared containers
    for k in turns:
        stages = {s.attributes.get(Attr.STAGE) for s in lanes[k]}
        assert {"turn", "stt", "llm", "tts"} <= stages, k
        turn = next(s for s in lanes[k] if s.attributes.get(Attr.STAGE) == "turn")
        for s in lanes[k]:  # LiveKit's subtrees in the turn's lane started inside its window
            assert s.start_ns >= turn.start_ns - 1, (k, s.name)
    assert any(s.attributes.get(Attr.STAGE) == "tool" for k in turns for s in lanes[k])
    assert {s.name for s in lanes["before"]} >= {"agent_turn", "tts_request", "greeting"}  # the greeting


def test_lanes_of_an_agent_without_voxpulse_follow_livekits_turns(simulated: tuple[Trace, Any]) -> None:
    """A trace that came through the insights receiver has LiveKit's spans only (no VoxPulse stage,
    no turn span): each of LiveKit's ``user_turn`` spans opens a turn's lane, the greeting before."""
    import dataclasses

    trace, _ = simulated
    livekit_only = Trace(trace.trace_id, tuple(
        dataclasses.replace(s, attributes={k: v for k, v in s.attributes.items() if k.startswith("lk.")})
        for s in trace.spans if s.attributes.get(Attr.STAGE) != "turn"))
    user_turns = sorted((s for s in livekit_only.spans if s.name == "user_turn"), key=lambda s: s.start_ns)
    assert user_turns
    lanes = assign_lanes(livekit_only)
    assert sorted(k for k in lanes if k.startswith("turn:")) == [f"turn:{i}" for i in range(len(user_turns))]
    for i, ut in enumerate(user_turns):
        assert ut in lanes[f"turn:{i}"]
    assert "agent_turn" in {s.name for s in lanes["before"]}  # the greeting


def test_the_greeting_lane_shows_its_anatomy(simulated: tuple[Trace, Any]) -> None:
    """The lane before the first turn holds the greeting: its time to first word and its parts
    (call_setup first), which add up to it like a turn's."""
    trace, call = simulated
    view = build_call_view(call.call_id, history=None, trace=trace, pii=False, objective_ms=3000)
    before = next(lane for lane in view["lanes"] if lane["key"] == "before")
    assert before["greeting"] is True
    parts = [p["segment"] for p in before["anatomy"]]
    assert parts[0] == "call_setup" and "tts_ttfb" in parts, parts
    assert sum(p["ms"] for p in before["anatomy"]) == pytest.approx(before["ttfw_ms"], abs=1.0)
    # the timeline starts at the earliest span (the greeting's wait starts at the caller's join)
    assert min(lane["start_ms"] for lane in view["lanes"]) >= 0


def test_a_turns_overlapped_parts_are_listed_and_only_known_ones(simulated: tuple[Trace, Any]) -> None:
    """A part done in an earlier part's shadow (voice.turn.overlapped_segments: an LLM that ran ahead
    of the end of turn) is named under the bar, with its owner; a name that is not a part is not shown."""
    import dataclasses

    trace, call = simulated
    hostile = ("llm_ttft", "<img src=x onerror=alert(1)>", "end_of_turn", 7)
    spans = tuple(
        dataclasses.replace(s, attributes={**s.attributes, Attr.TURN_OVERLAPPED: hostile})
        if s.attributes.get(Attr.STAGE) == "turn" and s.attributes.get(Attr.TURN_INDEX) == 0 else s
        for s in trace.spans)
    view = build_call_view(call.call_id, history=None, trace=Trace(trace.trace_id, spans), pii=False,
                           objective_ms=3000)
    lanes = {lane["key"]: lane for lane in view["lanes"]}
    assert lanes["turn:0"]["overlapped"] == [
        {"segment": "llm_ttft", "owner": "provider", "what": "the LLM's time to first token"},
        {"segment": "end_of_turn", "owner": TURN_SEGMENT_OWNERS[TurnSegment.END_OF_TURN][0],
         "what": TURN_SEGMENT_OWNERS[TurnSegment.END_OF_TURN][1]},
    ]
    assert lanes["turn:1"]["overlapped"] == []


def test_call_view_from_the_trace_alone_and_with_the_history(simulated: tuple[Trace, Any]) -> None:
    trace, call = simulated
    only_trace = build_call_view(call.call_id, history=None, trace=trace, pii=False, objective_ms=3000)
    assert only_trace["sources"]["history"] is False
    turn_lanes = [lane for lane in only_trace["lanes"] if lane["index"] is not None]
    assert [lane["index"] for lane in turn_lanes] == list(range(len(call.turns)))
    assert turn_lanes[0]["text_source"] == "trace" and turn_lanes[0]["user_text"]
    assert turn_lanes[0]["ttfw_ms"] == pytest.approx(call.turns[0].ttfw_ms, abs=0.2)
    assert turn_lanes[0]["first_audio_ms"] - turn_lanes[0]["speech_end_ms"] == pytest.approx(
        turn_lanes[0]["ttfw_ms"], abs=0.2)
    assert only_trace["call"]["outcome"] == call.outcome
    assert sum(only_trace["call"]["cost_by_stage"].values()) == pytest.approx(call.cost_usd, abs=1e-5)
    assert "+380501234567" not in repr(only_trace)
    start = dt.datetime.fromtimestamp(trace.root.start_ns / 1e9, dt.UTC)  # type: ignore[union-attr]
    history = {
        "call_id": call.call_id, "started_at": start, "ended_at": start + dt.timedelta(seconds=9),
        "phone": "+380501234567", "outcome": "resolved_by_bot", "trace_id": trace.trace_id, "cost_usd": 0.01,
        "turn_rows": [{"turn_index": 0, "speaker": "user", "ts": start, "text": "Мій номер +380501234567",
                       "ttfw_ms": None, "interrupted": False},
                      {"turn_index": 0, "speaker": "agent", "ts": start, "text": "Дякую", "ttfw_ms": 999.0,
                       "interrupted": False}],
        "tool_rows": [{"turn_index": 0, "name": "find_tyres", "args": {"phone": "+380501234567"}, "result": {},
                       "success": True, "duration_ms": 10.0, "tool_call_id": None, "error": None}],
    }
    masked = build_call_view(call.call_id, history=history, trace=trace, pii=False, objective_ms=3000)
    raw = build_call_view(call.call_id, history=history, trace=trace, pii=True, objective_ms=3000)
    lane0 = next(lane for lane in masked["lanes"] if lane["index"] == 0)
    assert lane0["text_source"] == "history" and lane0["user_text"] == "Мій номер +380***567"
    assert lane0["tools"][0]["args"] == {"phone": "+380***567"}
    assert masked["call"]["caller"] == "+380***567" and raw["call"]["caller"] == "+380501234567"
    assert next(lane for lane in raw["lanes"] if lane["index"] == 0)["user_text"] == "Мій номер +380501234567"
    only_history = build_call_view(call.call_id, history=history, trace=None, pii=False, objective_ms=3000,
                                   trace_error="expired")
    assert only_history["sources"] == {"history": True, "trace": False, "history_error": None,
                                       "trace_error": "expired"}
    assert [lane["index"] for lane in only_history["lanes"]] == [0]
    assert only_history["lanes"][0]["ttfw_ms"] == 999.0 and only_history["lanes"][0]["spans"] == []


# ----------------------------------------------------------------------------------- CLI, stack
def test_hash_password_command(tmp_path: Any) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "voxpulse_console", "ui", "hash-password", "--stdin", "--user",
                           "ops", "--pii", "--audio"], input="a-long-enough-password\n", capture_output=True,
                          text=True, timeout=60, check=True)
    entry = proc.stdout.strip()
    assert entry.endswith(":pii+audio")
    users = auth.parse_users(entry)
    assert users["ops"].can_view_pii and users["ops"].can_play_audio
    assert auth.verify_password("a-long-enough-password", users["ops"].password_hash)
    assert "a-long-enough-password" not in proc.stdout + proc.stderr
    short = subprocess.run([sys.executable, "-m", "voxpulse_console", "ui", "hash-password", "--stdin"],
                           input="short\n", capture_output=True, text=True, timeout=60, check=False)
    assert short.returncode == 2 and "12 characters" in short.stderr


def test_the_stack_starts_the_console_only_with_users(monkeypatch: pytest.MonkeyPatch) -> None:
    from voxpulse_console import stack
    from voxpulse_console.stack import _supervisor

    monkeypatch.delenv("VOXPULSE_UI_USERS", raising=False)
    assert "ui" not in _supervisor.component_names(None)
    assert "ui" in _supervisor.component_names(None, {"VOXPULSE_UI_USERS": "x"})
    with pytest.raises(stack.StackError, match="VOXPULSE_UI_USERS"):
        stack.up(["ui"], state_dir="/nonexistent-voxpulse-state")
    assert set(stack.COMPONENTS) <= set(_supervisor.component_names(None))


def test_demo_login_is_random_and_hashed() -> None:
    from voxpulse_console.cli import _demo_login

    user, password, env = _demo_login()
    _, password2, _ = _demo_login()
    assert password != password2 and len(password) >= 16
    (entry,) = env["VOXPULSE_UI_USERS"].split()
    assert password not in entry
    assert auth.verify_password(password, auth.parse_users(entry)[user].password_hash)
