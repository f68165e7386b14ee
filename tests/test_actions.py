"""Actions: the fidelity check against the PerfSPEC seed, presets, outputs, the distribution report."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from perfspec.actions import ACTIONS_SCHEMA, build_actions
from perfspec.actions.report import write_distribution_report
from perfspec.audit.clean import clean_sources
from perfspec.errors import InputError
from perfspec.settings import ActionsSettings, CleanSettings

REPO = Path(__file__).resolve().parent.parent
SEED_PREFIX = 2_163


@pytest.fixture(scope="module")
def seed_events(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    """The bundled seed log (audit-logs.csv.gz, no ../shared needed) cleaned once for this module."""
    out = tmp_path_factory.mktemp("clean")
    clean_sources([sample_dir / "audit-logs.csv.gz"], out, CleanSettings())
    return out / "events.parquet"


def test_fidelity_paper_preset_reproduces_the_seed_corpus(
    seed_events: Path, sample_dir: Path, tmp_path: Path
) -> None:
    summary = build_actions(seed_events, tmp_path / "actions.txt", ActionsSettings(preset="paper"))
    produced = (tmp_path / "actions.txt").read_text().splitlines()
    reference = (sample_dir / "events-dataset.txt").read_text().splitlines()
    assert len(produced) == SEED_PREFIX == summary.actions
    assert produced == reference[:SEED_PREFIX]


def test_fidelity_from_the_shared_csv(shared_data: Path, tmp_path: Path) -> None:
    corpus = shared_data / "kubernetes-event-dataset"
    clean_sources([corpus / "audit-logs.csv"], tmp_path / "clean", CleanSettings())
    build_actions(tmp_path / "clean" / "events.parquet", tmp_path / "actions.txt", ActionsSettings())
    produced = (tmp_path / "actions.txt").read_text().splitlines()
    assert produced == (corpus / "events-dataset.txt").read_text().splitlines()[:SEED_PREFIX]


def test_actions_parquet_matches_the_text_file(seed_events: Path, tmp_path: Path) -> None:
    summary = build_actions(seed_events, tmp_path / "actions.txt", ActionsSettings())
    table = pq.read_table(tmp_path / "actions.parquet")
    assert table.schema.equals(ACTIONS_SCHEMA)
    assert table["action"].to_pylist() == (tmp_path / "actions.txt").read_text().splitlines()
    assert table["position"].to_pylist() == list(range(summary.actions))
    assert table["timestamp"].null_count == 0
    assert table["verb"].to_pylist()[:3] == [a.split("_", 1)[0] for a in table["action"].to_pylist()[:3]]
    assert summary.events == summary.actions + summary.dropped_by_verb + summary.dropped_by_resource
    assert summary.distinct_actions == len(set(table["action"].to_pylist()))


def test_custom_presets(seed_events: Path, tmp_path: Path) -> None:
    events = pq.read_table(seed_events).to_pylist()
    reads = ActionsSettings(preset="custom", keep_reads=True, drop_resources=())
    assert build_actions(seed_events, tmp_path / "all.txt", reads).actions == len(events)
    subres = ActionsSettings(preset="custom", include_subresource=True)
    build_actions(seed_events, tmp_path / "sub.txt", subres)
    tokens = set((tmp_path / "sub.txt").read_text().splitlines())
    assert {"patch_pods/status", "create_pods/binding", "create_pods"} <= tokens
    writes = ("get", "list", "watch", "update", "patch", "delete", "deletecollection")
    only_creates = ActionsSettings(preset="custom", drop_verbs=writes, drop_resources=())
    build_actions(seed_events, tmp_path / "creates.txt", only_creates)
    assert {t.split("_", 1)[0] for t in (tmp_path / "creates.txt").read_text().splitlines()} == {"create"}
    with pytest.raises(InputError, match="paper"):
        build_actions(seed_events, tmp_path / "x.txt", ActionsSettings(preset="paper", keep_reads=True))


def test_seed_text_corpus_is_accepted(sample_dir: Path, tmp_path: Path) -> None:
    summary = build_actions(sample_dir / "events-dataset.txt", tmp_path / "actions.txt", ActionsSettings())
    assert summary.actions == 21_642 and summary.distinct_actions == 198
    assert (tmp_path / "actions.txt").read_bytes() == (sample_dir / "events-dataset.txt").read_bytes().rstrip(
        b"\n"
    ) + b"\n"


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        build_actions(tmp_path / "missing.parquet", tmp_path / "a.txt", ActionsSettings())
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="not a Parquet file"):
        build_actions(junk, tmp_path / "a.txt", ActionsSettings())
    assert not (tmp_path / "a.txt").exists() and not (tmp_path / "a.parquet").exists()


def test_distribution_report(seed_events: Path, tmp_path: Path) -> None:
    summary = build_actions(seed_events, tmp_path / "actions.txt", ActionsSettings())
    written = write_distribution_report(tmp_path / "actions.parquet", tmp_path / "report")
    assert [p.name for p in written] == ["distribution.png", "distribution.pdf", "distribution.csv"]
    png, pdf, table = written
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sum(int(r["count"]) for r in rows) == summary.actions
    assert len(rows) == summary.distinct_actions
    counts = [int(r["count"]) for r in rows]
    assert counts == sorted(counts, reverse=True)
    again = write_distribution_report(tmp_path / "actions.parquet", tmp_path / "again")
    for first, second in zip(written, again, strict=True):
        assert first.read_bytes() == second.read_bytes(), first.name


def test_cli_actions(seed_events: Path, tmp_path: Path) -> None:
    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "perfspec", "actions", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)

    done = run(seed_events, "--out", tmp_path / "a" / "actions.txt")
    assert done.returncode == 0, done.stderr
    assert "2,163 actions" in done.stdout
    assert (tmp_path / "a" / "distribution.png").exists()
    custom = run(
        seed_events, "--out", tmp_path / "b" / "actions.txt", "--drop-verbs", "get,list", "--no-report"
    )
    assert custom.returncode == 0 and "preset custom" in custom.stdout
    assert not (tmp_path / "b" / "distribution.png").exists()
    refused = run(seed_events, "--out", tmp_path / "c.txt", "--preset", "paper", "--keep-reads")
    assert (
        refused.returncode == 2 and refused.stderr.startswith("error: ") and "Traceback" not in refused.stderr
    )
    # --out must be FILE.txt: a .parquet or suffix-less --out would clobber the Parquet twin or scatter
    # the report into the parent folder.
    for bad in (tmp_path / "d.parquet", tmp_path / "e"):
        clobber = run(seed_events, "--out", bad)
        assert clobber.returncode == 2 and "must name a .txt file" in clobber.stderr
        assert not bad.exists()
