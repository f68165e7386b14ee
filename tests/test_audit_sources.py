"""Opening audit logs: compression and format are sniffed from bytes; bad files fail clearly."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from perfspec.audit.parts import hash_audit_ids
from perfspec.audit.readers import iter_documents
from perfspec.audit.sources import expand_sources, open_source
from perfspec.errors import InputError

EVENT = (
    b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete",'
    b'"verb":"create","requestReceivedTimestamp":"2024-01-01T00:00:00.000001Z"}'
)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("opener", "expected"),
    [(lambda b: b, "none"), (gzip.compress, "gzip"), (lzma.compress, "xz"), (bz2.compress, "bz2")],
)
def test_compression_is_sniffed_not_taken_from_the_name(tmp_path: Path, opener, expected: str) -> None:
    path = _write(tmp_path / "audit.log", opener(EVENT + b"\n" + EVENT + b"\n"))
    with open_source(path) as source:
        assert (source.compression, source.format) == (expected, "jsonl")
        blocks = list(source.line_blocks(1 << 20))
    lines = [line for _, chunk in blocks for line in chunk]
    assert lines == [EVENT, EVENT]


def test_formats_are_detected(tmp_path: Path) -> None:
    pretty = _write(tmp_path / "pretty.json", b'{\n  "kind": "Event",\n  "auditID": "x"\n}\n')
    listed = _write(tmp_path / "list.json", b'[\n  {"kind": "Event"}\n]\n')
    empty = _write(tmp_path / "empty.log", b"  \n\n")
    sample = Path(__file__).resolve().parent.parent / "sample"
    found = {}
    for path in (pretty, listed, empty, sample / "audit-logs.csv.gz", sample / "audit2rbac-demo.jsonl"):
        with open_source(path) as source:
            found[path.name] = source.format
    assert found == {
        "pretty.json": "json-document",
        "list.json": "json-document",
        "empty.log": "empty",
        "audit-logs.csv.gz": "logstash-csv",
        "audit2rbac-demo.jsonl": "jsonl",
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes(range(256)) * 64, "binary data"),
        (gzip.compress(bytes(range(256)) * 64), "binary data after decompression"),
        (b"# just some notes\nnot a log\n", "not an audit log"),
        (b"\x28\xb5\x2f\xfd" + b"\x00" * 32, "zstd-compressed input is not supported"),
    ],
)
def test_non_audit_files_fail_with_a_clear_message(tmp_path: Path, data: bytes, message: str) -> None:
    path = _write(tmp_path / "input.log", data)
    with pytest.raises(InputError, match=message) as info:
        open_source(path)
    assert info.value.hint  # says what to do


def test_long_lines_are_never_held_whole(tmp_path: Path) -> None:
    path = _write(tmp_path / "long.log", EVENT + b"\n" + b"x" * (3 * 1024 * 1024) + b"\n" + EVENT + b"\n")
    with open_source(path) as source:
        items = list(source.line_blocks(1024 * 1024))
    too_long = [item for item in items if not isinstance(item, tuple)]
    assert len(too_long) == 1
    assert too_long[0].line_no == 2 and too_long[0].length == 3 * 1024 * 1024
    assert len(too_long[0].prefix) <= 64 * 1024
    numbered = [
        (item[0] + i, line) for item in items if isinstance(item, tuple) for i, line in enumerate(item[1])
    ]
    assert [n for n, line in numbered if line] == [1, 3]


def test_missing_paths_and_empty_directories(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        expand_sources([tmp_path / "nope.log"])
    (tmp_path / "dir").mkdir()
    with pytest.raises(InputError, match="no files found"):
        expand_sources([tmp_path / "dir"])
    (tmp_path / "dir" / "b.log").write_text("x")
    (tmp_path / "dir" / "a.log").write_text("x")
    (tmp_path / "dir" / "manifest.json").write_text("{}")
    (tmp_path / "dir" / ".hidden").write_text("x")
    assert [p.name for p, _ in expand_sources([tmp_path / "dir"])] == ["a.log", "b.log"]


def test_a_campaign_directory_reads_only_its_audit_logs(tmp_path: Path) -> None:
    """raw/<campaign>/ also holds what collect/receive/tail-audit write; those are not audit events."""
    campaign = tmp_path / "campaign"
    campaign.mkdir()
    for name in ("manifest.json", "labels.jsonl", "receiver-rejects.jsonl", "tail-state.json"):
        (campaign / name).write_text("{}\n")
    (campaign / "audit-000001.jsonl").write_text("x")
    assert [p.name for p, _ in expand_sources([campaign])] == ["audit-000001.jsonl"]


def test_documents_stream_one_at_a_time_with_line_numbers() -> None:
    text = b'{\n "a": 1\n}\n{"b": [1,\n 2]}\n  [3]\n{"broken": \n'
    blocks = iter(text[i : i + 5] for i in range(0, len(text), 5))  # tiny blocks: documents span them
    out = list(iter_documents(blocks, 1 << 20))
    assert [(line, value) for line, value in out[:3]] == [(1, {"a": 1}), (4, {"b": [1, 2]}), (6, [3])]
    assert out[3][0] == 7 and type(out[3][1]).__name__ == "BadDocument"


def test_audit_id_hash_depends_only_on_the_id() -> None:
    ids = ["a1b2c3d4-0000-1111-2222-333344445555", "abc", "é-ü", "x" * 100]
    alone = [int(hash_audit_ids(pa.array([i]))[0]) for i in ids]
    together = hash_audit_ids(pa.array(ids + ids[:1]))
    sliced = hash_audit_ids(pa.array(["zz", *ids]).slice(1))
    assert list(together[:4]) == alone and together[4] == alone[0]
    assert list(sliced) == alone
    assert len(set(alone)) == len(ids)
    many = hash_audit_ids(pa.array([f"id-{i}" for i in range(100_000)]))
    assert len(np.unique(many)) == 100_000
