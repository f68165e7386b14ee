"""Fixtures of the collection tests: the stand-in helm, real audit events, a running receiver."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

FAKE_HELM = Path(__file__).with_name("fake_helm.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CHART = Path(__file__).parent / "charts" / "tiny"


@dataclass
class FakeHelm:
    """A ``helm`` wrapper script running fake_helm.py with this interpreter, and its state folder."""

    path: Path
    state: Path

    def configure(self, **config: Any) -> None:
        (self.state / "config.json").write_text(json.dumps(config))

    def calls(self, sub: str | None = None) -> list[list[str]]:
        log = self.state / "calls.jsonl"
        if not log.exists():
            return []
        rows = [json.loads(line)["argv"] for line in log.read_text().splitlines()]
        return [r for r in rows if sub is None or (r and r[0] == sub)]

    def releases(self) -> dict[str, Any]:
        path = self.state / "releases.json"
        return json.loads(path.read_text())["releases"] if path.exists() else {}


@pytest.fixture
def fake_helm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHelm:
    state = tmp_path / "helm-state"
    state.mkdir()
    wrapper = tmp_path / "bin" / "helm"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_HELM}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("FAKE_HELM_DIR", str(state))
    return FakeHelm(wrapper, state)


def load_sample_events(shared_data: Path) -> list[dict[str, Any]]:
    """Every real event of ../shared/data/audit-samples (JSON lines, pretty or concatenated documents)."""
    events: list[dict[str, Any]] = []
    decoder = json.JSONDecoder()
    for path in sorted((shared_data / "audit-samples").rglob("*")):
        if path.suffix not in (".log", ".json"):
            continue
        text, pos = path.read_text(), 0
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            doc, pos = decoder.raw_decode(text, pos)
            docs = (
                doc
                if isinstance(doc, list)
                else doc.get("items", [])
                if doc.get("kind") == "EventList"
                else [doc]
            )
            events += docs
    return [e for e in events if isinstance(e, dict) and e.get("auditID")]


#: Real audit events bundled with the repo (attributed in sample/README.md): a fresh clone's fallback.
BUNDLED_EVENTS = REPO_ROOT / "sample" / "audit2rbac-demo.jsonl"


@pytest.fixture(scope="session")
def sample_events() -> list[dict[str, Any]]:
    """Every real event of ../shared/data/audit-samples; without it, the bundled sample's 37 events."""
    from tests.conftest import SHARED_DATA

    if SHARED_DATA.is_dir():
        events = load_sample_events(SHARED_DATA)
        assert len(events) > 50
        return events
    events = [json.loads(line) for line in BUNDLED_EVENTS.read_text().splitlines() if line.strip()]
    assert len(events) > 30
    return events


def read_jsonl(folder: Path, pattern: str = "audit-*.jsonl") -> list[dict[str, Any]]:
    rows = []
    for path in sorted(folder.glob(pattern)):
        rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


@pytest.fixture
def clean_env() -> Iterator[dict[str, str]]:
    """Environment for perfspec subprocesses (telemetry off, repo importable)."""
    env = dict(os.environ)
    env.update(DO_NOT_TRACK="true", PYTHONUNBUFFERED="1")
    yield env


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Any]:
    """Start real receivers on a free loopback port (``out``: default tmp/out; ``limits``: the
    constructor's caps; the rest: ReceiverSettings fields); stopped after the test."""
    from perfspec.collect.receiver import AuditReceiver
    from perfspec.settings import ReceiverSettings

    started: list[AuditReceiver] = []

    def start(
        out: Path | None = None, limits: dict[str, int] | None = None, **settings: Any
    ) -> AuditReceiver:
        r = AuditReceiver(out or tmp_path / "out", ReceiverSettings(port=0, **settings), **(limits or {}))
        started.append(r.start())
        return r

    yield start
    for r in started:
        if not r.stopping.is_set():
            r.stop()
