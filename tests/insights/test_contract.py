"""The v0 upload format is LiveKit's internal protocol: pinned here, so a livekit-agents upgrade that
changes it fails loudly (re-capture with ``python -m tests.insights.capture``, review the diff, adapt
voxpulse_console/insights, and list the version in docs/insights.md)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import livekit.agents

from tests.insights.capture import FIXTURES, capture, make_ogg, shape
from voxpulse_console.insights._wire import HEADER_FIELDS

MANIFEST = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))


def test_installed_livekit_agents_is_the_captured_version() -> None:
    assert livekit.agents.__version__ == MANIFEST["livekit_agents"], (
        f"livekit-agents {livekit.agents.__version__} is installed, the observability fixtures were captured "
        f"from {MANIFEST['livekit_agents']}: run `python -m tests.insights.capture` and review the format change"
    )


def test_header_fields_match_livekit_protocol() -> None:
    from livekit.protocol import metrics

    fields = {f.number: f.name for f in metrics.MetricsRecordingHeader.DESCRIPTOR.fields}
    ours = {n: name for n, (name, _) in HEADER_FIELDS.items()}
    assert {n: fields.get(n) for n in ours} == ours, "MetricsRecordingHeader's field numbers changed"


def test_livekit_sends_what_the_fixtures_hold() -> None:
    """livekit-agents' own upload code, run now, sends the paths, headers, token claims, parts and
    header fields of the committed capture."""
    with tempfile.TemporaryDirectory() as tmp:
        ogg = Path(tmp) / "recording.ogg"
        make_ogg(ogg)
        live = shape(capture(ogg))
    assert sorted(live) == sorted(MANIFEST["shape"]), "the upload paths changed"
    for path, expected in MANIFEST["shape"].items():
        assert live[path] == expected, f"{path}: the request's format changed"
