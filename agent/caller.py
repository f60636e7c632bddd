"""Callers that speak: the simulator's scenarios as real participants of a LiveKit room.

Each caller creates a room, dispatches the agent to it by name (explicit dispatch, as a SIP
dispatch rule does), joins with the LiveKit rtc SDK and publishes a microphone track. It then
says its scenario's lines -- synthesized by espeak-ng (Ukrainian or Russian voice), resampled to
48 kHz by sox, sent in real time as 10 ms frames -- listens to the agent's track, barges in and
hangs up as its scenario says. Before each line it sets the participant attribute
``voxpulse.sim.line`` (``agent.local``): the local pipeline's STT is SCRIPTED and returns that line
for the utterance it hears, it does not recognise the words.

The caller measures time to first word on its own side, per turn: the moment its last audible
frame of the line was sent -> the first audible frame of the agent received (after Opus, the
network and the jitter buffer), with "audible" = RMS above :data:`AUDIBLE_RMS` over 10 ms.

    results = await run_calls(["order_tyres", "order_status"], url=..., api_key=..., api_secret=...)
    results[0].turns[0].ttfw_ms

``python -m agent.caller --calls 5`` runs calls against the LiveKit server of the stack's env file
(``voxpulse stack env``) and prints the caller-side TTFW per turn as JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from livekit import api, rtc

from . import settings
from .local import LINE_ATTRIBUTE, encode_line
from .settings import DEFAULT_AGENT_NAME
from .sim.scenarios import SCENARIOS, Scenario
from .speech import AUDIBLE_RMS, check_tools, synthesize

__all__ = ["AUDIBLE_RMS", "CallerResult", "CallerTurn", "from_dict", "place_call", "run_calls"]

log = logging.getLogger("agent.caller")

RATE = 48000
FRAME_MS = 10
FRAME_SAMPLES = RATE * FRAME_MS // 1000
AGENT_STATE_ATTRIBUTE = "lk.agent.state"


@dataclass
class CallerTurn:
    """One line the caller said and what it heard back."""

    index: int
    line: str
    speech_end: float  # wall clock: the last audible frame of the line was sent
    first_audio: float | None = None  # wall clock: the first audible agent frame after it arrived
    barge_in: bool = False  # the caller said this line while the agent was still answering

    @property
    def ttfw_ms(self) -> float | None:
        return None if self.first_audio is None else round((self.first_audio - self.speech_end) * 1000, 1)


@dataclass
class CallerResult:
    scenario: str
    room: str
    room_sid: str = ""
    identity: str = ""
    turns: list[CallerTurn] = field(default_factory=list)
    joined_at: float = 0.0
    hangup_at: float = 0.0
    agent_joined: bool = False
    greeting_heard: bool = False
    admitted_at: float | None = None  # the LiveKit server admitted the caller (its joined_at)
    greeting_audio: float | None = None  # wall clock: the greeting's first audible frame arrived
    error: str | None = None

    @property
    def greeting_ms(self) -> float | None:
        """What the caller waited for the greeting: admitted to the room (the server's stamp, on this
        machine's clock) -> its first audible frame."""
        if self.greeting_audio is None or self.admitted_at is None:
            return None
        return round((self.greeting_audio - self.admitted_at) * 1000, 1)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for t, turn in zip(d["turns"], self.turns, strict=True):
            t["ttfw_ms"] = turn.ttfw_ms
        return d


# ------------------------------------------------------------------------------------------------
# audio
# ------------------------------------------------------------------------------------------------
def _rms(samples: npt.NDArray[np.int16]) -> float:
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(samples.astype(np.float32) ** 2)))


class _Mouth:
    """Pushes 10 ms frames into the microphone source in real time: silence, or a line's audio."""

    def __init__(self, source: rtc.AudioSource) -> None:
        self._source = source
        self._pending: npt.NDArray[np.int16] | None = None
        self._pos = 0
        self._done: asyncio.Future[float] | None = None
        self._last_audible = 0.0
        self._silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._stopped = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        k = 0
        while not self._stopped:
            k += 1
            delay = t0 + k * FRAME_MS / 1000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.2:  # the loop fell behind (overload): resync instead of bursting
                t0, k = loop.time(), 0
            chunk = self._silence
            if self._pending is not None:
                chunk = self._pending[self._pos:self._pos + FRAME_SAMPLES]
                if chunk.size < FRAME_SAMPLES:
                    chunk = np.concatenate([chunk, self._silence[: FRAME_SAMPLES - chunk.size]])
                self._pos += FRAME_SAMPLES
            frame = rtc.AudioFrame(chunk.tobytes(), RATE, 1, FRAME_SAMPLES)
            await self._source.capture_frame(frame)
            if self._pending is not None:
                if _rms(chunk) > AUDIBLE_RMS:
                    self._last_audible = time.time()
                if self._pos >= self._pending.size:
                    self._pending = None
                    if self._done is not None and not self._done.done():
                        self._done.set_result(self._last_audible or time.time())

    async def say(self, samples: npt.NDArray[np.int16]) -> float:
        """Says ``samples`` (48 kHz mono); returns when the last frame was sent, with the wall
        clock time of its last audible frame."""
        self._last_audible = 0.0
        self._done = asyncio.get_running_loop().create_future()
        self._pos = 0
        self._pending = samples
        return await self._done

    def stop(self) -> None:
        self._stopped = True


class _Ear:
    """Listens to the agent's track; tells when the first audible frame after a moment arrived."""

    def __init__(self) -> None:
        self._waiters: list[tuple[float, asyncio.Future[float]]] = []
        self.last_audible = 0.0
        self.first_audible: float | None = None  # wall clock: the call's first audible agent frame
        self.frames = 0

    async def listen(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1, frame_size_ms=FRAME_MS)
        try:
            async for ev in stream:
                self.frames += 1
                data = np.frombuffer(ev.frame.data, dtype=np.int16)
                if _rms(data) <= AUDIBLE_RMS:
                    continue
                now = time.time()
                self.last_audible = now
                if self.first_audible is None:
                    self.first_audible = now
                if self._waiters:
                    keep = []
                    for after, fut in self._waiters:
                        if now > after and not fut.done():
                            fut.set_result(now)
                        elif not fut.done():
                            keep.append((after, fut))
                    self._waiters = keep
        finally:
            await stream.aclose()

    async def first_audible_after(self, t: float, timeout: float) -> float | None:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.append((t, fut))
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None


class _AgentState:
    """The agent participant's ``lk.agent.state`` attribute, with waits on it."""

    def __init__(self) -> None:
        self.state = ""
        self.changed = asyncio.Event()
        self.history: list[tuple[float, str]] = []

    def update(self, state: str) -> None:
        if state and state != self.state:
            self.state = state
            self.history.append((time.time(), state))
            self.changed.set()

    async def wait_for(self, states: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.state not in states:
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        return True

    async def wait_answered(self, timeout: float) -> bool:
        """Until the agent has left "listening" (thinking/speaking) and come back to it."""
        if not await self.wait_for({"thinking", "speaking"}, min(timeout, 10.0)):
            return False
        return await self.wait_for({"listening"}, timeout)


# ------------------------------------------------------------------------------------------------
# one call
# ------------------------------------------------------------------------------------------------
def _http_url(url: str) -> str:
    return url.replace("wss://", "https://").replace("ws://", "http://")


async def place_call(
    scenario: Scenario,
    *,
    url: str,
    api_key: str,
    api_secret: str,
    agent_name: str = DEFAULT_AGENT_NAME,
    room: str | None = None,
    identity: str | None = None,
    attributes: dict[str, str] | None = None,
    voice_cache: dict[str, npt.NDArray[np.int16]] | None = None,
    think_s: float = 0.4,
    turn_timeout_s: float = 20.0,
    barge_in_after_s: float = 0.9,
) -> CallerResult:
    """One call, start to hang-up. ``attributes`` are the caller's participant attributes at join
    (minted into its token by the server API), e.g. ``sip.callID`` for a SIP-like caller."""
    room_name = room or f"voxpulse-{scenario.name}-{secrets.token_hex(3)}"
    ident = identity or f"caller-{secrets.token_hex(3)}"
    result = CallerResult(scenario=scenario.name, room=room_name, identity=ident)
    cache = voice_cache if voice_cache is not None else {}
    lines = list(scenario.utterances)
    for line in lines:  # synthesis before joining: the call itself runs in real time
        if line not in cache:
            cache[line] = await asyncio.to_thread(synthesize, line, rate=RATE)

    lkapi = api.LiveKitAPI(_http_url(url), api_key, api_secret)
    lk_room = rtc.Room()
    mouth: _Mouth | None = None
    tasks: list[asyncio.Task[Any]] = []
    ear = _Ear()
    agent = _AgentState()
    agent_joined = asyncio.Event()
    stage = "creating the room"  # what the call was doing when it failed: every error says it
    try:
        await lkapi.room.create_room(api.CreateRoomRequest(name=room_name, empty_timeout=30, departure_timeout=5))
        stage = f"dispatching agent {agent_name!r}"
        await lkapi.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(
            agent_name=agent_name, room=room_name, metadata=json.dumps({"scenario": scenario.name}),
        ))
        token = (
            api.AccessToken(api_key, api_secret).with_identity(ident)
            .with_grants(api.VideoGrants(room_join=True, room=room_name, can_update_own_metadata=True))
        )
        if attributes:
            token = token.with_attributes(attributes)

        def on_track(track: rtc.Track, _pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
            if track.kind == rtc.TrackKind.KIND_AUDIO and p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
                tasks.append(asyncio.create_task(ear.listen(track), name=f"ear-{ident}"))

        def on_participant(p: rtc.RemoteParticipant) -> None:
            if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
                agent_joined.set()
                agent.update(p.attributes.get(AGENT_STATE_ATTRIBUTE, ""))

        def on_attrs(changed: dict[str, str], p: rtc.Participant) -> None:
            is_agent = getattr(p, "kind", None) == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
            if AGENT_STATE_ATTRIBUTE in changed and is_agent:
                agent.update(changed[AGENT_STATE_ATTRIBUTE])

        lk_room.on("track_subscribed", on_track)
        lk_room.on("participant_connected", on_participant)
        lk_room.on("participant_attributes_changed", on_attrs)
        stage = "joining the room"
        await lk_room.connect(url, token.to_jwt())
        result.joined_at = time.time()
        admitted = lk_room.local_participant.joined_at
        result.admitted_at = admitted.timestamp() if admitted is not None else None
        result.room_sid = await lk_room.sid
        for p in lk_room.remote_participants.values():
            on_participant(p)
        source = rtc.AudioSource(RATE, 1, queue_size_ms=50)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
        await lk_room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        mouth = _Mouth(source)
        tasks.append(asyncio.create_task(mouth.run(), name=f"mouth-{ident}"))

        stage = f"waiting {turn_timeout_s:.0f} s for agent {agent_name!r} to join"
        try:
            await asyncio.wait_for(agent_joined.wait(), turn_timeout_s)
        except TimeoutError:
            stage += await _dispatch_state(lkapi, room_name)
            raise
        result.agent_joined = True
        stage = "waiting for the greeting"
        # the greeting: the agent speaks first, the caller waits until it is done
        result.greeting_heard = await agent.wait_answered(turn_timeout_s)
        result.greeting_audio = ear.first_audible if result.greeting_heard else None
        barge_next = False
        for i, line in enumerate(lines):
            stage = f"turn {i + 1} of {len(lines)}"
            if not barge_next:
                await asyncio.sleep(scenario.pauses[i] if i < len(scenario.pauses) else think_s)
            await lk_room.local_participant.set_attributes({LINE_ATTRIBUTE: encode_line(i, line)})
            speech_end = await mouth.say(cache[line])
            turn = CallerTurn(i, line, speech_end, barge_in=barge_next)
            result.turns.append(turn)
            last = i == len(lines) - 1
            turn.first_audio = await ear.first_audible_after(speech_end, turn_timeout_s)
            if turn.first_audio is None:
                break  # no answer: the caller gives up
            if last and scenario.hangup_mid_answer:
                await asyncio.sleep(0.3)  # hangs up while the agent is talking
                break
            barge_next = (i + 1) in scenario.barge_in
            if barge_next:
                await asyncio.sleep(barge_in_after_s)  # talks over the agent's answer
                continue
            await agent.wait_for({"listening"}, turn_timeout_s)
        await asyncio.sleep(0.2)
    except Exception as e:  # a failed call is a result, not a crash of the run
        result.error = f"{stage}: {type(e).__name__}" + (f": {e}" if str(e) else "")
    finally:
        if mouth is not None:
            mouth.stop()
        result.hangup_at = time.time()
        with contextlib.suppress(Exception):
            await lk_room.disconnect()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        await lkapi.aclose()
    return result


async def _dispatch_state(lkapi: api.LiveKitAPI, room: str) -> str:
    """What the server says of the room's dispatch, for the error of a call whose agent never came:
    no job at all (no worker took it: none registered, or every one reported itself full) or a job
    that did not join (the worker's job process failed or was slow to start)."""
    try:
        dispatches = await lkapi.agent_dispatch.list_dispatch(room)
    except Exception as exc:
        return f" (the dispatch could not be read: {type(exc).__name__})"
    if not dispatches:
        return " (the server has no dispatch for the room)"
    jobs = [j for d in dispatches for j in d.state.jobs]
    if not jobs:
        return " (dispatched, but no worker took the job: none available or all reported full)"
    # the server stores a job only once a worker accepted it (and it sent the assignment): its status
    # (JS_RUNNING from the offer on) then says whether the worker reported the job failed or ended
    states = ", ".join(sorted({api.JobStatus.Name(j.state.status) for j in jobs}))
    who = ", ".join(sorted({j.state.participant_identity for j in jobs if j.state.participant_identity}))
    return (f" (a worker accepted the job and was sent its assignment, but its agent did not join"
            f"{f' as {who}' if who else ''}; job status {states})")


async def run_calls(
    scenarios: Sequence[str | Scenario],
    *,
    url: str,
    api_key: str,
    api_secret: str,
    concurrency: int = 5,
    agent_name: str = DEFAULT_AGENT_NAME,
    room_names: Sequence[str | None] | None = None,
    attributes: Sequence[dict[str, str] | None] | None = None,
    arrival_s: float = 0.7,
) -> list[CallerResult]:
    """Places one call per scenario, at most ``concurrency`` at a time, ``arrival_s`` apart."""
    check_tools()
    chosen = [SCENARIOS[s] if isinstance(s, str) else s for s in scenarios]
    sem = asyncio.Semaphore(max(1, concurrency))
    cache: dict[str, npt.NDArray[np.int16]] = {}
    for line in {u for s in chosen for u in s.utterances}:
        cache[line] = await asyncio.to_thread(synthesize, line, rate=RATE)

    async def one(i: int, sc: Scenario) -> CallerResult:
        await asyncio.sleep(i * arrival_s if i < concurrency else 0.0)
        async with sem:
            return await place_call(
                sc, url=url, api_key=api_key, api_secret=api_secret, agent_name=agent_name,
                room=room_names[i] if room_names else None,
                attributes=attributes[i] if attributes else None, voice_cache=cache,
            )

    return list(await asyncio.gather(*(one(i, sc) for i, sc in enumerate(chosen))))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agent.caller", description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=5)
    p.add_argument("--arrival", type=float, default=0.7, help="seconds between call starts")
    p.add_argument("--scenario", action="append", help="scenario names (repeatable; default order_tyres)")
    p.add_argument("--agent-name", default=None, help=f"default ${settings.AGENT_NAME.name} or {DEFAULT_AGENT_NAME}")
    p.add_argument("--spec", action="store_true",
                   help="read the calls from stdin as JSON: [{scenario, room?, attributes?}, ...]")
    args = p.parse_args(argv)
    args.agent_name = args.agent_name or settings.text(settings.AGENT_NAME)
    url, key, secret = (settings.text(v) or "" for v in (settings.LIVEKIT_URL, settings.LIVEKIT_API_KEY,
                                                       settings.LIVEKIT_API_SECRET))
    if not (url and key and secret):
        print("set LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET (e.g. from `voxpulse stack env`)", file=sys.stderr)
        return 2
    if args.spec:
        spec = json.load(sys.stdin)
        # a scenario by name, or one given whole (a replay's, Scenario.as_dict)
        chosen = [Scenario.from_dict(c["scenario"]) if isinstance(c["scenario"], dict) else str(c["scenario"])
                  for c in spec]
        rooms = [c.get("room") for c in spec]
        attrs = [c.get("attributes") for c in spec]
    else:
        names = args.scenario or ["order_tyres"]
        chosen = [names[i % len(names)] for i in range(args.calls)]
        rooms, attrs = [None] * len(chosen), [None] * len(chosen)
    results = asyncio.run(run_calls(chosen, url=url, api_key=key, api_secret=secret, concurrency=args.concurrency,
                                    agent_name=args.agent_name, room_names=rooms, attributes=attrs,
                                    arrival_s=args.arrival))
    for r in results:
        print(json.dumps(r.as_dict(), ensure_ascii=False), flush=True)
    return 0 if all(r.error is None for r in results) else 1


def from_dict(d: dict[str, Any]) -> CallerResult:
    """A result printed by ``main`` (JSON), back as a :class:`CallerResult`."""
    turns = [CallerTurn(t["index"], t["line"], t["speech_end"], t["first_audio"], t["barge_in"]) for t in d["turns"]]
    fields = {k: v for k, v in d.items() if k != "turns"}
    return CallerResult(**fields, turns=turns)


if __name__ == "__main__":
    raise SystemExit(main())
