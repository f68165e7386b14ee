"""The pyhelm3-based driver against the stand-in helm: exact commands, parsed output, failure paths."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from perfspec.collect.helm import HelmError, make_helm_driver
from perfspec.collect.spec import ChartRef
from perfspec.errors import EnvironmentProblem
from tests.collect.conftest import TINY_CHART, FakeHelm

REDIS = ChartRef(
    name="redis", repo="https://charts.bitnami.com/bitnami", repo_name="bitnami", version="17.6.0"
)


def test_install_uninstall_exact_commands(fake_helm: FakeHelm, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    driver = make_helm_driver(fake_helm.path, kubeconfig)
    assert driver.version() == "3.14.2"
    outcome = driver.install("ps-1-01-redis", "ps-1-01-redis", REDIS, 45)
    assert (outcome.status, outcome.revision, outcome.chart_version) == ("deployed", 1, "17.6.0")
    assert fake_helm.calls("upgrade") == [
        [
            "upgrade",
            "ps-1-01-redis",
            "redis",
            "--history-max",
            "10",
            "--install",
            "--output",
            "json",
            "--timeout",
            "45s",
            "--values",
            "-",
            "--create-namespace",
            "--namespace",
            "ps-1-01-redis",
            "--repo",
            "https://charts.bitnami.com/bitnami",
            "--version",
            "17.6.0",
            "--kubeconfig",
            str(kubeconfig),
        ]
    ]
    assert [r.name for r in driver.list_releases()] == ["ps-1-01-redis"]
    assert driver.uninstall("ps-1-01-redis", "ps-1-01-redis", 120) is True
    assert fake_helm.calls("uninstall") == [
        [
            "uninstall",
            "ps-1-01-redis",
            "--timeout",
            "120s",
            "--namespace",
            "ps-1-01-redis",
            "--kubeconfig",
            str(kubeconfig),
        ]
    ]
    assert driver.uninstall("ps-1-01-redis", "ps-1-01-redis", 120) is False  # already gone: not an error
    assert fake_helm.releases() == {}


def test_local_chart_and_wait(fake_helm: FakeHelm) -> None:
    driver = make_helm_driver(fake_helm.path)
    tiny = ChartRef(name="tiny", repo=str(TINY_CHART))
    outcome = driver.install("ps-1-01-tiny", "ps-1-01-tiny", tiny, 30, wait=True)
    assert outcome.chart_version == "0.1.0"
    call = fake_helm.calls("upgrade")[0]
    assert call[2] == str(TINY_CHART.resolve()) and "--repo" not in call
    assert call[-2:] == ["--wait", "--wait-for-jobs"]


def test_failures_are_classified_helm_errors(fake_helm: FakeHelm) -> None:
    fake_helm.configure(
        fail=[
            {
                "command": "upgrade",
                "match": "redis",
                "stderr": 'Error: INSTALLATION FAILED: chart "redis" version "9.9.9" not found',
            }
        ]
    )
    driver = make_helm_driver(fake_helm.path)
    with pytest.raises(HelmError, match="not found") as caught:
        driver.install("ps-1-01-redis", "ps-1-01-redis", REDIS, 45)
    assert caught.value.kind == "ChartNotFoundError"


def test_clear_pending_uninstalls_or_rolls_back(fake_helm: FakeHelm) -> None:
    fake_helm.configure(
        fail=[
            {
                "command": "upgrade",
                "match": "stuck",
                "times": 1,
                "leave": "pending-install",
                "stderr": "Error: INSTALLATION FAILED: context deadline exceeded",
            }
        ]
    )
    driver = make_helm_driver(fake_helm.path)
    with pytest.raises(HelmError):
        driver.install("ps-1-01-stuck", "ns", REDIS, 5)
    assert driver.clear_pending("ps-1-01-stuck", "ns", 5) == "uninstalled release stuck in pending-install"
    assert fake_helm.releases() == {}
    assert driver.clear_pending("ps-1-01-stuck", "ns", 5) is None  # nothing there
    driver.install("ps-1-01-ok", "ns", REDIS, 5)
    assert driver.clear_pending("ps-1-01-ok", "ns", 5) is None  # deployed is proceedable


def test_hung_helm_is_killed_after_timeout_plus_grace(fake_helm: FakeHelm) -> None:
    fake_helm.configure(sleep={"upgrade": 30})
    driver = make_helm_driver(fake_helm.path, grace_seconds=0.5)
    started = time.monotonic()
    with pytest.raises(HelmError, match="did not finish") as caught:
        driver.install("ps-1-01-redis", "ns", REDIS, 1)
    assert caught.value.kind == "Timeout"
    assert time.monotonic() - started < 10


def test_missing_or_broken_helm_is_an_environment_problem(tmp_path: Path, fake_helm: FakeHelm) -> None:
    with pytest.raises(EnvironmentProblem, match="not found"):
        make_helm_driver(tmp_path / "no-helm")
    broken = tmp_path / "broken-helm"
    broken.write_text("#!/bin/sh\necho boom >&2\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(EnvironmentProblem, match="version"):
        make_helm_driver(broken)
    with pytest.raises(EnvironmentProblem, match="kubeconfig"):
        make_helm_driver(fake_helm.path, tmp_path / "missing-kubeconfig")
