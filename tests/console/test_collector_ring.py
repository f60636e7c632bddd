"""The ring's membership rules (the live routing-around is in tests/stack/test_tiered_e2e.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxpulse_console.stack._topology import (
    MAX_COLLECTORS,
    Ring,
    processing_ports,
    read_ring_file,
    write_ring_file,
)


def test_ports_are_distinct_and_clear_of_the_stack() -> None:
    taken = {4317, 4318, 4417, 4418, 8888, 8889, 9090, 9093, 13133, 13134, 14269, 16685, 16686, 13150}
    seen: set[int] = set()
    for k in range(1, MAX_COLLECTORS + 1):
        p = processing_ports(k)
        ports = {p.otlp, p.metrics, p.telemetry, p.health}
        assert len(ports) == 4 and not ports & taken and not ports & seen
        seen |= ports
    with pytest.raises(ValueError, match="1 to 9"):
        processing_ports(MAX_COLLECTORS + 1)


def test_ring_file_round_trip(tmp_path: Path) -> None:
    f = tmp_path / "ring.yaml"
    write_ring_file(f, ["127.0.0.1:4341", "127.0.0.1:4343"])
    assert read_ring_file(f) == ["127.0.0.1:4341", "127.0.0.1:4343"]


class Probes:
    def __init__(self) -> None:
        self.answers: dict[int, str] = {}

    def __call__(self, url: str, timeout_s: float) -> str:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        return self.answers.get(port, "ok")


def test_refused_leaves_at_once_slow_after_three_back_after_two(tmp_path: Path) -> None:
    probes = Probes()
    reloads: list[list[str]] = []
    ring = Ring([processing_ports(k) for k in (1, 2, 3)], tmp_path / "ring.yaml", reloads.append, probe=probes)
    assert not ring.step() and reloads == []

    probes.answers[13142] = "refused"  # p2 killed
    assert ring.step()
    assert reloads[-1] == ["127.0.0.1:4341", "127.0.0.1:4343"]
    assert read_ring_file(tmp_path / "ring.yaml") == reloads[-1]

    probes.answers[13143] = "slow"  # p3 saturated: stays for two rounds, leaves on the third
    assert not ring.step() and not ring.step()
    assert ring.step() and reloads[-1] == ["127.0.0.1:4341"]

    del probes.answers[13142]  # p2 back: needs two good answers
    assert not ring.step()
    assert ring.step() and reloads[-1] == ["127.0.0.1:4341", "127.0.0.1:4342"]
    assert ring.status()["changes"] == 3
    assert 'voxpulse_ring_backend_up{collector="p3"} 0' in ring.metrics()


def test_the_ring_never_empties(tmp_path: Path) -> None:
    probes = Probes()
    reloads: list[list[str]] = []
    ring = Ring([processing_ports(1)], tmp_path / "ring.yaml", reloads.append, probe=probes)
    probes.answers[13141] = "refused"
    assert not ring.step() and reloads == [] and ring.status()["ring"] == ["127.0.0.1:4341"]
