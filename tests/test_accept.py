"""The one acceptance rule (``perfspec.audit.accept``) and ``clean`` on timestamps of every precision."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow.parquet as pq

from perfspec.audit.accept import accept_rows
from perfspec.audit.clean import clean_sources
from perfspec.audit.rejects import read_rejects
from perfspec.settings import CleanSettings


def row(received: object, code: object = 200, verb: object = "create") -> tuple[object, ...]:
    return ("id", "ResponseComplete", received, None, verb, *[None] * 9, code, None, None)


def test_mixed_precisions_and_years_convert_together_and_out_of_range_years_are_refused() -> None:
    rows = [
        row("2024-05-01T10:00:05.123456789Z"),  # nanoseconds (API servers write them)
        row("0001-01-01T00:00:00Z"),  # Go's zero time
        row("0000-01-01T00:00:00Z"),  # year 0: Arrow reads it, Python's datetime cannot
        row("2024-05-01T10:00:05Z"),
        row("9999-12-31T23:59:59Z"),
        row(None),
        row("yesterday"),
        row("2024-05-01T10:00:05Z", code="200"),
        row("2024-05-01T10:00:05Z", verb=3),
    ]
    accepted = accept_rows(rows)
    assert accepted.kept == [0, 3]
    assert [(index, reason) for index, reason, _ in accepted.refused] == [
        (1, "bad-timestamp"),
        (2, "bad-timestamp"),
        (4, "bad-timestamp"),
        (5, "missing-timestamp"),
        (6, "bad-field"),
        (7, "bad-field"),
        (8, "bad-field"),
    ]
    assert "us from 1970" in accepted.refused[1][2]
    assert accepted.arrays is not None
    assert [str(t) for t in accepted.arrays[2].to_pylist()] == [
        "2024-05-01 10:00:05.123456+00:00",
        "2024-05-01 10:00:05+00:00",
    ]


def test_clean_keeps_the_good_events_of_a_batch_mixing_nanoseconds_and_year_one(tmp_path: Path) -> None:
    def event(audit_id: str, when: str) -> bytes:
        return orjson.dumps(
            {
                "kind": "Event",
                "apiVersion": "audit.k8s.io/v1",
                "auditID": audit_id,
                "stage": "ResponseComplete",
                "verb": "create",
                "objectRef": {"resource": "pods"},
                "requestReceivedTimestamp": when,
                "stageTimestamp": when,
            }
        )

    source = tmp_path / "audit.log"
    source.write_bytes(
        b"\n".join(
            [
                event("nano", "2024-05-01T10:00:05.123456789Z"),
                event("zero", "0001-01-01T00:00:00Z"),
                event("plain", "2024-05-01T10:00:06Z"),
            ]
        )
        + b"\n"
    )
    summary = clean_sources([source], tmp_path / "out", CleanSettings())
    ids = pq.read_table(tmp_path / "out" / "events.parquet").column("audit_id").to_pylist()
    assert ids == ["nano", "plain"] and summary.rejected == 1
    (reject,) = read_rejects(tmp_path / "out" / "rejects.jsonl")
    assert reject["reason"] == "bad-timestamp" and reject["line"] == 2 and "0001-01-01" in reject["detail"]
