"""``parquet_append``: two Parquet files written with one schema -> the file one writer would have written.

Pass 2 of ``perfspec clean`` relies on it for "the same bytes with any number of workers", so the check
is byte equality with pyarrow's own writer, over splits and shapes a run can produce; and the result
is read back by pyarrow, DuckDB and Polars.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from perfspec.audit.parquet_append import append_row_groups
from perfspec.audit.parts import PARQUET_OPTIONS
from perfspec.audit.schema import EVENTS_SCHEMA


def _events(rows: int, seed: int) -> pa.Table:
    """Rows of the events schema: repeated and unique strings, nulls, timestamps, codes."""
    rng = random.Random(seed)
    columns = []
    for field in EVENTS_SCHEMA:
        if pa.types.is_string(field.type):
            gaps = 0.05 if field.nullable else 0.0
            values = [
                None
                if rng.random() < gaps
                else f"{field.name}-{rng.randrange(40 if rng.random() < 0.7 else 10**9)}"
                for _ in range(rows)
            ]
        elif pa.types.is_timestamp(field.type):
            values = [1_714_521_600_000_000 + i * 1000 + rng.randrange(1000) for i in range(rows)]
        else:
            values = [
                rng.choice([200, 201, 404, None]) if field.name == "response_code" else i for i in range(rows)
            ]
        columns.append(pa.array(values, field.type))
    return pa.Table.from_arrays(columns, schema=EVENTS_SCHEMA)


def _write(path: Path, groups: list[pa.Table], **options: object) -> None:
    with pq.ParquetWriter(path, EVENTS_SCHEMA, **{**PARQUET_OPTIONS, **options}) as writer:
        for group in groups:
            writer.write_table(group, row_group_size=max(group.num_rows, 1))


@pytest.mark.parametrize(
    ("sizes", "split"),
    [
        ([1000] * 6, 3),
        ([1000] * 6, 1),
        ([1000] * 6, 5),
        ([1000, 1000, 17], 2),
        ([5, 5], 1),
        ([1000] * 40, 20),  # over 15 row groups: the long form of the list header
        ([1000] * 40, 3),
    ],
)
def test_appended_file_is_the_bytes_one_writer_writes(tmp_path: Path, sizes: list[int], split: int) -> None:
    table = _events(sum(sizes), seed=len(sizes) * 100 + split)
    groups, at = [], 0
    for size in sizes:
        groups.append(table.slice(at, size).combine_chunks())
        at += size
    _write(tmp_path / "one.parquet", groups)
    _write(tmp_path / "first.parquet", groups[:split])
    _write(tmp_path / "second.parquet", groups[split:])
    append_row_groups(tmp_path / "first.parquet", tmp_path / "second.parquet")
    assert (tmp_path / "first.parquet").read_bytes() == (tmp_path / "one.parquet").read_bytes()


def test_other_readers_read_the_appended_file(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    polars = pytest.importorskip("polars")
    table = _events(3000, seed=3)
    _write(tmp_path / "first.parquet", [table.slice(0, 1000).combine_chunks()])
    _write(
        tmp_path / "second.parquet",
        [table.slice(1000, 1000).combine_chunks(), table.slice(2000).combine_chunks()],
    )
    append_row_groups(tmp_path / "first.parquet", tmp_path / "second.parquet")
    path = tmp_path / "first.parquet"
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    assert pq.read_table(path).equals(table)
    assert duckdb.sql(f"SELECT count(*), max(source_line) FROM '{path}'").fetchall() == [(3000, 2999)]
    assert polars.read_parquet(path).height == 3000


def test_page_indexes_are_refused_not_misplaced(tmp_path: Path) -> None:
    """A page index holds page offsets of its own, which appending would leave pointing at old bytes."""
    table = _events(100, seed=4)
    _write(tmp_path / "first.parquet", [table])
    _write(tmp_path / "second.parquet", [table], write_page_index=True)
    with pytest.raises(ValueError, match="page indexes"):
        append_row_groups(tmp_path / "first.parquet", tmp_path / "second.parquet")


def test_a_file_that_is_not_parquet_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "first.parquet", [_events(10, seed=5)])
    (tmp_path / "second.parquet").write_bytes(b"PAR1 torn")
    with pytest.raises(ValueError, match="not a Parquet file"):
        append_row_groups(tmp_path / "first.parquet", tmp_path / "second.parquet")
