"""``clean_sources`` and ``perfspec clean`` on real samples and on the failures users will hit."""

from __future__ import annotations

import gzip
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from perfspec.audit.clean import clean_sources
from perfspec.audit.rejects import read_rejects
from perfspec.audit.schema import EVENTS_SCHEMA
from perfspec.errors import InputError
from perfspec.settings import CleanSettings

REPO = Path(__file__).resolve().parent.parent
OUTPUTS = ("events.parquet", "rejects.jsonl", "summary.json")


def event(audit_id: str, stage: str = "ResponseComplete", verb: str = "create", **extra: object) -> dict:
    value = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id,
        "stage": stage,
        "requestURI": "/api/v1/namespaces/ns/pods",
        "verb": verb,
        "user": {"username": "alice", "groups": ["g"]},
        "sourceIPs": ["10.0.0.1", "10.0.0.2"],
        "userAgent": "kubectl/v1.30",
        "objectRef": {"resource": "pods", "namespace": "ns", "name": "p", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestReceivedTimestamp": "2024-05-01T10:00:00.123456Z",
        "stageTimestamp": "2024-05-01T10:00:00.223456Z",
    }
    value.update(extra)
    return value


def jsonl(*values: object) -> bytes:
    return b"".join(orjson.dumps(v) + b"\n" for v in values)


def read_events(out: Path) -> list[dict]:
    return pq.read_table(out / "events.parquet").to_pylist()


def all_output_bytes(out: Path) -> bytes:
    return b"".join((out / name).read_bytes() for name in OUTPUTS)


def assert_counts_add_up(summary) -> None:
    assert summary.read == summary.kept + summary.duplicates + summary.rejected
    for f in summary.files:
        assert f.read == f.kept + f.duplicates + f.rejected, f


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perfspec", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


# --- the real data ----------------------------------------------------------------------------------


def test_every_real_sample_and_the_seed_csv_load(shared_data: Path, tmp_path: Path) -> None:
    samples = shared_data / "audit-samples"
    csv_path = shared_data / "kubernetes-event-dataset" / "audit-logs.csv"
    summary = clean_sources([csv_path, samples], tmp_path, CleanSettings())
    assert_counts_add_up(summary)
    every_file = [*sorted(str(p) for p in samples.rglob("*") if p.is_file()), str(csv_path)]
    assert sorted(f.file for f in summary.files) == sorted(every_file)
    by_name = {Path(f.file).name: f for f in summary.files}
    assert (
        by_name["audit-logs.csv"].read == 16_564 and by_name["audit-logs.csv"].rejected == 1
    )  # partial last row
    assert by_name["fal_01_003.json"].rejected == 1  # {"kind": 0} is not an event
    assert summary.reject_reasons == {"bad-csv": 1, "not-an-event": 1}
    assert all(f.kept + f.duplicates >= 1 for name, f in by_name.items() if name != "fal_01_003.json")
    table = pq.read_table(tmp_path / "events.parquet")
    assert table.schema.equals(EVENTS_SCHEMA)
    assert table.num_rows == summary.kept
    rows = table.to_pylist()
    v1beta1 = [r for r in rows if r["source_file"].endswith("apisnoop-example-user-agent.log")]
    assert len(v1beta1) == 8 and all(r["request_received_at"] is not None for r in v1beta1)
    exec_rows = [r for r in rows if r["subresource"] == "exec"]
    assert exec_rows and exec_rows[0]["resource"] == "pods"
    csv_rows = [r for r in rows if r["source_file"] == str(csv_path)]
    assert csv_rows[0]["namespace"] is None and csv_rows[0]["response_code"] == 403  # missing fields null


def test_the_csv_merges_watch_stages(tmp_path: Path) -> None:
    csv_path = REPO / "sample" / "audit-logs.csv.gz"  # the seed's Logstash CSV, bundled
    summary = clean_sources([csv_path], tmp_path, CleanSettings())
    # 89 watches appear as ResponseStarted and ResponseComplete (24 of them in the reverse order).
    assert (summary.read, summary.kept, summary.duplicates, summary.rejected) == (16_564, 16_474, 89, 1)
    rows = read_events(tmp_path)
    assert len({r["audit_id"] for r in rows}) == len(rows)
    first_watch = next(r for r in rows if r["audit_id"] == "a1b86d5d-6f8f-4058-9710-19f5cc40a68a")
    assert first_watch["stage"] == "ResponseComplete"
    lines = [r["source_line"] for r in rows]
    assert lines == sorted(lines)  # log order


def test_no_secret_reaches_any_output(shared_data: Path, tmp_path: Path) -> None:
    rbac = shared_data / "audit-samples" / "rbac-tool"  # RequestResponse events creating a Secret
    raw = b"".join(p.read_bytes() for p in rbac.iterdir())
    assert b"eXl5Cg==" in raw  # the Secret's data is really in the input
    secret = {"kind": "Secret", "data": {"password": "aHVudGVyMg=="}}
    broken = orjson.dumps(event("b1", requestObject=secret))[:-30]  # malformed: cut inside the body
    not_event = orjson.dumps({"kind": "Secret", "apiVersion": "v1", "data": {"token": "aHVudGVyMg=="}})
    wrong_type = orjson.dumps(event("b2", verb=["x"], responseObject=secret))
    extra = tmp_path / "extra.log"
    extra.write_bytes(jsonl(event("ok")) + broken + b"\n" + not_event + b"\n" + wrong_type + b"\n")
    out = tmp_path / "out"
    summary = clean_sources([rbac, extra], out, CleanSettings())
    assert_counts_add_up(summary)
    assert summary.rejected == 3
    everything = all_output_bytes(out)
    for needle in (b"eXl5Cg", b"aHVudGVyMg"):
        assert needle not in everything
    rejects = read_rejects(out / "rejects.jsonl")
    assert {r["reason"] for r in rejects} == {"invalid-json", "not-an-event", "bad-field"}
    assert all(r["file"] == str(extra) and r["line"] in (2, 3, 4) for r in rejects)


def test_runs_are_byte_identical(tmp_path: Path) -> None:
    sources = [REPO / "sample" / "audit-logs.csv.gz", REPO / "sample" / "audit2rbac-demo.jsonl"]
    clean_sources(sources, tmp_path / "a", CleanSettings())
    clean_sources(sources, tmp_path / "b", CleanSettings())
    for name in OUTPUTS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


# --- formats and stages -----------------------------------------------------------------------------


def test_stages_of_one_request_become_one_row(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(
        jsonl(
            event("w", "ResponseStarted", "watch"),
            event("x", "RequestReceived"),
            event("y"),
            event("x", "ResponseComplete", responseStatus={"code": 200}),
            event("w", "ResponseComplete", "watch"),
            event("x", "ResponseStarted"),
            event("y"),  # an exact repeat (overlapping rotated files)
            event("z", "Panic"),
            event("z", "ResponseStarted"),
        )
    )
    summary = clean_sources([log], tmp_path / "out", CleanSettings())
    assert (summary.read, summary.kept, summary.duplicates, summary.rejected) == (9, 4, 5, 0)
    rows = read_events(tmp_path / "out")
    assert [(r["audit_id"], r["stage"], r["source_line"]) for r in rows] == [
        ("y", "ResponseComplete", 3),
        ("x", "ResponseComplete", 4),
        ("w", "ResponseComplete", 5),
        ("z", "Panic", 8),
    ]
    assert rows[1]["response_code"] == 200 and rows[1]["source_ip"] == "10.0.0.1"
    kept_all = clean_sources([log], tmp_path / "all", CleanSettings(dedupe=False))
    assert (kept_all.kept, kept_all.duplicates) == (9, 0)


def test_documents_eventlists_arrays_and_compression_give_the_same_rows(tmp_path: Path) -> None:
    events = [event(f"id-{i}", verb=v) for i, v in enumerate(["create", "delete", "patch", "update"])]
    variants = {
        "lines.log": jsonl(*events),
        "pretty.json": b"".join(json.dumps(e, indent=2).encode() + b"\n" for e in events),
        "list.json": json.dumps(
            {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": events}
        ).encode(),
        "list-line.log": jsonl(
            {"kind": "EventList", "items": events[:2]}, {"kind": "EventList", "items": events[2:]}
        ),
        "array.json": json.dumps(events, indent=1).encode(),
        "lines.log.gz": gzip.compress(jsonl(*events)),
        "lines.xz": lzma.compress(jsonl(*events)),
    }
    expected = None
    for name, data in variants.items():
        path = tmp_path / name
        path.write_bytes(data)
        summary = clean_sources([path], tmp_path / f"out-{name}", CleanSettings())
        assert (summary.read, summary.kept, summary.rejected) == (4, 4, 0), name
        rows = [{k: v for k, v in r.items() if k not in ("source_file", "source_line")} for r in
                read_events(tmp_path / f"out-{name}")]  # fmt: skip
        expected = expected or rows
        assert rows == expected, name
    pretty_lines = [r["source_line"] for r in read_events(tmp_path / "out-pretty.json")]
    assert pretty_lines[0] == 1 and pretty_lines == sorted(pretty_lines) and len(set(pretty_lines)) == 4


def test_bad_fields_are_rejected_one_by_one(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(
        jsonl(
            event("ok-1"),
            event("bad-verb", verb=5),
            event("bad-time", requestReceivedTimestamp="yesterday"),
            event("no-time", requestReceivedTimestamp=None, stageTimestamp=None),
            event("bad-code", responseStatus={"code": "teapot"}),
            event("ns-time", requestReceivedTimestamp="2024-05-01T10:00:00.123456789Z"),
            event("bad-stage", stage="Later"),
            {"kind": "Event", "stage": "ResponseComplete"},
            event("ok-2"),
        )
        + b"{not json\n\n   \n"
    )
    summary = clean_sources([log], tmp_path / "out", CleanSettings())
    assert_counts_add_up(summary)
    rows = read_events(tmp_path / "out")
    assert [r["audit_id"] for r in rows] == ["ok-1", "ns-time", "ok-2"]
    assert rows[1]["request_received_at"].microsecond == 123456  # nanoseconds truncated to us
    reasons = {r["line"]: r["reason"] for r in read_rejects(tmp_path / "out" / "rejects.jsonl")}
    assert reasons == {
        2: "bad-field",
        3: "bad-field",
        4: "missing-timestamp",
        5: "bad-field",
        7: "bad-stage",
        8: "bad-audit-id",
        10: "invalid-json",
    }


def test_parallel_workers_match_one_process(tmp_path: Path) -> None:
    events = [event(f"r{i % 700}", ["ResponseStarted", "ResponseComplete"][i % 2]) for i in range(3000)]
    data = jsonl(*events[:1500]) + b"{broken\n" + b"x" * 5000 + b"\n" + jsonl(*events[1500:])
    log = tmp_path / "audit.log"
    log.write_bytes(data)
    one = clean_sources([log], tmp_path / "one", CleanSettings(workers=1, max_line_bytes=4096))
    many = clean_sources(
        [log], tmp_path / "many", CleanSettings(workers=3, parallel_min_bytes=1024, max_line_bytes=4096)
    )
    assert_counts_add_up(many)
    assert (many.read, many.kept, many.duplicates, many.rejected) == (3002, 700, 2300, 2)
    for name in OUTPUTS:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "many" / name).read_bytes(), name
    assert one.to_dict() == many.to_dict()


# --- failures users will hit ------------------------------------------------------------------------


def test_truncated_xz_keeps_the_rows_before_the_break(tmp_path: Path) -> None:
    events = [event(f"id-{i}", requestURI="/api/v1/" + "x" * (i % 97)) for i in range(20_000)]
    compressed = lzma.compress(jsonl(*events))
    log = tmp_path / "audit.log.xz"
    log.write_bytes(compressed[: len(compressed) // 2])
    summary = clean_sources([log], tmp_path / "out", CleanSettings())
    assert_counts_add_up(summary)
    assert [f.file for f in summary.incomplete_files] == [str(log)]
    assert "truncated" in summary.files[0].error
    assert 0 < summary.kept < 20_000 and summary.rejected == 1
    rows = read_events(tmp_path / "out")
    assert [r["audit_id"] for r in rows] == [f"id-{i}" for i in range(summary.kept)]
    (reject,) = read_rejects(tmp_path / "out" / "rejects.jsonl")
    assert reject["reason"] == "truncated-stream" and reject["line"] == summary.kept + 1
    json.loads((tmp_path / "out" / "summary.json").read_text())  # finished, complete outputs


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the input is empty"),
        (b"\n\n", "the input is empty"),
        (os.urandom(4096), "binary data"),
        (b'{"kind": 0}\n{"kind": "Pod"}\n', "all 2 records were rejected"),
        (lzma.compress(jsonl(event("a")))[:40], "no event could be read"),
    ],
)
def test_nothing_to_clean_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, content: bytes, message: str
) -> None:
    log = tmp_path / "input.log"
    log.write_bytes(content)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=message):
        clean_sources([log], out, CleanSettings())
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []


def test_a_failed_rerun_leaves_the_previous_output_complete(tmp_path: Path) -> None:
    good = tmp_path / "good.log"
    good.write_bytes(jsonl(event("a"), event("b")))
    out = tmp_path / "out"
    clean_sources([good], out, CleanSettings())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    junk = tmp_path / "junk.log"
    junk.write_bytes(b"this is not an audit log\n")
    with pytest.raises(InputError):
        clean_sources([junk], out, CleanSettings())
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_10mb_line_is_rejected_and_the_rest_kept(tmp_path: Path) -> None:
    huge = orjson.dumps(
        event("huge", requestObject={"kind": "Secret", "data": {"k": "c2VjcmV0" * 1_400_000}})
    )
    assert len(huge) > 10_000_000
    log = tmp_path / "audit.log"
    log.write_bytes(jsonl(event("a")) + huge + b"\n" + jsonl(event("b")))
    summary = clean_sources([log], tmp_path / "out", CleanSettings())
    assert (summary.read, summary.kept, summary.rejected) == (3, 2, 1)
    (reject,) = read_rejects(tmp_path / "out" / "rejects.jsonl")
    assert reject["reason"] == "line-too-long" and reject["line"] == 2
    assert len(reject["raw"]) <= CleanSettings().reject_raw_max_chars + 1
    assert b"c2VjcmV0" not in all_output_bytes(tmp_path / "out")


# --- the command line -------------------------------------------------------------------------------


def test_cli_clean_json_and_exit_codes(tmp_path: Path) -> None:
    sample = REPO / "sample" / "audit2rbac-demo.jsonl"
    done = run_cli("clean", sample, "--out", tmp_path / "ok", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["read"], summary["kept"], summary["rejected"]) == (37, 37, 0)

    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(os.urandom(2048))
    failed = run_cli("clean", garbage, "--out", tmp_path / "bad")
    assert failed.returncode == 2
    assert failed.stderr.startswith("error: ") and "Traceback" not in failed.stderr
    assert not (tmp_path / "bad" / "events.parquet").exists()

    cut = lzma.compress(jsonl(*(event(f"e{i}") for i in range(5000))))
    truncated = tmp_path / "cut.xz"
    truncated.write_bytes(cut[: len(cut) * 2 // 3])
    partial = run_cli("clean", truncated, "--out", tmp_path / "cut")
    assert partial.returncode == 2 and "Traceback" not in partial.stderr
    assert "truncated" in partial.stderr and "were kept" in partial.stderr
    assert (tmp_path / "cut" / "summary.json").exists()
