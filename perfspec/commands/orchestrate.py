"""CLI commands of the orchestration layer: ``pipeline`` (the main job), ``deploy`` and ``serve``.

Why the env setup comes first: Prefect reads its settings when first imported, so each command decides
where runs go (``perfspec.runtime.configure_embedded``) before importing flows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from perfspec.settings import Settings
    from tasks.records import PipelineResult


def pipeline(
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            "-s",
            help="Audit log file(s) or folder(s) to learn from (JSON lines or the PerfSPEC CSV, .gz ok; "
            "globs ok, relative ones under the data dir, ordered by campaign start). Repeat for several. "
            "Default: the bundled sample.",
        ),
    ] = None,
    actions: Annotated[
        Path | None,
        typer.Option("--actions", help="Start from an existing actions file (one verb_resource a line)."),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", min=1, help="Training epochs (default: settings; a few on the sample)."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where outputs go (default ./perfspec-data).")
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Train into a new run dir instead of resuming the matching one.")
    ] = False,
) -> None:
    """Run the whole pipeline as a Prefect flow: clean, actions, dataset, train, evaluate, MLflow.

    Offline with nothing configured: Prefect ephemeral mode + MLflow SQLite, both under the data dir.

    PREFECT_API_URL, PREFECT_HOME and MLFLOW_TRACKING_URI are honoured when set.

    A re-run on unchanged data reuses the cleaned data and dataset; an interrupted training resumes.
    """
    from perfspec.errors import InputError
    from perfspec.runtime import configure_embedded
    from perfspec.settings import get_settings

    if source and actions:
        raise InputError("give --source or --actions, not both")
    missing = [s for s in source or [] if not any(c in s for c in "*?[") and not Path(s).exists()]
    if actions is not None and not actions.is_file():
        missing.append(str(actions))
    if missing:  # checked here too, so a typo fails before the Prefect server starts
        raise InputError(f"file not found: {', '.join(missing)}", hint="check the --source/--actions paths")
    settings = get_settings()
    if data_dir is not None:
        settings = settings.with_section("paths", data_dir=data_dir)
        os.environ["PERFSPEC_PATHS__DATA_DIR"] = str(data_dir)
    runtime = configure_embedded(settings)
    if runtime.embedded_prefect:
        typer.echo(f"Prefect: ephemeral server on {runtime.prefect_database} (starts in ~10-60 s)", err=True)

    from prefect import tags

    from flows.pipeline import pipeline as pipeline_flow
    from flows.runinfo import pipeline_label

    name, run_tags = pipeline_label(settings, source, actions, epochs)
    run_tags.append("cli")
    with tags(*run_tags):  # on the pipeline run and every subflow and task run under it
        result = pipeline_flow.with_options(flow_run_name=name)(
            sources=list(source) if source else None,
            actions_file=actions.resolve() if actions else None,
            epochs=epochs,
            data_dir=data_dir.resolve() if data_dir else None,
            fresh=fresh,
        )
    _print_result(result, runtime.ui_hints(), settings.paths.data_dir.resolve())


def _print_result(result: PipelineResult, hints: list[str], data_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from flows.summary import topk_rows

    console = Console(soft_wrap=True)
    prepared, trained = result.prepared, result.trained
    console.print("[bold green]pipeline completed[/]")
    if prepared.clean:
        c = prepared.clean
        console.print(
            f"events: read {c.read}, kept {c.kept}, duplicates {c.duplicates}, rejected {c.rejected}"
        )
    if prepared.actions:
        console.print(f"actions: {prepared.actions.actions} ({prepared.actions.distinct} distinct)")
    rows = topk_rows(trained.metrics)
    if rows:
        leak = trained.metrics["leakage"]
        console.print(
            "leakage (held-out windows seen verbatim in training): "
            f"val {leak['val']:.3f}, test {leak['test']:.3f}"
        )
        table = Table(title="hold-out top-k and blocked-CV top-5 (best CV first; the first is the candidate)")
        for col in rows[0]:
            table.add_column(col)
        for row in rows:
            table.add_row(*(str(v) for v in row.values()))
        console.print(table)
    from perfspec.learn.tracking import kept_epochs

    for line in kept_epochs(trained.metrics):
        console.print(f"training: {line}")
    console.print(f"model: {trained.promotion.describe()}{_reason(trained.promotion.decision)}")
    if result.actor_trained is not None:
        from flows.summary import actor_lines

        for line in actor_lines(result.actor_trained):
            console.print(line.replace("## ", "").replace("`", ""))
    console.print(f"results:  {data_dir}")
    console.print(f"  dataset  {prepared.dataset.dataset_dir}")
    console.print(f"  run      {trained.run_dir}")
    console.print(f"  MLflow   run {trained.run_id} in {trained.tracking_uri}")
    if result.run_url:
        console.print(f"           {result.run_url}")
    from flows.summary import compare_link

    compare = compare_link(trained)
    if compare:
        console.print(f"compare runs: {compare}")
    for hint in hints:
        console.print(hint)


def _reason(decision: dict) -> str:
    """`` (why)``: the computed reason of a champion decision, when there is one."""
    reason = decision.get("reason")
    return f" ({reason})" if reason else ""


def deploy(
    prefect_file: Annotated[
        Path | None,
        typer.Option(
            "--prefect-file", help="The deployments file (default: the bundled deployments/prefect.yaml)."
        ),
    ] = None,
    work_pool: Annotated[
        str | None, typer.Option("--work-pool", help="Process work pool to create/use (default: settings).")
    ] = None,
    cron: Annotated[str | None, typer.Option("--cron", help="Nightly schedule (default: settings).")] = None,
    timezone: Annotated[
        str | None, typer.Option("--timezone", help="Time zone of the schedule, e.g. Europe/Paris.")
    ] = None,
) -> None:
    """Register deployments/prefect.yaml on the Prefect server at PREFECT_API_URL.

    Creates the process work pool if needed; deploys pipeline/nightly-retrain (cron), collect/on-demand
    and healthcheck/check. Then start a worker: prefect worker start --pool perfspec
    """
    from perfspec.bundled import prefect_file as bundled_prefect_file
    from perfspec.errors import EnvironmentProblem
    from perfspec.settings import get_settings

    if not os.environ.get("PREFECT_API_URL"):
        raise EnvironmentProblem(
            "PREFECT_API_URL is not set: deployments need a Prefect server",
            hint="start one (`prefect server start`) and export PREFECT_API_URL=http://127.0.0.1:4200/api",
        )
    settings = get_settings().with_section(
        "prefect", work_pool=work_pool, nightly_cron=cron, timezone=timezone
    )
    prefect_file = prefect_file or bundled_prefect_file()
    env = deployment_env(settings)
    prefect = str(Path(sys.executable).with_name("prefect"))
    pool = settings.prefect.work_pool
    inspect = subprocess.run([prefect, "work-pool", "inspect", pool], env=env, capture_output=True, text=True)
    if inspect.returncode != 0:
        _run([prefect, "work-pool", "create", pool, "--type", "process"], env)
    _run([prefect, "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)], env)
    typer.echo(f"deployed from {prefect_file}; run a worker with: prefect worker start --pool {pool}")


def deployment_env(settings: Settings) -> dict[str, str]:
    """The environment with prefect.yaml's ``{{ $VAR }}`` placeholders set from settings."""
    from deployments.serve import placeholder_values

    return {**os.environ, **placeholder_values(settings)}


def _run(cmd: list[str], env: dict[str, str]) -> None:
    from perfspec.bundled import project_dir
    from perfspec.errors import EnvironmentProblem

    done = subprocess.run(cmd, env=env, cwd=project_dir(), capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise EnvironmentProblem(f"`{' '.join(cmd[1:])}` failed: {' | '.join(tail)}")


def serve() -> None:
    """Serve the deployments from this process (one machine, no work pool or worker).

    The nightly pipeline schedule, collect on demand and the healthcheck run here when due or triggered.
    Needs PREFECT_API_URL (a running `prefect server start`).
    """
    from perfspec.errors import EnvironmentProblem

    if not os.environ.get("PREFECT_API_URL"):
        raise EnvironmentProblem(
            "PREFECT_API_URL is not set: `serve` needs a Prefect server to hold the schedule",
            hint="start one (`prefect server start`) and export PREFECT_API_URL=http://127.0.0.1:4200/api",
        )
    from deployments.serve import main

    main()


def register(app: typer.Typer) -> None:
    """Add this layer's subcommands to the ``perfspec`` app."""
    app.command("pipeline")(pipeline)
    app.command("deploy")(deploy)
    app.command("serve")(serve)
