"""Hot model updates against a real MLflow registry (SQLite): an alias resolved to its version, a new
champion loaded beside the serving one, and a version that fails to load keeping the old one serving."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from perfspec.errors import InputError
from perfspec.live.models import ModelWatcher, load_served, split_alias, version_of
from perfspec.live.service import LiveService
from perfspec.settings import ActionsSettings, LiveSettings
from tests.live.conftest import Registry, events_of, ngram_bundle
from tests.synthetic import chain_actions


def test_aliases_are_told_apart_from_fixed_models() -> None:
    assert split_alias("models:/perfspec@champion") == ("perfspec", "champion")
    assert split_alias("models:/perfspec/3") is None and split_alias("/runs/x") is None
    assert version_of("/runs/x", "/runs/x/predictor.npz") == "/runs/x/predictor.npz"


def test_a_model_that_fails_to_load_keeps_the_old_one_serving(tmp_path: Path, registry: Registry) -> None:
    from perfspec.actions.presets import resolve

    registry.promote(registry.register(ngram_bundle(tmp_path / "m1", chain_actions(300, 1))))
    served = load_served("models:/perfspec@champion", tracking_uri=registry.uri)
    assert served.version == "models:/perfspec/1" and served.predictor.source == "models:/perfspec/1"
    with pytest.raises(InputError, match="no version of 'perfspec' has the alias @nobody"):
        load_served("models:/perfspec@nobody", tracking_uri=registry.uri)

    lines: list[str] = []
    watcher = ModelWatcher(
        "models:/perfspec@champion", served, 0.05, tracking_uri=registry.uri, log=lines.append
    )
    service = LiveService(
        served,
        tmp_path / "live",
        LiveSettings(),
        resolve(ActionsSettings()),
        watcher=watcher,
        log=lines.append,
    )
    broken = tmp_path / "broken" / "predictor.npz"
    broken.parent.mkdir()
    broken.write_bytes(b"not a bundle")
    registry.promote(registry.register(broken))  # v2: cannot be loaded
    service.start()
    deadline = time.monotonic() + 30
    while watcher.failures < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    events = events_of(chain_actions(20))
    service.submit_lines([json.dumps(e).encode() for e in events])
    summary = service.stop()
    assert watcher.failures >= 3 and summary["load_failures"] == watcher.failures
    failed = [line for line in lines if "cannot load models:/perfspec/2" in line]
    assert len(failed) == 1 and "models:/perfspec/1 keeps serving" in failed[0]  # one line, not one per poll
    assert summary["model_versions"] == ["models:/perfspec/1"] and summary["predictions"] == 20
    metrics = service.metrics_text()
    assert f"perfspec_live_model_load_failures_total {watcher.failures}" in metrics
    assert 'perfspec_live_model_info{version="models:/perfspec/1"} 1' in metrics

    registry.promote(registry.register(ngram_bundle(tmp_path / "m3", chain_actions(300, 3))))  # v3 loads
    assert watcher.check() is not None and watcher.take() is not None
    assert any("loaded models:/perfspec/3" in line for line in lines)
