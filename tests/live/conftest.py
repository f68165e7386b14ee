"""Fixtures of the live predictor tests: audit events made from action sequences, small n-gram models
(``tests.test_replay``'s), a real MLflow registry on SQLite, and a running ``perfspec live``."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest

from perfspec.actions.presets import split
from perfspec.learn.bundle import write_bundle
from tests.test_replay import ngram_predictor

START = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


def audit_event(
    action: str, at: dt.datetime, user: str = "admin", audit_id: str | None = None
) -> dict[str, Any]:
    """A Metadata-level ResponseComplete event (as in an EventList) whose paper action is ``action``."""
    verb, resource, subresource = split(action)
    stamp = at.isoformat().replace("+00:00", "Z")
    return {
        "level": "Metadata",
        "auditID": audit_id or str(uuid.uuid4()),
        "stage": "ResponseComplete",
        "requestURI": f"/api/v1/{resource}",
        "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.1"],
        "userAgent": "kubectl/v1.30",
        "objectRef": {"resource": resource, "namespace": "default", "name": "x", "apiVersion": "v1"}
        | ({"subresource": subresource} if subresource else {}),
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": stamp,
        "stageTimestamp": stamp,
    }


def events_of(
    actions: list[str], users: list[str] | None = None, step_ms: float = 5.0
) -> list[dict[str, Any]]:
    """One event per action, ``step_ms`` apart, from ``users`` in turn (default: one admin)."""
    users = users or ["admin"]
    return [
        audit_event(a, START + dt.timedelta(milliseconds=i * step_ms), users[i % len(users)])
        for i, a in enumerate(actions)
    ]


def event_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}


def ngram_bundle(folder: Path, actions: list[str]) -> Path:
    """A ``predictor.npz`` of an n-gram (window 4) trained on ``actions``."""
    predictor = ngram_predictor(actions)
    folder.mkdir(parents=True, exist_ok=True)
    assert predictor._scorer is not None  # noqa: SLF001 - the bundle is built from its scorer
    write_bundle(predictor._scorer, predictor.vocab, folder / "predictor.npz")  # noqa: SLF001
    return folder / "predictor.npz"


class Registry:
    """A real MLflow registry (SQLite under tmp): versions of model ``perfspec`` made from bundles."""

    def __init__(self, root: Path) -> None:
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        self.artifacts = (root / "artifacts").as_uri()
        self.name = "perfspec"

    def client(self) -> Any:
        from mlflow import MlflowClient

        # the registry too: a Predictor.load earlier in this process may have made another store the
        # process-wide registry (mlflow_store.use_store), which a client without one would write to
        return MlflowClient(self.uri, registry_uri=self.uri)

    def register(self, bundle: Path) -> str:
        """A new version whose model folder holds ``artifacts/predictor.npz`` (what Predictor.load reads)."""
        client = self.client()
        if client.get_experiment_by_name("live-tests") is None:
            client.create_experiment("live-tests", artifact_location=self.artifacts)
        experiment = client.get_experiment_by_name("live-tests").experiment_id
        run = client.create_run(experiment)
        client.log_artifact(run.info.run_id, str(bundle), "model/artifacts")
        client.set_terminated(run.info.run_id)
        if not client.search_registered_models(f"name = '{self.name}'"):
            client.create_registered_model(self.name)
        version = client.create_model_version(
            self.name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id
        )
        return str(version.version)

    def promote(self, version: str, alias: str = "champion") -> None:
        self.client().set_registered_model_alias(self.name, alias, version)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "mlflow")


class LiveProcess:
    """``python -m perfspec live ...`` as a real subprocess; its stderr lines collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        import subprocess
        import sys
        import threading

        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "perfspec", "live", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        """The first stderr line containing ``text`` (fails when the process ends or time runs out)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no line with {text!r} on stderr: {self.lines[-10:]}")

    def url(self) -> str:
        """The receiver's base URL, from the start line."""
        import re

        line = self.wait_for("live: receiving audit events at")
        found = re.search(r"at (https?://\S+?)/audit", line)
        assert found is not None, line
        return found.group(1)

    def stop(self, timeout: float = 60.0) -> int:
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code


def live_env(tmp_path: Path, registry: Registry | None = None, **extra: str) -> dict[str, str]:
    """The environment of a ``perfspec live`` subprocess: its own data dir and MLflow store."""
    import os

    env = dict(os.environ, DO_NOT_TRACK="true", PYTHONUNBUFFERED="1", PERFSPEC_PATHS__DATA_DIR=str(tmp_path))
    if registry is not None:
        env["MLFLOW_TRACKING_URI"] = registry.uri
    return env | extra
