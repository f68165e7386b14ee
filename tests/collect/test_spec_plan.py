"""Campaign spec and plan: both input formats, skip/limit/shuffle/repetitions, collision-free names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from perfspec.collect.plan import HELM_RELEASE_MAX, plan_steps, release_name
from perfspec.collect.spec import load_campaign
from perfspec.errors import InputError
from perfspec.settings import CollectSettings

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_seed_charts_plan_is_60_installs_then_60_uninstalls(sample_dir: Path) -> None:
    spec = load_campaign(sample_dir / "helm-charts.json", CollectSettings())
    assert len(spec.charts) == 60
    steps = plan_steps(spec)
    assert [s.action for s in steps] == ["install"] * 60 + ["uninstall"] * 60
    assert [s.chart for s in steps[:60]] == list(spec.charts)  # listed order
    assert [s.release for s in steps[60:]] == [s.release for s in steps[:60]]
    releases = {s.release for s in steps}
    assert len(releases) == 60  # the four shared names do not collide
    names = [c.name for c in spec.charts]
    assert sorted({n for n in names if names.count(n) > 1}) == [
        "elasticsearch",
        "external-dns",
        "keycloak",
        "metrics-server",
    ]
    for step in steps:
        assert DNS_LABEL.match(step.release) and len(step.release) <= HELM_RELEASE_MAX
        assert step.namespace == step.release
    first = steps[0]
    assert first.chart.repo == "https://prometheus-community.github.io/helm-charts"
    assert first.chart.version == "44.3.0" and first.timeout_seconds == 45 and first.pause_after_seconds == 10


def test_yaml_list_skip_limit_shuffle_repetitions_pairwise(tmp_path: Path) -> None:
    charts = tmp_path / "charts.yaml"
    charts.write_text(
        "- {name: redis, repo: 'https://charts.bitnami.com/bitnami', version: 17.6.0}\n"
        "- {name: nginx, repo: 'https://charts.bitnami.com/bitnami', version: '13.2.22'}\n"
        "- {name: grafana, repo: 'https://grafana.github.io/helm-charts', version: 6.50.5}\n"
        "- {name: tiny, repo: ./tiny}\n"
    )
    spec = load_campaign(
        charts, CollectSettings(), skip=("nginx",), shuffle_seed=7, repetitions=2, mode="pairwise"
    )
    assert [c.name for c in spec.charts] == ["redis", "grafana", "tiny"]
    assert spec.charts[0].version == "17.6.0"
    assert spec.charts[2].repo == str(tmp_path / "tiny") and spec.charts[2].is_local
    steps = plan_steps(spec)
    assert len(steps) == 12
    assert [s.action for s in steps[:2]] == ["install", "uninstall"] and steps[0].release == steps[1].release
    assert len({s.release for s in steps}) == 6  # repetitions get their own names
    again = plan_steps(spec)
    assert [s.release for s in again] == [s.release for s in steps]  # same seed, same order
    other = plan_steps(spec.model_copy(update={"shuffle_seed": 8}))
    orders = {tuple(s.chart.name for s in plan[::2]) for plan in (steps, other)}
    assert len(orders) == 2
    limited = load_campaign(charts, CollectSettings(), limit=1)
    assert [c.name for c in limited.charts] == ["redis"]


def test_mapping_form_sets_campaign_fields(tmp_path: Path) -> None:
    charts = tmp_path / "c.yaml"
    charts.write_text(
        "name: demo\nrepetitions: 3\npause_after_install_seconds: 0\ncharts:\n- name: a\n  repo: x\n"
    )
    spec = load_campaign(charts, CollectSettings())
    assert spec.name == "demo" and spec.repetitions == 3 and spec.pause_after_install_seconds == 0
    assert load_campaign(charts, CollectSettings(), repetitions=1).repetitions == 1  # flags win


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"packages": [{"name": "x"}]}', "package #0"),
        ("[]", "no charts"),
        ('{"foo": 1}', "expected Artifact Hub JSON"),
    ],
)
def test_bad_charts_files_are_clear_input_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "charts.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_campaign(path, CollectSettings())


def test_bad_overrides(tmp_path: Path, sample_dir: Path) -> None:
    with pytest.raises(InputError, match="not in"):
        load_campaign(sample_dir / "helm-charts.json", CollectSettings(), skip=("no-such-chart",))
    with pytest.raises(InputError, match="unknown campaign field"):
        load_campaign(sample_dir / "helm-charts.json", CollectSettings(), colour="red")
    with pytest.raises(InputError, match="repetitions"):
        load_campaign(sample_dir / "helm-charts.json", CollectSettings(), repetitions=0)
    with pytest.raises(InputError, match="not found"):
        load_campaign(tmp_path / "missing.json", CollectSettings())
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {name: Bad_Name}\n")
    with pytest.raises(InputError, match="chart #0"):
        load_campaign(bad, CollectSettings())


def test_long_names_are_shortened_without_collision() -> None:
    a = release_name("ps", 12, 7, "a" * 80)
    b = release_name("ps", 12, 7, "a" * 79 + "b")
    assert len(a) <= HELM_RELEASE_MAX and len(b) <= HELM_RELEASE_MAX and a != b
    assert DNS_LABEL.match(a) and DNS_LABEL.match(b)


def test_fingerprint_ignores_pauses_but_not_charts(sample_dir: Path) -> None:
    base = load_campaign(sample_dir / "helm-charts.json", CollectSettings())
    assert base.fingerprint() == base.model_copy(update={"pause_after_install_seconds": 0}).fingerprint()
    assert base.fingerprint() != base.model_copy(update={"charts": base.charts[:3]}).fingerprint()
    json.dumps(base.model_dump(mode="json"))
