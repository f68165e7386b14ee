"""Fast checks of the orchestration pieces that need no server: embedded-mode env decisions, the
artifact content, the deployment definitions (prefect.yaml and serve.py) and the CLI's early errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from perfspec.errors import InputError
from perfspec.runtime import configure_embedded
from perfspec.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def test_embedded_defaults_put_prefect_and_mlflow_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings().with_section("paths", data_dir=tmp_path / "data")
    env: dict[str, str] = {}
    runtime = configure_embedded(settings, env)
    assert runtime.embedded_prefect
    assert env["PREFECT_HOME"] == str((tmp_path / "data" / "prefect").resolve())
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "60"
    assert (
        runtime.mlflow_tracking_uri == f"sqlite:///{(tmp_path / 'data' / 'mlflow' / 'mlflow.db').resolve()}"
    )
    hints = "\n".join(runtime.ui_hints())
    assert "prefect server start" in hints and "mlflow ui --backend-store-uri sqlite:///" in hints


def test_user_environment_wins(tmp_path: Path) -> None:
    env = {
        "PREFECT_API_URL": "http://127.0.0.1:4200/api",
        "PREFECT_HOME": str(tmp_path / "home"),
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "true",
    }
    runtime = configure_embedded(Settings().with_section("paths", data_dir=tmp_path), env)
    assert not runtime.embedded_prefect
    assert env["PREFECT_HOME"] == str(tmp_path / "home") and env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "true"
    assert runtime.mlflow_tracking_uri == "http://127.0.0.1:5000"
    assert runtime.ui_hints() == ["Prefect UI:  http://127.0.0.1:4200", "MLflow UI:   http://127.0.0.1:5000"]


def _metrics() -> dict:
    """The parts of a ``metrics.json`` the summaries read (perfspec.learn.evaluation's contract)."""
    return {
        "dataset": {"actions": 600, "original_actions": 1200, "repeats_removed": 600},
        "leakage": {"val": 0.1, "test": 0.62, "warning": True},
        "test": {
            "ngram": {"top1": 0.47, "top5": 0.9},
            "most_frequent": {"top1": 0.1, "top5": 0.4},
            "lstm-8x1-e4-d0": {"top1": 0.5, "top5": 0.95},
            "mixture-lstm-8x1-e4-d0": {"top1": 0.48, "top5": 0.91},
        },
        "test_changes": {"ngram": {"top1": 0.1}},
        "cv": {
            "ngram": {"top5": {"mean": 0.88, "std": 0.01}},
            "lstm-8x1-e4-d0": {"top5": {"mean": 0.86, "std": 0.02}},
            "mixture-lstm-8x1-e4-d0": {"top5": {"mean": 0.881234, "std": 0.01}},
        },
        "champion_candidate": "mixture-lstm-8x1-e4-d0",
        "target_metric": "top5",
    }


def test_topk_rows_put_the_best_cv_model_first() -> None:
    from flows.summary import topk_rows

    rows = topk_rows(_metrics())
    assert [r["model"] for r in rows] == [
        "mixture-lstm-8x1-e4-d0",
        "ngram",
        "lstm-8x1-e4-d0",
        "most_frequent",
    ]
    assert rows[0] == {"model": "mixture-lstm-8x1-e4-d0", "top1": 0.48, "top5": 0.91, "cv_top5": 0.8812}
    assert rows[-1]["cv_top5"] == ""  # not cross-validated: ranked by its hold-out top-5
    # no CV at all (--cv 0): hold-out top-5 decides the order
    no_cv = {"test": _metrics()["test"]}
    assert [r["model"] for r in topk_rows(no_cv)][:2] == ["lstm-8x1-e4-d0", "mixture-lstm-8x1-e4-d0"]
    assert topk_rows({}) == []


def _pipeline_result(decision: dict):
    from tasks.records import (
        ActionsOutput,
        CleanOutput,
        DatasetOutput,
        PipelineResult,
        PreparedData,
        PromotionOutput,
        ScoredModel,
        TrainedRun,
    )

    prepared = PreparedData(
        sources=["audit.jsonl"],
        clean=CleanOutput(
            out_dir="c", events="c/e", events_sha256="x", read=10, kept=8, duplicates=1, rejected=1
        ),
        actions=ActionsOutput(actions_txt="a.txt", actions_sha256="y", actions=1200, distinct=6),
        dataset=DatasetOutput(
            dataset_dir="d", fingerprint="f" * 64, actions=600, vocab_size=7, windows={"train": 400}
        ),
    )
    models = [
        ScoredModel(
            name="ngram", family="ngram", run_dir="r", test_top5=0.9, cv_top5_mean=0.88, info={"order": 3}
        ),
        ScoredModel(
            name="lstm-8x1-e4-d0",
            family="lstm",
            run_dir="r",
            test_top5=0.95,
            cv_top5_mean=0.86,
            info={"best_epoch": 2, "train_seconds": 1.5},
        ),
    ]
    trained = TrainedRun(
        models=models,
        run_dir="/runs/abc",
        metrics=_metrics(),
        run_id="run123",
        tracking_uri="sqlite:///m.db",
        promotion=PromotionOutput(run_id="run123", promoted=decision["promoted"], decision=decision),
    )
    return PipelineResult(prepared=prepared, trained=trained)


def test_markdown_summary_reports_data_models_candidate_and_decision() -> None:
    from flows.summary import markdown_summary

    decision = {
        "registered_model": "perfspec",
        "version": "2",
        "promoted": False,
        "reason": "v2 top5 0.9100 does not beat v1 0.9000 beyond noise",
        "challenger_score": 0.91,
        "champion_version": "1",
    }
    text = markdown_summary(_pipeline_result(decision), ui_hint="MLflow UI: http://127.0.0.1:5000")
    lines = text.splitlines()
    assert "- events: read 10, kept 8, duplicates 1, rejected 1" in lines
    assert "- actions: 1200 (6 distinct)" in lines
    assert any(line.startswith("- **repeats removed**: 600 of 1200 actions") for line in lines)
    assert "- leakage (held-out windows seen verbatim in training): val 0.100, test 0.620 — " in text
    assert "**scores measure memorisation**" in text
    assert "- `ngram` (ngram): hold-out top-5 0.9000, CV top-5 0.8800 (order 3)" in lines
    assert "- `lstm-8x1-e4-d0` (lstm): hold-out top-5 0.9500, CV top-5 0.8600 (best_epoch 2)" in lines
    assert "- candidate: `mixture-lstm-8x1-e4-d0` (best CV mean top5)" in lines
    assert "| model | top1 | top5 | cv_top5 |" in lines
    assert "| mixture-lstm-8x1-e4-d0 | 0.48 | 0.91 | 0.8812 |" in lines
    assert f"- v2 not promoted (champion kept): {decision['reason']}" in lines
    assert "- champion_version: `1`" in lines
    assert "- run `run123` in `sqlite:///m.db`" in lines and lines[-1] == "- MLflow UI: http://127.0.0.1:5000"

    # a re-run's replayed decision says so rather than announcing an old promotion as news
    replayed = {**decision, "version": "1", "promoted": True, "reason": "no @champion yet", "replayed": True}
    replayed |= {"current_champion": "3", "champion_version": None}
    text = markdown_summary(_pipeline_result(replayed))
    assert "- v1 was promoted to @champion when first logged (nothing changed now; @champion is v3)" in text


def test_prefect_yaml_declares_the_deployments() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel

    raw = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    model = PrefectYamlModel.model_validate(raw)
    by_name = {d.name: d for d in model.deployments}
    assert set(by_name) == {"nightly-retrain", "on-demand", "check"}
    nightly = by_name["nightly-retrain"]
    assert nightly.entrypoint == "flows/pipeline.py:pipeline"
    [schedule] = nightly.schedules
    assert schedule.cron == "{{ $PERFSPEC_PREFECT__NIGHTLY_CRON }}"
    assert schedule.timezone == "{{ $PERFSPEC_PREFECT__TIMEZONE }}"
    assert (
        by_name["on-demand"].entrypoint == "flows/collect.py:collect" and not by_name["on-demand"].schedules
    )
    for deployment in model.deployments:  # every entrypoint resolves to a flow object
        module, _, attr = deployment.entrypoint.partition(":")
        assert (REPO / module).is_file() and f"def {attr}(" in (REPO / module).read_text()


def test_serve_builds_prefect_yamls_deployments_with_the_schedule_from_settings() -> None:
    from deployments.serve import build_deployments

    settings = Settings().with_section("prefect", nightly_cron="30 3 * * 1-5", timezone="America/Montreal")
    deployments = {d.name: d for d in build_deployments(settings)}
    raw = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    assert set(deployments) == {entry["name"] for entry in raw["deployments"]}
    for entry in raw["deployments"]:  # one definition: everything prefect.yaml says, serve does
        served = deployments[entry["name"]]
        assert served.flow_name == entry["entrypoint"].rpartition(":")[2]
        assert served.tags == entry["tags"] and served.description == entry["description"]
        assert served.parameters == (entry.get("parameters") or {})
    [schedule] = deployments["nightly-retrain"].schedules
    assert schedule.schedule.cron == "30 3 * * 1-5" and schedule.schedule.timezone == "America/Montreal"
    limit = deployments["nightly-retrain"].concurrency_options
    assert deployments["nightly-retrain"].concurrency_limit == 1 and limit is not None
    assert limit.collision_strategy == "ENQUEUE"
    assert not deployments["on-demand"].schedules


def test_cli_pipeline_rejects_a_missing_source_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("perfspec")),
            "pipeline",
            "--source",
            str(tmp_path / "nope.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: file not found") and "Traceback" not in done.stderr


def test_cli_deploy_needs_a_server() -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("perfspec")), "deploy"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 3 and "PREFECT_API_URL is not set" in done.stderr


def test_nightly_sources_are_completed_campaigns_in_start_order(tmp_path: Path) -> None:
    from perfspec.collect.inputs import resolve_sources

    def campaign(name: str, status: str | None, started: str, files: list[str]) -> None:
        folder = tmp_path / "raw" / name
        folder.mkdir(parents=True)
        if status is not None:
            manifest = {"status": status, "runs": [{"started_at": started}]}
            (folder / "manifest.json").write_text(json.dumps(manifest))
        for file in files:
            (folder / file).write_text("{}\n")

    # Names sort the other way round from the start times: order must follow the start times.
    campaign("a-late", "completed", "2026-11-20T02:00:00Z", ["audit-000001.jsonl"])
    campaign("z-early", "completed", "2026-11-01T02:00:00Z", ["audit-000002.jsonl", "audit-000001.jsonl"])
    campaign("m-running", "running", "2026-11-10T02:00:00Z", ["audit-000001.jsonl"])
    campaign("n-interrupted", "interrupted", "2026-11-11T02:00:00Z", ["audit-000001.jsonl"])
    found = resolve_sources(["raw/*/audit-*.jsonl"], tmp_path)
    assert [(p.parent.name, p.name) for p in found] == [
        ("z-early", "audit-000001.jsonl"),
        ("z-early", "audit-000002.jsonl"),
        ("a-late", "audit-000001.jsonl"),
    ]


def test_a_source_folder_is_passed_to_the_cleaner_whole(tmp_path: Path) -> None:
    from perfspec.collect.inputs import resolve_sources

    (tmp_path / "logs").mkdir()
    assert resolve_sources([str(tmp_path / "logs")], tmp_path) == [(tmp_path / "logs").resolve()]
    with pytest.raises(InputError, match="not found"):
        resolve_sources([str(tmp_path / "missing.jsonl")], tmp_path)
