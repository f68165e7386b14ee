"""Labelling events by campaign step, and the CLI (dry-run plan, receive --help, one-line errors)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from perfspec.audit.clean import clean_sources
from perfspec.collect.campaign import run_campaign
from perfspec.collect.helm import make_helm_driver
from perfspec.collect.labels import parse_time
from perfspec.collect.manifest import load_manifest
from perfspec.collect.receiver import AuditReceiver
from perfspec.collect.spec import load_campaign
from perfspec.settings import CleanSettings, CollectSettings, ReceiverSettings
from tests.collect.conftest import REPO_ROOT, TINY_CHART, FakeHelm


def _event(n: int, when: dt.datetime, namespace: str | None) -> dict:
    stamp = when.isoformat().replace("+00:00", "Z")
    ref = {"resource": "configmaps", "namespace": namespace} if namespace else {"resource": "nodes"}
    return {
        "auditID": f"e{n}",
        "stage": "ResponseComplete",
        "verb": "create",
        "objectRef": ref,
        "requestReceivedTimestamp": stamp,
        "stageTimestamp": stamp,
        "level": "Metadata",
    }


def test_parse_time_handles_nanoseconds_and_z() -> None:
    assert parse_time("2023-01-27T18:28:08.123456789Z") == parse_time("2023-01-27T18:28:08.123456Z")
    assert (
        parse_time("2023-01-27T18:28:08Z") == dt.datetime(2023, 1, 27, 18, 28, 8, tzinfo=dt.UTC).timestamp()
    )
    assert parse_time("yesterday") is None and parse_time(None) is None


def test_events_received_during_a_campaign_are_labelled_by_step(fake_helm: FakeHelm, tmp_path: Path) -> None:
    charts = tmp_path / "charts.yaml"
    charts.write_text(f"- {{name: tiny, repo: '{TINY_CHART}'}}\n- {{name: other, repo: '{TINY_CHART}'}}\n")
    out = tmp_path / "raw" / "lab"
    receiver = AuditReceiver(out, ReceiverSettings(port=0)).start()
    sent: list[str] = []

    def progress(kind: str, record: dict) -> None:  # the "API server" reports what each step does
        if kind == "start":
            now = dt.datetime.now(dt.UTC)
            body = {
                "kind": "EventList",
                "apiVersion": "audit.k8s.io/v1",
                "items": [_event(len(sent), now + dt.timedelta(milliseconds=1), record["namespace"])],
            }
            sent.append(record["release"])
            assert httpx.post(receiver.post_url, json=body).status_code == 200

    before = {
        "kind": "EventList",
        "apiVersion": "audit.k8s.io/v1",
        "items": [_event(99, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1), None)],
    }
    httpx.post(receiver.post_url, json=before)
    settings = CollectSettings(pause_after_install_seconds=0.05, pause_after_uninstall_seconds=0)
    spec = load_campaign(charts, settings, name="lab")
    result = run_campaign(
        spec, out, make_helm_driver(fake_helm.path), None, receiver_dir=out, progress=progress
    )
    receiver.stop()
    assert result.labelled_events == 5
    rows = [json.loads(x) for x in (out / "labels.jsonl").read_text().splitlines()]
    assert rows[0]["phase"] == "before" and rows[0]["step"] is None
    assert [r["release"] for r in rows[1:]] == sent == ["ps-1-01-tiny", "ps-1-02-other"] * 2
    assert [r["action"] for r in rows[1:]] == ["install", "install", "uninstall", "uninstall"]
    assert all(r["namespace_match"] and r["file"] == "audit-000001.jsonl" for r in rows[1:])
    # joinable with what `perfspec clean <campaign folder>` writes
    clean_sources([out], tmp_path / "clean", CleanSettings())
    events = pq.read_table(tmp_path / "clean" / "events.parquet").to_pylist()
    assert {(r["source_file"], r["line"]) for r in rows} == {
        (e["source_file"], e["source_line"]) for e in events
    }
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
    summary = load_manifest(out / "manifest.json")["labels"]
    assert (summary["events"], summary["labelled"], summary["before"]) == (5, 4, 1)
    assert [s["events"] for s in summary["per_step"]] == [1, 1, 1, 1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perfspec", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},  # rich help: option names not cut
    )


def test_dry_run_prints_the_60_chart_plan(sample_dir: Path) -> None:
    table = _cli("collect", "--charts", str(sample_dir / "helm-charts.json"), "--dry-run")
    assert table.returncode == 0, table.stderr
    assert "120 steps" in table.stdout and "kube-prometheus-stack" in table.stdout
    assert "elasticsearch, external-dns, keycloak, metrics-server" in table.stdout.replace("\n", " ")
    assert "nothing was touched" in table.stdout
    as_json = _cli(
        "collect",
        "--charts",
        str(sample_dir / "helm-charts.json"),
        "--dry-run",
        "--json",
        "--skip",
        "bitnami/keycloak",
        "--shuffle-seed",
        "3",
    )
    steps = json.loads(as_json.stdout)
    assert len(steps) == 118 and {s["action"] for s in steps[:59]} == {"install"}
    assert (
        steps[0]["chart"]["name"] != "kube-prometheus-stack" or steps[1]["chart"]["name"] != "ingress-nginx"
    )
    assert sum(1 for s in steps if s["chart"]["name"] == "keycloak") == 2  # codecentric's is kept


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    missing = _cli("collect", "--charts", str(tmp_path / "nope.json"), "--dry-run")
    assert (
        missing.returncode == 2
        and "charts file not found" in missing.stderr
        and "Traceback" not in missing.stderr
    )
    charts = tmp_path / "c.yaml"
    charts.write_text("- {name: tiny, repo: x}\n")
    no_helm = _cli(
        "collect",
        "--charts",
        str(charts),
        "--helm",
        str(tmp_path / "no-helm"),
        "--skip-cluster-check",
        "--out",
        str(tmp_path / "out"),
    )
    assert no_helm.returncode == 3 and "helm executable not found" in no_helm.stderr
    assert "Traceback" not in no_helm.stderr
    bad_tls = _cli(
        "receive", "--out", str(tmp_path / "o"), "--port", "0", "--tls-cert", str(tmp_path / "c.pem")
    )
    assert bad_tls.returncode == 2 and "--tls-key" in bad_tls.stderr
    for command in ("collect", "receive", "tail-audit", "label"):
        help_text = _cli(command, "--help")
        assert help_text.returncode == 0 and "Usage" in help_text.stdout
        if command == "collect":
            assert "--keep-leftover-namespaces" in help_text.stdout
        if command == "receive":
            assert "--insecure" in help_text.stdout
        if command == "tail-audit":
            assert "--keep-bodies" in help_text.stdout


def test_collect_with_receive_records_and_labels_events(fake_helm: FakeHelm, tmp_path: Path) -> None:
    charts = tmp_path / "c.yaml"
    charts.write_text(f"- {{name: tiny, repo: '{TINY_CHART}'}}\n")
    fake_helm.configure(sleep={"upgrade": 1.5})
    env = {
        **os.environ,
        "PERFSPEC_RECEIVER__PORT": "0",
        "PERFSPEC_RECEIVER__DRAIN_SECONDS": "0.5",
        "PERFSPEC_PATHS__DATA_DIR": str(tmp_path / "data"),
        "FAKE_HELM_DIR": str(fake_helm.state),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perfspec",
            "collect",
            "--charts",
            str(charts),
            "--helm",
            str(fake_helm.path),
            "--skip-cluster-check",
            "--receive",
            "--name",
            "rx",
            "--pause-install",
            "0",
            "--pause-uninstall",
            "0",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()
    url = first.split(" at ", 1)[1].split()[0]
    while not fake_helm.calls("upgrade"):
        time.sleep(0.05)
    event = _event(1, dt.datetime.now(dt.UTC), "ps-1-01-tiny")
    assert httpx.post(
        url, json={"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [event]}
    ).is_success
    out, err = proc.communicate(timeout=60)
    assert "campaign rx: completed" in out
    assert proc.returncode == 0, err
    campaign = tmp_path / "data" / "raw" / "rx"
    rows = [json.loads(x) for x in (campaign / "labels.jsonl").read_text().splitlines()]
    assert [(r["action"], r["release"], r["namespace_match"]) for r in rows] == [
        ("install", "ps-1-01-tiny", True)
    ]
    assert load_manifest(campaign / "manifest.json")["labels"]["labelled"] == 1
    assert "labelled 1 of 1 events" in err
