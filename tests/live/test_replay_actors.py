"""`perfspec replay` with an actor-stream model: a window per actor class, as `perfspec live` keys it."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from perfspec.actions.presets import split
from perfspec.learn.bundle import write_bundle
from perfspec.learn.families.ngram import NGram
from perfspec.learn.vocab import Vocabulary
from perfspec.live.replay import replay


def _events(tmp_path: Path) -> Path:
    """Two actors interleaved, each repeating its own chain: predictable per actor, not globally."""
    mine = {
        "alice": ["create_ns", "create_sa", "create_pods", "patch_pods"],
        "system:node:a": ["update_cm", "delete_pods"],
    }
    rows = []
    for i in range(400):
        user = "alice" if i % 3 else ("system:node:a" if i % 2 else "system:node:b")
        chain = mine["alice" if user == "alice" else "system:node:a"]
        count = sum(1 for r in rows if (r[1] == "alice") == (user == "alice"))
        rows.append((chain[count % len(chain)], user, i))
    start = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
    table = pa.table(
        {
            "request_received_at": pa.array([start + dt.timedelta(milliseconds=i) for *_, i in rows]),
            "verb": [split(a)[0] for a, *_ in rows],
            "resource": [split(a)[1] for a, *_ in rows],
            "subresource": pa.nulls(len(rows), pa.string()),
            "namespace": pa.nulls(len(rows), pa.string()),
            "name": pa.nulls(len(rows), pa.string()),
            "username": [u for _, u, _ in rows],
            "audit_id": [f"id-{i}" for *_, i in rows],
            "source_file": ["f"] * len(rows),
            "source_line": pa.array(range(len(rows)), pa.int64()),
        }
    )
    pq.write_table(table, tmp_path / "events.parquet")
    return tmp_path / "events.parquet"


def test_an_actor_stream_model_is_replayed_with_a_window_per_actor_class(tmp_path: Path) -> None:
    events = _events(tmp_path)
    sequences = [
        ["create_ns", "create_sa", "create_pods", "patch_pods"] * 30,
        ["update_cm", "delete_pods"] * 60,
    ]
    vocab = Vocabulary.from_counts(Counter(a for s in sequences for a in s))
    scorer = NGram.fit([vocab.encode(s) for s in sequences], len(vocab), 4, order=3)
    bundle = write_bundle(scorer, vocab, tmp_path / "m" / "predictor.npz", {"streams": "actor"})
    report = replay(events, str(bundle), tmp_path / "out")
    assert report["streams"] == "actor"
    assert report["scored"] == report["actions"] - 2  # two classes: alice, system:node:* (both nodes)
    assert report["hit_at"]["1"] > 0.95  # each actor's own chain, not the interleaving
