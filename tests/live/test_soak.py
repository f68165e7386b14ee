"""Soak: 100,000 events through ``perfspec live --listen`` (a real subprocess) posted in batches by a
client that retries like the API server, with a kill -9 and a restart in the middle. No acknowledged
event may be lost, and the counters go on from where the killed process last saved them."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from perfspec.live.metrics import parse_exposition
from tests.live.conftest import LiveProcess, event_list, events_of, live_env, ngram_bundle
from tests.synthetic import chain_actions

EVENTS = 100_000
BATCH = 400
JSON_HEADERS = {"Content-Type": "application/json"}


class _Client(threading.Thread):
    """Posts every batch until it is acknowledged (a failed or refused post is sent again)."""

    def __init__(self, bodies: list[tuple[list[str], bytes]], url: str) -> None:
        super().__init__(daemon=True)
        self.bodies = bodies
        self.url = url
        self.acked: list[str] = []
        self.acked_batches = 0
        self.retries = 0

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            for ids, body in self.bodies:
                while True:
                    try:
                        reply = client.post(f"{self.url}/audit", content=body, headers=JSON_HEADERS)
                        if reply.status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    self.retries += 1
                    time.sleep(0.05)
                self.acked += ids
                self.acked_batches += 1


def _persisted_ids(folder: Path) -> tuple[set[str], int]:
    ids, torn = set(), 0
    for path in sorted(folder.glob("audit-*.jsonl")):
        for line in path.read_bytes().splitlines():
            try:
                ids.add(orjson.loads(line)["auditID"])
            except orjson.JSONDecodeError:
                torn += 1  # a write cut by the kill: never acknowledged
    return ids, torn


@pytest.mark.slow
def test_a_kill_9_mid_stream_loses_no_acknowledged_event_and_the_counters_go_on(tmp_path: Path) -> None:
    began = time.monotonic()
    model = ngram_bundle(tmp_path / "model", chain_actions(2000, seed=1))
    events = events_of(chain_actions(EVENTS, seed=7), users=["alice", "bob", "system:node:n1"], step_ms=1)
    bodies = [
        ([e["auditID"] for e in events[i : i + BATCH]], orjson.dumps(event_list(events[i : i + BATCH])))
        for i in range(0, EVENTS, BATCH)
    ]
    args = ["--model", str(model), "--listen", "127.0.0.1:0", "--out", str(tmp_path / "live")]
    args += ["--events", str(tmp_path / "events")]
    env = live_env(tmp_path, PERFSPEC_LIVE__CHECKPOINT_SECONDS="0.5")
    first = LiveProcess(args, env)
    client = _Client(bodies, first.url())
    client.start()
    while client.acked_batches < len(bodies) // 2:
        assert client.is_alive() and time.monotonic() - began < 60
        time.sleep(0.01)
    first.process.kill()  # kill -9, while the client keeps posting
    first.process.wait(10)
    saved = json.loads((tmp_path / "live" / "state.json").read_text())
    acked_before = client.acked_batches
    second = LiveProcess(args, env)
    client.url = second.url()
    client.join(90)
    assert not client.is_alive()
    url = client.url
    deadline = time.monotonic() + 30
    values = parse_exposition(httpx.get(f"{url}/metrics").text)
    while values["perfspec_live_queue_actions"] and time.monotonic() < deadline:
        time.sleep(0.1)
        values = parse_exposition(httpx.get(f"{url}/metrics").text)
    assert second.stop() == 0, second.lines

    persisted, torn = _persisted_ids(tmp_path / "events")
    assert len(client.acked) == EVENTS and set(client.acked) <= persisted and torn <= 1
    assert values["perfspec_live_restarts_total"] == 1
    summary = json.loads((tmp_path / "live" / "summary.json").read_text())
    acked_after = (client.acked_batches - acked_before) * BATCH  # each acknowledged once, by the second
    assert summary["restarts"] == 1 and summary["events"] == saved["counts"]["events"] + acked_after
    assert summary["predictions"] > saved["engine"]["predictions"] > 0 and summary["overflow"] == 0
    assert len(list((tmp_path / "live").glob("predictions-*.jsonl"))) >= 2  # the second run's own file
    assert time.monotonic() - began < 120
