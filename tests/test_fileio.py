"""Atomic writes: a failed block leaves the old file untouched and no temp file behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from perfspec.fileio import atomic_open, sha256_file, write_json_atomic


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json_atomic(target, {"a": 1})
    before = target.read_bytes()
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_outputs_get_the_umask_mode_not_mkstemp_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "x.json", [1])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644


def test_same_content_same_bytes_and_hash(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "a.json", {"b": 2, "a": 1})
    write_json_atomic(tmp_path / "b.json", {"a": 1, "b": 2})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert sha256_file(tmp_path / "a.json") == sha256_file(tmp_path / "b.json")
