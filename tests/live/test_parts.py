"""The live predictor's parts, each for real: drop-oldest outputs, histograms and their exposition, the
per-event action rule against ``build_actions``, times, duplicate stages, the folder follower, model swaps,
the receiver hook, and the HTTP routes (``/predictions/<actor>``) on a real receiver."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from perfspec.actions import build_actions
from perfspec.actions.presets import resolve
from perfspec.collect.receiver import AuditReceiver
from perfspec.learn.families.ngram import NGram
from perfspec.learn.predict import Predictor
from perfspec.learn.vocab import Vocabulary
from perfspec.live.engine import Engine
from perfspec.live.events import RecentIds, epoch_seconds
from perfspec.live.follow import FolderFollower
from perfspec.live.metrics import Exposition, Histogram, parse_exposition
from perfspec.live.models import Served
from perfspec.live.output import DropOldest, Output
from perfspec.live.service import LiveService
from perfspec.live.web import ReadServer, parse_address
from perfspec.settings import ActionsSettings, LiveSettings, ReceiverSettings
from tests.live.conftest import audit_event, event_list, events_of
from tests.synthetic import chain_actions
from tests.test_replay import ngram_predictor

PAPER = resolve(ActionsSettings())


# -- outputs --------------------------------------------------------------------------------------------
def test_a_full_buffer_drops_its_oldest_items_and_counts_them() -> None:
    buffer: DropOldest[int] = DropOldest(3)
    for i in range(5):
        buffer.put(i)
    assert buffer.take() == [2, 3, 4] and buffer.dropped == 2 and buffer.put_count == 5
    assert buffer.take(timeout=0.01) == []


class _Stalled:
    """An output target that blocks until released (a consumer that stopped reading)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lines: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.release.wait()
        self.lines += data.splitlines()

    def close(self) -> None:
        pass


def test_a_stalled_output_never_blocks_the_producer_and_loses_only_its_oldest_records() -> None:
    target = _Stalled()
    output = Output("slow", target, capacity=100, log=lambda _line: None)  # type: ignore[arg-type]
    began = time.perf_counter()
    for i in range(10_000):
        output.put(b"%d\n" % i)
    assert time.perf_counter() - began < 1.0  # ~10k puts while the consumer is stuck
    target.release.set()
    output.close()
    written = [int(x) for x in target.lines]
    assert written[-100:] == list(range(9_900, 10_000))  # the newest are kept
    assert len(written) + output.dropped == 10_000 and output.dropped >= 9_800


# -- histograms and /metrics -----------------------------------------------------------------------------
def test_histograms_bucket_like_prometheus_and_estimate_quantiles() -> None:
    histogram = Histogram((1.0, 2.0, 4.0))
    for value in (0.5, 1.0, 1.5, 3.0, 10.0):
        histogram.observe(value)
    assert histogram.counts == [2, 1, 1, 1] and histogram.count == 5 and histogram.total == 16.0
    assert histogram.quantile(0.4) == pytest.approx(1.0)  # rank 2: the top of the first bucket
    assert histogram.quantile(0.5) == pytest.approx(1.5)  # rank 2.5: half-way through (1, 2]
    assert histogram.quantile(1.0) == 4.0  # the open top bucket answers its lower bound
    assert Histogram((1.0,)).quantile(0.5) is None
    again = Histogram((1.0, 2.0, 4.0))
    again.restore(histogram.to_state())
    assert again == histogram
    with pytest.raises(ValueError, match="increase"):
        Histogram((2.0, 1.0))

    exposition = Exposition()
    exposition.histogram("x_seconds", "help", histogram, 0.001)
    exposition.counter("y_total", "help", 3, {"version": 'models:/a"b'})
    text = exposition.text()
    values = parse_exposition(text)
    assert values['x_seconds_bucket{le="0.001"}'] == 2 and values['x_seconds_bucket{le="+Inf"}'] == 5
    assert values["x_seconds_count"] == 5 and values["x_seconds_sum"] == pytest.approx(0.016)
    assert values['y_total{version="models:/a\\"b"}'] == 3
    assert text.count("# TYPE x_seconds histogram") == 1


# -- events -> actions ---------------------------------------------------------------------------------
def test_the_per_event_rule_gives_what_build_actions_gives(tmp_path: Path) -> None:
    verbs = ["create", "get", None, "patch", "list", "delete", "", "update", "watch", "create"]
    resources = ["pods", "pods", "pods", "nodes", "events", None, "cm", "leases", "pods", "pods"]
    subresources = ["status", None, None, "", None, None, None, None, None, "exec"]
    count = len(verbs)
    table = pa.table(
        {
            "request_received_at": pa.array(
                [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)] * count, pa.timestamp("us", tz="UTC")
            ),
            "verb": pa.array(verbs, pa.string()),
            "resource": pa.array(resources, pa.string()),
            "subresource": pa.array(subresources, pa.string()),
            **{c: pa.nulls(count, pa.string()) for c in ("namespace", "name", "username", "audit_id")},
            "source_file": pa.array(["f"] * count),
            "source_line": pa.array(range(count), pa.int64()),
        }
    )
    pq.write_table(table, tmp_path / "events.parquet")
    custom = ActionsSettings(preset="custom", include_subresource=True, keep_reads=True)
    for name, settings in (("paper", ActionsSettings()), ("custom", custom)):
        out = tmp_path / name / "actions.txt"
        build_actions(tmp_path / "events.parquet", out, settings)
        rule = resolve(settings)
        mine = [rule.action_of(v, r, s) for v, r, s in zip(verbs, resources, subresources, strict=True)]
        assert [a for a in mine if a is not None] == out.read_text().splitlines(), name


def test_request_times_parse_to_epoch_seconds() -> None:
    assert epoch_seconds("2026-11-29T12:00:00Z") == dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC).timestamp()
    base = epoch_seconds("2026-11-29T12:00:00Z")
    assert base is not None
    assert epoch_seconds("2026-11-29T12:00:00.123456789Z") == pytest.approx(base + 0.123456)
    assert epoch_seconds("2026-11-29T14:00:00.5+02:00") == pytest.approx(base + 0.5)
    assert epoch_seconds("yesterday") is None and epoch_seconds(None) is None


def test_recent_ids_count_a_request_once_and_stay_bounded() -> None:
    recent = RecentIds(2)
    assert [recent.seen(x) for x in ("a", "a", "b", "c", "a", None, None)] == [
        False, True, False, False, False, False, False,
    ]  # fmt: skip


def _service(predictor: Predictor, tmp_path: Path, **settings: Any) -> LiveService:
    return LiveService(
        Served(predictor, "v1"), tmp_path / "live", LiveSettings(**settings), PAPER, log=lambda _line: None
    )


def test_a_later_stage_of_a_request_counts_once_and_reads_are_no_actions(tmp_path: Path) -> None:
    service = _service(ngram_predictor(chain_actions(200)), tmp_path).start()
    first = audit_event("create_pods", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), audit_id="r1")
    later = dict(first, stage="ResponseComplete")
    first["stage"] = "ResponseStarted"
    read = audit_event("get_pods", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    service.submit_lines([json.dumps(e).encode() for e in (first, later, read)] + [b"not json"])
    summary = service.stop()
    assert (summary["events"], summary["actions"], summary["duplicate_stages"]) == (3, 1, 1)
    assert summary["unparsable"] == 1


def test_a_full_queue_skips_prediction_but_counts_every_event(tmp_path: Path) -> None:
    from perfspec.audit.fastpath import EVENT_DECODER, event_row_of

    service = _service(ngram_predictor(chain_actions(200)), tmp_path, queue_events=5)
    rows = [event_row_of(EVENT_DECODER.decode(json.dumps(e))) for e in events_of(chain_actions(12))]
    service.submit(rows[:4])
    service.submit(rows[4:])  # 8 more do not fit: not predicted, counted
    service.start()
    summary = service.stop()
    assert (summary["events"], summary["actions"], summary["overflow"]) == (12, 4, 8)


# -- the folder follower -------------------------------------------------------------------------------
class _Collect:
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def submit_lines(self, lines: list[bytes]) -> str:
        self.lines += lines
        return ""


def test_the_folder_follower_reads_files_in_order_skips_torn_tails_and_resumes(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    (tmp_path / "audit-000001.jsonl").write_bytes(b"a\nb\n")
    got = _Collect()
    follower = FolderFollower(tmp_path, state, got)
    assert follower.poll() == 2
    with (tmp_path / "audit-000001.jsonl").open("ab") as handle:
        handle.write(b"c\ntorn")  # a torn tail, never acknowledged
    (tmp_path / "audit-000002.jsonl").write_bytes(b"d\n")
    assert follower.poll() == 2 and got.lines == [b"a", b"b", b"c", b"d"]
    assert follower.counts["torn_lines"] == 1
    with (tmp_path / "audit-000002.jsonl").open("ab") as handle:
        handle.write(b"e\n")
    resumed = _Collect()
    assert FolderFollower(tmp_path, state, resumed).poll() == 1 and resumed.lines == [b"e"]


# -- model swaps ---------------------------------------------------------------------------------------
def test_a_swap_reencodes_the_windows_by_action_name() -> None:
    old = ngram_predictor(chain_actions(300, seed=1))
    extra = ["scale_deploy"] * 3 + chain_actions(300, seed=2)  # another vocabulary, other ids
    new = ngram_predictor(extra)
    assert old.vocab != new.vocab
    engine = Engine(old)
    window = ["create_ns", "create_sa", "create_pods", "patch_pods"]
    for i, action in enumerate(window[:-1]):
        engine.observe(action, float(i))
    engine.swap(new, "v2")
    engine.observe(window[-1], 3.0)
    pending = engine.latest()
    assert pending is not None and pending.version == "v2" and pending.window == window
    expected = [a for a, _ in new.top_k(window, 10)]
    assert pending.ranked == expected
    assert pending.probabilities == pytest.approx([p for _, p in new.top_k(window, 10)], rel=1e-5)


# -- the receiver hook and the routes, over real HTTP -----------------------------------------------------
def test_a_failing_hook_never_costs_a_batch_its_acknowledgement(tmp_path: Path) -> None:
    def broken(_rows: list[Any]) -> None:
        raise RuntimeError("consumer bug")

    receiver = AuditReceiver(tmp_path / "ev", ReceiverSettings(port=0), on_accepted=broken).start()
    try:
        response = httpx.post(receiver.post_url, json=event_list(events_of(["create_pods"] * 3)))
        assert response.status_code == 200 and response.json()["accepted"] == 3
        stats = receiver.stats_dict()
        assert stats["hook_errors"] == 1 and "consumer bug" in stats["last_error"]
    finally:
        receiver.stop()
    assert len((tmp_path / "ev" / "audit-000001.jsonl").read_text().splitlines()) == 3


def _actor_predictor() -> Predictor:
    actions = chain_actions(300)
    vocab = Vocabulary.from_counts(Counter(actions))
    scorer = NGram.fit([vocab.encode(actions)], len(vocab), 4, order=3)
    return Predictor(
        scorer, vocab, "actor model", info={"streams": "actor", "actor_groups": ["system:node:*"]}
    )


def test_predictions_are_served_per_actor_class_behind_the_token(tmp_path: Path) -> None:
    service = _service(_actor_predictor(), tmp_path).start()
    receiver = AuditReceiver(
        tmp_path / "ev",
        ReceiverSettings(port=0, token="s3cret"),
        on_accepted=service.submit,
        routes=service.route,
    ).start()
    auth = {"Authorization": "Bearer s3cret"}
    try:
        users = ["system:node:a", "alice", "system:node:b"]
        events = events_of(chain_actions(30), users=users)
        assert httpx.post(receiver.post_url, json=event_list(events), headers=auth).status_code == 200
        deadline = time.monotonic() + 10
        while service.engine.metrics.actions < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert httpx.get(f"{receiver.url}/predictions/alice").status_code == 401
        node = httpx.get(f"{receiver.url}/predictions/system:node:zzz", headers=auth)  # any node: its class
        assert node.status_code == 200 and node.json()["stream"] == "system:node:*"
        assert node.json()["last_action"] == events[29]["verb"] + "_" + events[29]["objectRef"]["resource"]
        alice = httpx.get(f"{receiver.url}/predictions/alice", headers=auth).json()
        assert (
            alice["stream"] == "alice" and len(alice["predictions"]) == 5 and alice["model_version"] == "v1"
        )
        assert sum(p["probability"] for p in alice["predictions"]) <= 1.0 + 1e-6
        missing = httpx.get(f"{receiver.url}/predictions/bob", headers=auth)
        assert missing.status_code == 404 and "username or actor class" in missing.json()["hint"]
        every = httpx.get(f"{receiver.url}/predictions", headers=auth).json()
        assert set(every["streams"]) == {"system:node:*", "alice"}
        metrics = httpx.get(f"{receiver.url}/metrics", headers=auth)
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        values = parse_exposition(metrics.text)
        assert values["perfspec_live_actions_total"] == 30 and values["perfspec_live_streams"] == 2
        assert values["perfspec_live_scored_total"] == 28  # each stream's first action is not scored
    finally:
        receiver.stop()
        service.stop()


def test_the_follow_mode_server_answers_the_same_routes(tmp_path: Path) -> None:
    service = _service(ngram_predictor(chain_actions(200)), tmp_path).start()
    server = ReadServer(*parse_address("127.0.0.1:0", "--http"), service.route, token=None).start()
    try:
        service.submit_lines([json.dumps(e).encode() for e in events_of(chain_actions(10))])
        deadline = time.monotonic() + 10
        while service.engine.metrics.actions < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert httpx.get(f"{server.url}/predictions/global").json()["stream"] == "global"
        assert httpx.get(f"{server.url}/predictions/alice").status_code == 404
        assert httpx.get(f"{server.url}/nothing").status_code == 404
        assert parse_exposition(httpx.get(f"{server.url}/metrics").text)["perfspec_live_actions_total"] == 10
    finally:
        server.stop()
        service.stop()
    with pytest.raises(Exception, match="not HOST:PORT"):
        parse_address("9445", "--http")


def test_the_counters_continue_from_the_last_run_in_the_same_folder(tmp_path: Path) -> None:
    predictor = ngram_predictor(chain_actions(200))
    lines = [json.dumps(e).encode() for e in events_of(chain_actions(50))]
    first = _service(predictor, tmp_path).start()
    first.submit_lines(lines)
    one = first.stop()
    second = _service(predictor, tmp_path).start()
    second.submit_lines(lines[:10])
    two = second.stop()
    assert (two["events"], two["actions"], two["restarts"]) == (60, 60, 1)
    assert two["scored"] == one["scored"] + 9 and two["predictions"] == one["predictions"] + 10
    records = [
        json.loads(x) for f in sorted((tmp_path / "live").glob("predictions-*.jsonl")) for x in f.open()
    ]
    assert len(records) == 60 and len(list((tmp_path / "live").glob("predictions-*.jsonl"))) == 2
    assert np.all([r["model_version"] == "v1" for r in records])
