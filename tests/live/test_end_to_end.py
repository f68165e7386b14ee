"""Receiver + live predictor + a champion promotion in the middle of a stream, all real: ``perfspec live``
as a subprocess, a client posting EventList batches over HTTP, MLflow's registry on SQLite."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from perfspec.collect.receiver import AuditReceiver
from perfspec.live.metrics import parse_exposition
from perfspec.settings import ReceiverSettings
from tests.live.conftest import LiveProcess, Registry, event_list, events_of, live_env, ngram_bundle
from tests.synthetic import chain_actions

BATCH = 250


def _metrics(url: str) -> dict[str, float]:
    return parse_exposition(httpx.get(f"{url}/metrics").text)


def _wait_for_actions(url: str, count: int) -> dict[str, float]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        values = _metrics(url)
        if values["perfspec_live_actions_total"] >= count:
            return values
        time.sleep(0.05)
    raise AssertionError(f"the engine did not reach {count} actions: {values}")


def _lines(folder: Path, pattern: str) -> list[bytes]:
    return [line for path in sorted(folder.glob(pattern)) for line in path.read_bytes().splitlines()]


def test_a_champion_promoted_mid_stream_takes_over_without_touching_what_is_persisted(
    tmp_path: Path, registry: Registry
) -> None:
    actions = chain_actions(4000, seed=5)
    registry.promote(registry.register(ngram_bundle(tmp_path / "m1", chain_actions(1500, seed=1))))
    live = LiveProcess(
        [
            "--model",
            "models:/perfspec@champion",
            "--listen",
            "127.0.0.1:0",
            "--out",
            str(tmp_path / "live"),
            "--events",
            str(tmp_path / "events"),
        ],
        live_env(tmp_path, registry, PERFSPEC_LIVE__POLL_SECONDS="0.2"),
    )
    reference = AuditReceiver(tmp_path / "reference", ReceiverSettings(port=0)).start()  # no predictor
    try:
        url = live.url()
        events = events_of(actions, users=["alice", "system:node:n1", "bob"])
        batches = [event_list(events[i : i + BATCH]) for i in range(0, len(events), BATCH)]
        with httpx.Client() as client:
            for number, batch in enumerate(batches):
                if number == len(batches) // 2:  # half-way: the nightly retraining promotes v2
                    _wait_for_actions(url, number * BATCH)
                    registry.promote(registry.register(ngram_bundle(tmp_path / "m2", chain_actions(1500, 2))))
                    live.wait_for("loaded models:/perfspec/2")
                for target in (f"{url}/audit", reference.post_url):
                    reply = client.post(target, json=batch)
                    assert reply.status_code == 200 and reply.json()["accepted"] == BATCH
        values = _wait_for_actions(url, len(actions))
    finally:
        reference.stop()
        code = live.stop()
    assert code == 0, live.lines

    # every acknowledged event persisted exactly as by a receiver without prediction
    assert _lines(tmp_path / "events", "audit-*.jsonl") == _lines(tmp_path / "reference", "audit-*.jsonl")

    # predictions switch version once, where the promotion happened
    records = [json.loads(line) for line in _lines(tmp_path / "live", "predictions-*.jsonl")]
    versions = [r["model_version"] for r in records]
    half = len(actions) // 2
    assert versions == ["models:/perfspec/1"] * half + ["models:/perfspec/2"] * half
    assert [r["audit_id"] for r in records] == [e["auditID"] for e in events]
    assert all(len(r["predictions"]) == 5 and r["stream"] == "global" for r in records)

    # the metrics add up
    v1, v2 = (values[f'perfspec_live_predictions_total{{version="models:/perfspec/{n}"}}'] for n in (1, 2))
    assert values["perfspec_live_events_total"] == values["perfspec_live_actions_total"] == len(actions)
    assert (v1, v2) == (half, half) and values["perfspec_live_model_swaps_total"] == 1
    scored = values["perfspec_live_scored_total"]
    assert scored == len(actions) - 1
    assert values["perfspec_live_lead_time_seconds_count"] == scored
    assert values["perfspec_live_prediction_latency_seconds_count"] == len(actions)
    hits = [values[f'perfspec_live_hits_total{{k="{k}"}}'] for k in (1, 3, 5, 10)]
    assert hits == sorted(hits) and hits[-1] <= scored
    unexpected = _lines(tmp_path / "live", "unexpected-*.jsonl")
    assert values["perfspec_live_unexpected_total"] == len(unexpected) == scored - hits[2]  # top 5
    assert sum(v for k, v in values.items() if k.startswith("perfspec_live_output_dropped_total")) == 0
    summary = json.loads((tmp_path / "live" / "summary.json").read_text())
    assert summary["predictions_by_version"] == {"models:/perfspec/1": half, "models:/perfspec/2": half}
    assert summary["scored"] == scored and summary["hit_at"]["5"] == hits[2] / scored
    assert any("live: 4,000 events, 4,000 actions" in line for line in live.lines)


def test_following_a_receiver_folder_predicts_its_events_and_resumes_after_a_restart(tmp_path: Path) -> None:
    import re

    folder = tmp_path / "campaign"
    folder.mkdir()
    events = events_of(chain_actions(300, seed=4))
    (folder / "audit-000001.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events[:200]))
    model = ngram_bundle(tmp_path / "m", chain_actions(1000, seed=1))
    args = [
        "--model",
        str(model),
        "--follow",
        str(folder),
        "--http",
        "127.0.0.1:0",
        "--out",
        str(tmp_path / "live"),
    ]
    for number, expected in ((1, 200), (2, 300)):
        live = LiveProcess(args, live_env(tmp_path))
        found = re.search(r"predictions at (http://\S+)/predictions", live.wait_for("live: following"))
        assert found is not None
        assert _wait_for_actions(found.group(1), expected)["perfspec_live_actions_total"] == expected
        if number == 1:  # the receiver moves on to a new file while the predictor is stopped
            (folder / "audit-000002.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events[200:]))
        assert live.stop() == 0, live.lines
    records = [json.loads(line) for line in _lines(tmp_path / "live", "predictions-*.jsonl")]
    assert [r["audit_id"] for r in records] == [e["auditID"] for e in events]  # none skipped, none twice


def test_a_command_line_mistake_is_one_line_with_a_hint(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "perfspec",
            "live",
            "--model",
            "x",
            "--listen",
            "127.0.0.1:0",
            "--follow",
            ".",
        ],
        capture_output=True,
        text=True,
        env=live_env(tmp_path),
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: give exactly one of --listen HOST:PORT and --follow DIR_OR_FILE",
        "  hint: --listen 127.0.0.1:9444 to be the webhook; --follow raw/<campaign> to read its files",
    ]
