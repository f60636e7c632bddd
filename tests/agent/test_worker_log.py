"""What a failed real call's report shows of the agent's side (agent.realcalls.Worker.job_log): the
records of the job that served the room -- the worker's lines naming it and every line of its job
process -- and none of another call's."""

from __future__ import annotations

import json
from pathlib import Path

from agent.realcalls import Worker


def _write(path: Path, records: list[dict[str, object]]) -> None:
    lines = [json.dumps(r) for r in records]
    path.write_text("\n".join(["not json: a raw line from a library", *lines]) + "\n")


def test_job_log_is_the_rooms_job_and_its_process(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    _write(log, [
        {"message": "registered worker", "pid": 1, "timestamp": "t0"},
        {"message": "received job request", "pid": 1, "job_id": "AJ_a", "room": "room-a", "timestamp": "t1"},
        {"message": "received job request", "pid": 1, "job_id": "AJ_b", "room": "room-b", "timestamp": "t2"},
        {"message": "initializing process", "pid": 7, "timestamp": "t3"},
        {"message": "RoomIO linked", "pid": 7, "job_id": "AJ_a", "room": "room-a", "timestamp": "t4"},
        {"message": "RoomIO linked", "pid": 8, "job_id": "AJ_b", "room": "room-b", "timestamp": "t5"},
        {"message": "process is unresponsive", "pid": 7, "level": "WARNING", "timestamp": "t6"},
        {"message": "worker is at full capacity", "pid": 1, "timestamp": "t7"},
    ])
    worker = Worker({}, log_path=log)
    lines = worker.job_log("room-a").splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["t1", "t3", "t4", "t6"]
    assert lines[-1] == "t6 pid=7 WARNING process is unresponsive"
    assert worker.job_log("room-a", n=1) == "t6 pid=7 WARNING process is unresponsive"


def test_job_log_of_a_room_no_job_served(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    _write(log, [{"message": "registered worker", "pid": 1, "timestamp": "t0"}])
    assert Worker({}, log_path=log).job_log("room-z") == "(no log record names room 'room-z')"
