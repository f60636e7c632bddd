"""Offline call simulator: real LiveKit ``AgentSession``s, fake providers, synthetic audio.

Each simulated call runs the production path: ``TyreAssistant`` in an ``AgentSession`` (VAD,
endpointing, streaming STT, LLM steps with tools, TTS, playout) instrumented by
``telemetry.livekit.instrument_session`` -- the same call the LiveKit entry point makes. Only the
providers (:mod:`agent.sim.providers`), the room (:mod:`agent.sim.audio`: queue audio in,
recording audio out) and the store API (:mod:`agent.sim.fake_shop`) are simulated. No server, no keys.

Caller audio is paced in real time (that is what VAD and endpointing measure), but utterances are
short and agent playout is time-scaled (``playout_scale``), so 20 calls at concurrency 10 take
about 16 s on 2 cores. Reproducible per call with ``seed`` (scenario choice and every provider latency).

    summary = await simulate(calls=20, concurrency=10, seed=7)
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from livekit.agents import AgentSession, AgentStateChangedEvent, APIConnectOptions, CloseReason
from livekit.agents.voice.agent_session import SessionConnectOptions

from telemetry.livekit import CallLog, SessionInstrumentation, instrument_session
from telemetry.pricing import PriceTable

from ..assistant import TyreAssistant
from ..shop_api import StoreClient
from .audio import QueueAudioInput, RecordingAudioOutput, silence_frame, speech_frame
from .fake_shop import FakeStore
from .latency import ProviderProfile
from .providers import CallerVoice, EnergyVAD, FakeTTS, ScriptedLLM, ScriptedSTT
from .scenarios import PHONE, Scenario, pick_scenarios

__all__ = ["CallResult", "SimOptions", "SimSummary", "TurnResult", "run_call", "simulate"]


@dataclass(frozen=True)
class SimOptions:
    profile: ProviderProfile = field(default_factory=ProviderProfile)
    frame_ms: int = 20
    playout_scale: float = 0.1  # agent audio "plays" 10x faster than real time
    speech_s_per_char: float = 0.012  # caller speech length per character of the utterance
    max_speech_s: float = 1.2
    think_s: float = 0.15  # caller pause after the agent finished
    endpointing_min_delay: float = 0.3
    turn_timeout_s: float = 20.0
    store_url: str | None = None
    arrival_s: float = 0.25  # calls arrive this far apart (at most `concurrency` in flight)


@dataclass
class TurnResult:
    index: int
    ttfw_ms: float | None  # what the telemetry measured live
    truth_ttfw_ms: float | None  # the fakes' own clock: end of fed speech -> first frame at the sink
    tools: tuple[str, ...]


@dataclass
class CallResult:
    call_id: str
    trace_id: str
    scenario: str
    outcome: str
    expected: str
    transfer_reason: str | None
    turns: list[TurnResult]
    cost_usd: float
    duration_s: float
    anomalies: list[tuple[str, str]]
    error: str | None = None

    @property
    def ttfw_ms(self) -> list[float]:
        return [t.ttfw_ms for t in self.turns if t.ttfw_ms is not None]


@dataclass
class SimSummary:
    calls: list[CallResult]
    wall_s: float
    concurrency: int
    seed: int

    @property
    def calls_per_s(self) -> float:
        return len(self.calls) / self.wall_s if self.wall_s else 0.0

    def ttfw_ms(self) -> list[float]:
        return [v for c in self.calls for v in c.ttfw_ms]

    def percentile(self, values: Sequence[float], q: float) -> float | None:
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]

    def slowest(self) -> CallResult | None:
        with_ttfw = [c for c in self.calls if c.ttfw_ms]
        return max(with_ttfw, key=lambda c: max(c.ttfw_ms)) if with_ttfw else None


class _Caller:
    """Feeds caller audio in real time: silence, or speech while an utterance is being said."""

    def __init__(self, audio_in: QueueAudioInput, voice: CallerVoice, frame_ms: int) -> None:
        self.audio_in = audio_in
        self.voice = voice
        self.frame_ms = frame_ms
        self._speech_frames = 0
        self._said = asyncio.Event()
        self.speech_end_times: list[float] = []
        self._stopped = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        frame_s = self.frame_ms / 1000
        t0 = loop.time()
        k = 0
        pos = 0
        silence = silence_frame(self.frame_ms)
        while not self._stopped:
            k += 1
            delay = t0 + k * frame_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._speech_frames > 0:
                self.audio_in.push(speech_frame(self.frame_ms, pos))
                pos += self.frame_ms * 16
                self._speech_frames -= 1
                if self._speech_frames == 0:
                    self.speech_end_times.append(time.time())
                    self._said.set()
            else:
                self.audio_in.push(silence)

    async def say(self, text: str, seconds: float) -> None:
        self.voice.utterance = text
        self._said.clear()
        self._speech_frames = max(1, round(seconds * 1000 / self.frame_ms))
        await self._said.wait()

    def stop(self) -> None:
        self._stopped = True
        self.audio_in.close()


class _AgentWatch:
    def __init__(self, session: AgentSession[None]) -> None:
        self.state = "initializing"
        self.changed = asyncio.Event()
        session.on("agent_state_changed", self._on)

    def _on(self, ev: AgentStateChangedEvent) -> None:
        self.state = str(ev.new_state)
        self.changed.set()

    async def wait_for(self, pred: Callable[[str], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not pred(self.state):
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                return False
        return True

    async def wait_answer(self, timeout: float) -> None:
        # the agent leaves "listening" (thinking/speaking), then comes back to it
        if await self.wait_for(lambda s: s != "listening", min(timeout, 6.0)):
            await self.wait_for(lambda s: s == "listening", timeout)



def _profile(options: SimOptions, scenario: Scenario) -> ProviderProfile:
    """The call's provider latencies: the options' profile, with the scenario's LLM outage if any."""
    prof = options.profile
    if scenario.llm_error_p is not None:
        prof = replace(prof, llm_ttft=replace(prof.llm_ttft, error_p=scenario.llm_error_p))
    return prof


def _session(prof: ProviderProfile, options: SimOptions, rng: random.Random, voice: CallerVoice) -> AgentSession[None]:
    """An AgentSession on the fake providers (each with its own seeded random source)."""
    retry = APIConnectOptions(max_retry=2, retry_interval=0.1, timeout=3.0)
    return AgentSession(
        vad=EnergyVAD(min_silence_s=prof.vad_silence_s),
        stt=ScriptedSTT(voice, final=prof.stt_final, interim=prof.stt_interim, silence_s=prof.vad_silence_s,
                        rng=random.Random(rng.getrandbits(64)), model=prof.stt_model),
        llm=ScriptedLLM(ttft=prof.llm_ttft, token_s=prof.llm_token_s, rng=random.Random(rng.getrandbits(64)),
                        model=prof.llm_model),
        tts=FakeTTS(ttfb=prof.tts_ttfb, char_s=prof.tts_char_s, rng=random.Random(rng.getrandbits(64)),
                    model=prof.tts_model, voice=prof.tts_voice),
        turn_handling={
            "endpointing": {"min_delay": options.endpointing_min_delay, "max_delay": 2.0},
            "interruption": {"enabled": True, "mode": "vad", "resume_false_interruption": False},
        },
        max_tool_steps=4,
        user_away_timeout=None,
        session_close_transcript_timeout=0.1,
        conn_options=SessionConnectOptions(llm_conn_options=retry, tts_conn_options=retry, stt_conn_options=retry),
    )


async def _hang_up(session: AgentSession[None]) -> None:
    """Close the session the way a SIP caller leaving the room does. AgentSession's public close
    (``aclose``) says the agent ended the call; RoomIO closes with PARTICIPANT_DISCONNECTED through
    this private method, and so do we (the outcome "abandoned" depends on it)."""
    await session._aclose_impl(reason=CloseReason.PARTICIPANT_DISCONNECTED)


async def _play(scenario: Scenario, session: AgentSession[None], watch: _AgentWatch, caller: _Caller,
                options: SimOptions) -> None:
    """The caller's side of the call: wait for the greeting, say each utterance and wait for the
    answer (or hang up while the agent answers the last one), then hang up."""
    await watch.wait_answer(options.turn_timeout_s)  # the greeting
    for i, text in enumerate(scenario.utterances):
        await asyncio.sleep(options.think_s)
        seconds = min(options.max_speech_s, 0.3 + len(text) * options.speech_s_per_char)
        await caller.say(text, seconds)
        last = i == len(scenario.utterances) - 1
        if last and scenario.hangup_mid_answer:
            await watch.wait_for(lambda s: s == "speaking", options.turn_timeout_s)
            await asyncio.sleep(0.05)
            break
        await watch.wait_answer(options.turn_timeout_s)
    await asyncio.sleep(0.05)
    caller.stop()
    await _hang_up(session)


def _result(instr: SessionInstrumentation, trace_id: str, scenario: Scenario, caller: _Caller,
            audio_out: RecordingAudioOutput, duration_s: float, error: str | None) -> CallResult:
    """What the telemetry measured for the call, next to the fakes' own clock."""
    truth = _truth_ttfw(caller.speech_end_times, audio_out.first_frame_times)
    turns = [TurnResult(t.index, round(t.ttfw_s * 1000, 1) if t.ttfw_s is not None else None,
                        truth.get(t.index), t.tool_calls) for t in instr.turns]
    return CallResult(
        call_id=instr.call_id,
        trace_id=trace_id,
        scenario=scenario.name,
        outcome=(instr.scope.outcome.value if instr.scope.outcome else "unknown"),
        expected=scenario.expected.value,
        transfer_reason=instr.scope.transfer_reason,
        turns=turns,
        cost_usd=round(instr.scope.cost_usd, 6),
        duration_s=round(duration_s, 3),
        anomalies=list(instr.anomalies),
        error=error,
    )


async def run_call(
    index: int,
    scenario: Scenario,
    *,
    seed: int,
    store: FakeStore,
    options: SimOptions = SimOptions(),
    price_table: PriceTable | None = None,
    call_log: CallLog | None = None,
    call_id: str | None = None,
    on_instrumented: Callable[[SessionInstrumentation], None] | None = None,
) -> CallResult:
    """One simulated call, start to hang-up."""
    rng = random.Random(f"{seed}:{index}")
    call_id = call_id or f"sim-{seed}-{index:04d}"
    voice = CallerVoice()
    session = _session(_profile(options, scenario), options, rng, voice)
    audio_in = QueueAudioInput()
    audio_out = RecordingAudioOutput(playout_scale=options.playout_scale)
    session.input.audio = audio_in
    session.output.audio = audio_out
    if scenario.store_failures:
        store.fail_for(call_id, *scenario.store_failures)
    client = StoreClient(base_url=options.store_url or store.url, headers={"x-call-id": call_id},
                         timeout_s=2.0, retries=2, backoff_s=0.02)
    caller = _Caller(audio_in, voice, options.frame_ms)
    watch = _AgentWatch(session)  # before start(): it must see the greeting's state changes
    # the history is the one given (False: none), never one of the environment's DATABASE_URL
    instr = instrument_session(session, call_id=call_id, caller=PHONE, room=call_id, price_table=price_table,
                               call_log=call_log if call_log is not None else False)
    if on_instrumented is not None:
        on_instrumented(instr)
    t0 = time.monotonic()
    error: str | None = None
    feeder: asyncio.Task[None] | None = None
    trace_id = ""
    try:
        async with instr as scope:
            trace_id = scope.trace_id
            await session.start(TyreAssistant(client), record=False)
            feeder = asyncio.create_task(caller.run(), name=f"caller-{call_id}")
            await _play(scenario, session, watch, caller, options)
    except Exception as e:  # a failed call is a result, not a crash of the simulation
        error = f"{type(e).__name__}: {e}"
    finally:
        caller.stop()
        if feeder is not None:
            feeder.cancel()
        await client.aclose()
    return _result(instr, trace_id, scenario, caller, audio_out, time.monotonic() - t0, error)


def _truth_ttfw(speech_ends: list[float], first_frames: list[float]) -> dict[int, float]:
    """Turn i: the end of the i-th utterance -> the first agent frame after it (ms)."""
    out: dict[int, float] = {}
    for i, end in enumerate(speech_ends):
        nxt = next((f for f in first_frames if f > end), None)
        if nxt is not None:
            out[i] = round((nxt - end) * 1000, 1)
    return out


async def simulate(
    calls: int = 20,
    concurrency: int = 10,
    seed: int = 1,
    *,
    scenarios: Sequence[str | Scenario] | None = None,
    options: SimOptions = SimOptions(),
    store_error_rate: float = 0.0,
    store_latency_s: float = 0.03,
    price_table: PriceTable | None = None,
    call_log: CallLog | None = None,
    on_call_done: Callable[[CallResult], None] | None = None,
    on_instrumented: Callable[[SessionInstrumentation], None] | None = None,
    run_id: str | None = None,
) -> SimSummary:
    """Runs ``calls`` simulated calls, at most ``concurrency`` at a time.

    Call ids are ``sim-{seed}-{run_id}-{index}``: the seed makes the calls reproducible, the run id
    (default: new per run) keeps call_ids unique across runs, in the trace store and in PostgreSQL alike.
    """
    run = run_id if run_id is not None else uuid.uuid4().hex[:6]
    chosen = pick_scenarios(calls, seed, scenarios)
    sem = asyncio.Semaphore(max(1, concurrency))
    results: list[CallResult] = []
    t0 = time.monotonic()
    async with FakeStore(latency_s=store_latency_s, error_rate=store_error_rate, seed=seed) as store:

        async def one(i: int, sc: Scenario) -> None:
            await asyncio.sleep(i * options.arrival_s if i < concurrency else 0.0)
            async with sem:
                r = await run_call(i, sc, seed=seed, store=store, options=options, price_table=price_table,
                                   call_log=call_log, on_instrumented=on_instrumented,
                                   call_id=f"sim-{seed}-{run}-{i:04d}")
            results.append(r)
            if on_call_done is not None:
                on_call_done(r)

        await asyncio.gather(*(one(i, sc) for i, sc in enumerate(chosen)))
    results.sort(key=lambda r: r.call_id)
    return SimSummary(results, time.monotonic() - t0, concurrency, seed)
