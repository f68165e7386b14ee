"""The collect flow with the stand-in helm (tests/collect/fake_helm.py) under a real Prefect test server:
a campaign runs through the flow, and a second campaign on the same cluster waits for the slot."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from perfspec.errors import EnvironmentProblem
from tests import prefect_harness
from tests.collect.conftest import FAKE_HELM

CHARTS = """\
- {name: redis, repo: 'https://charts.bitnami.com/bitnami', repo_name: bitnami, version: 17.6.0}
- {name: nginx, repo: 'https://charts.bitnami.com/bitnami', repo_name: bitnami, version: 13.2.22}
"""
FAST = {"pause_after_install_seconds": 0, "pause_after_uninstall_seconds": 0, "retry_delay_seconds": 0}


@pytest.fixture(scope="module", autouse=True)
def harness(request: pytest.FixtureRequest) -> Path:
    return prefect_harness.start(request)


@pytest.fixture
def helm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    state = tmp_path / "helm-state"
    state.mkdir()
    wrapper = tmp_path / "bin" / "helm"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_HELM}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FAKE_HELM_DIR", str(state))
    return wrapper, state


@pytest.fixture
def charts(tmp_path: Path) -> Path:
    path = tmp_path / "two-charts.yaml"
    path.write_text(CHARTS)
    return path


def _limit(name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name)


def test_collect_runs_a_campaign_holding_the_cluster_slot(helm, charts: Path, tmp_path: Path) -> None:
    from flows.collect import collect

    wrapper, _state = helm
    result = collect(
        campaign_file=charts,
        cluster="kind-perfspec",
        data_dir=tmp_path / "data",
        check_cluster=False,
        options={"helm": str(wrapper), **FAST},
    )
    assert result.ok and result.installs_ok == 2 and result.uninstalls_ok == 2
    assert Path(result.manifest) == tmp_path / "data" / "raw" / "two-charts" / "manifest.json"
    limit = _limit("collect-kind-perfspec")
    assert limit.limit == 1 and limit.active_slots == 0  # created on first use, released afterwards


def test_a_second_campaign_on_the_same_cluster_waits(helm, charts: Path, tmp_path: Path) -> None:
    from prefect.concurrency.sync import concurrency

    from flows.collect import collect, ensure_limit

    wrapper, state = helm
    ensure_limit("collect-kind-busy")
    with concurrency("collect-kind-busy", strict=True):  # a campaign is running on kind-busy
        with pytest.raises(EnvironmentProblem, match="another campaign holds the collect-kind-busy slot"):
            collect(
                campaign_file=charts,
                cluster="kind-busy",
                data_dir=tmp_path / "data",
                wait_seconds=2,
                check_cluster=False,
                options={"helm": str(wrapper), **FAST},
            )
        assert not (state / "calls.jsonl").exists(), "helm must not run while the cluster is busy"
        # another cluster is not blocked
        other = collect(
            campaign_file=charts,
            cluster="kind-other",
            data_dir=tmp_path / "data2",
            check_cluster=False,
            options={"helm": str(wrapper), **FAST},
        )
        assert other.ok


def test_missing_helm_fails_at_once(charts: Path, tmp_path: Path) -> None:
    from flows.collect import collect

    with pytest.raises(EnvironmentProblem, match="helm executable not found"):
        collect(campaign_file=charts, data_dir=tmp_path, options={"helm": str(tmp_path / "no-helm")})
