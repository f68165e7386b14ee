"""Scale-out on an existing engine (issue 12): `clean`'s pass 1 on a real Dask `LocalCluster` (2 worker
processes) over 10 files of every format gives the same bytes as the sequential run; a request whose
stages sit in two files is still merged; the runner is a setting the pipeline's clean task reads."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import orjson
import pytest

from perfspec.audit.clean import clean_sources
from perfspec.errors import EnvironmentProblem
from perfspec.scaleout import clean_executor
from perfspec.settings import CleanSettings, PrefectSettings
from tests.test_clean import OUTPUTS, event

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _files(folder: Path) -> list[Path]:
    """10 inputs: real samples (Logstash CSV, JSON lines), generated logs (plain, gzip, one large enough
    to be split into byte ranges), a torn line, a request split across two files (rotation)."""
    folder.mkdir()
    paths = [
        Path(shutil.copy(REPO / "sample" / "audit-logs.csv.gz", folder / "00-seed.csv.gz")),
        Path(shutil.copy(REPO / "sample" / "audit2rbac-demo.jsonl", folder / "01-audit2rbac.jsonl")),
    ]
    for index in range(2, 9):
        lines = [
            orjson.dumps(event(f"id-{index}-{n}", verb=("create", "update", "delete")[n % 3]))
            for n in range(3000 if index == 8 else 400)
        ]
        if index == 5:
            lines.insert(17, b'{"kind": "Event", "auditID": "torn')  # a torn line: one reject
        data = b"\n".join(lines) + b"\n"
        path = folder / f"{index:02d}-generated.jsonl"
        if index == 6:
            path = path.with_suffix(".jsonl.gz")
            path.write_bytes(gzip.compress(data, mtime=0))
        else:
            path.write_bytes(data)
        paths.append(path)
    first = event("rotated", stage="RequestReceived")
    paths.append(folder / "09-rotated-a.jsonl")
    paths[-1].write_bytes(orjson.dumps(first) + b"\n")
    paths.append(folder / "10-rotated-b.jsonl")
    paths[-1].write_bytes(orjson.dumps(event("rotated", stage="ResponseComplete")) + b"\n")
    return paths


def test_dask_cluster_gives_the_same_bytes_as_the_sequential_run(tmp_path: Path) -> None:
    sources = _files(tmp_path / "logs")
    settings = CleanSettings(workers=2, parallel_min_bytes=64 * 1024)  # file 08 is split into ranges
    sequential = clean_sources(sources, tmp_path / "sequential", settings)
    with clean_executor(PrefectSettings(task_runner="dask", dask_workers=2)) as executor:
        assert executor is not None
        on_dask = clean_sources(sources, tmp_path / "dask", settings, executor=executor)
    for name in OUTPUTS:
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "sequential" / name).read_bytes(), name
    assert on_dask.to_dict() == sequential.to_dict()
    assert len(sequential.files) == 11 and sequential.rejected >= 1 and sequential.duplicates >= 1


def test_sequential_runner_is_no_executor_and_an_unreachable_scheduler_is_one_line() -> None:
    with clean_executor(PrefectSettings()) as executor:
        assert executor is None
    unreachable = PrefectSettings(task_runner="dask", dask_address="tcp://127.0.0.1:9")
    with pytest.raises(EnvironmentProblem, match="Dask scheduler") as caught, clean_executor(unreachable):
        pass
    assert "PERFSPEC_PREFECT__TASK_RUNNER" in caught.value.hint


def test_the_prepare_flow_cleans_on_dask_when_the_setting_says_so(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.prepare import prepare
    from perfspec.settings import get_settings
    from tests import prefect_harness

    prefect_harness.start(request)
    sources = [str(p) for p in _files(tmp_path / "logs")]
    expected = clean_sources([Path(s) for s in sources], tmp_path / "expected", CleanSettings())
    monkeypatch.setenv("PERFSPEC_PREFECT__TASK_RUNNER", "dask")
    get_settings.cache_clear()
    try:
        prepared = prepare(sources=sources, data_dir=tmp_path / "data")
    finally:
        monkeypatch.delenv("PERFSPEC_PREFECT__TASK_RUNNER")
        get_settings.cache_clear()
    assert prepared.clean is not None and prepared.clean.kept == expected.kept
    events = Path(prepared.clean.events).read_bytes()
    assert events == (tmp_path / "expected" / "events.parquet").read_bytes()
