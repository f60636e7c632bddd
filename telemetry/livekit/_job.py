"""The call's identity from the LiveKit job it runs in: room, job, and the SIP call and caller.

None of the ids it offers as the call's id is personal data (the room *name* can be: LiveKit's SIP
dispatch builds it from the caller's number, so it is only ever a PII attribute).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from livekit import rtc

__all__: list[str] = []


@dataclass(frozen=True, slots=True)
class _JobInfo:
    room_name: str | None = None
    room_sid: str | None = None
    job_id: str | None = None
    sip_call_id: str | None = None
    caller: str | None = None

    @property
    def call_id(self) -> str | None:
        """The SIP call id, else the room's id, else the job's id: none of them personal data."""
        return self.sip_call_id or self.room_sid or self.job_id


def _from_job() -> _JobInfo:
    """What the current LiveKit job (if any) tells about the call."""
    try:
        from livekit.agents import get_job_context

        ctx = get_job_context(required=False)
    except Exception:  # no livekit or no job: not an error
        return _JobInfo()
    if ctx is None:
        return _JobInfo()
    job = getattr(ctx, "job", None)
    room_name = str(getattr(getattr(job, "room", None), "name", "") or "") or None
    room_sid = str(getattr(getattr(job, "room", None), "sid", "") or "") or None
    job_id = str(getattr(job, "id", "") or "") or None
    sip_call_id: str | None = None
    caller: str | None = None
    try:
        room_name = room_name or str(ctx.room.name) or None
        participants: list[rtc.RemoteParticipant] = list(ctx.room.remote_participants.values())
    except Exception:  # an unconnected room
        participants = []
    # a SIP participant first; LiveKit SIP stamps sip.* attributes on it (sip.callID, sip.phoneNumber)
    participants.sort(key=lambda p: 0 if _is_sip(p) else 1)
    for p in participants:
        attrs = getattr(p, "attributes", None) or {}
        if attrs.get("sip.callID") or attrs.get("sip.phoneNumber"):
            sip_call_id = str(attrs.get("sip.callID") or "") or None
            caller = str(attrs.get("sip.phoneNumber") or "") or None
            break
    return _JobInfo(room_name, room_sid, job_id, sip_call_id, caller)


def _is_sip(participant: rtc.RemoteParticipant) -> bool:
    try:
        from livekit import rtc

        return bool(participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP)
    except Exception:
        return False
