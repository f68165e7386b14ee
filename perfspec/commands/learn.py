"""CLI commands of the learning layer: ``perfspec train`` and ``perfspec predict`` (see perfspec/cli.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_MODEL = "models:/perfspec@champion"


def register(app: typer.Typer) -> None:
    """Add this layer's subcommands to the ``perfspec`` app."""
    app.command("train")(train_command)
    app.command("predict")(predict_command)


def train_command(
    actions: Annotated[
        Path, typer.Argument(help="Actions file: one verb_resource token a line (perfspec actions output).")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Run directory (model, metrics, plots). Re-running on it resumes. "
            "Default: <data_dir>/runs/<dataset-fingerprint12>-<model-settings-hash8> "
            "(the pipeline's name too, so each resumes the other's runs).",
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Maximum epochs (early stopping may end sooner).")
    ] = None,
    window: Annotated[int | None, typer.Option(help="Past actions the model sees (W).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
    lstm_units: Annotated[int | None, typer.Option(help="Units per LSTM layer.")] = None,
    lstm_layers: Annotated[int | None, typer.Option(help="Stacked LSTM layers.")] = None,
    embedding_dim: Annotated[int | None, typer.Option(help="Action embedding size.")] = None,
    learning_rate: Annotated[
        float | None, typer.Option(help="Adam learning rate (start of the schedule).")
    ] = None,
    dropout: Annotated[float | None, typer.Option(help="Dropout after each LSTM layer.")] = None,
    patience: Annotated[
        int | None, typer.Option(help="Early stopping: epochs without val-loss gain.")
    ] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Checkpoint every N epochs.")] = None,
    min_count: Annotated[int | None, typer.Option(help="Rarer training actions map to <unk>.")] = None,
    split: Annotated[
        str | None, typer.Option(help="chronological (80/10/10) or kfold (contiguous blocks).")
    ] = None,
    folds: Annotated[int | None, typer.Option(help="Number of blocks with --split kfold.")] = None,
    fold: Annotated[int | None, typer.Option(help="Which block is the test part with --split kfold.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (weights, shuffling).")] = None,
    no_mlflow: Annotated[
        bool, typer.Option("--no-mlflow", help="Skip MLflow logging and the model registry.")
    ] = False,
) -> None:
    """Train the next-action LSTM on ACTIONS, compare it with baselines, log it to MLflow.

    Writes model.keras, predictor.npz (TensorFlow-free inference bundle), vocab.json, history.json,
    metrics.json, per_action.csv, confused_pairs.csv and plots/ into --out, registers the model as
    `perfspec` and moves @champion if it beats the current champion.
    """
    from rich.console import Console

    from perfspec.settings import get_settings

    settings = get_settings()
    if split not in (None, "chronological", "kfold"):
        from perfspec.errors import InputError

        raise InputError(f"unknown --split {split!r}", hint="use chronological or kfold")
    settings = settings.with_section(
        "dataset", window=window, min_count=min_count, split=split, folds=folds, fold=fold
    )
    settings = settings.with_section(
        "train",
        epochs=epochs,
        batch_size=batch_size,
        lstm_units=lstm_units,
        lstm_layers=lstm_layers,
        embedding_dim=embedding_dim,
        learning_rate=learning_rate,
        dropout=dropout,
        patience=patience,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )
    console = Console(stderr=True)
    outcome = _run_with_progress(actions, out, settings, not no_mlflow, console)
    _print_outcome(outcome, Console())


def _run_with_progress(actions: Path, out: Path | None, settings, use_mlflow: bool, console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from perfspec.learn.experiment import train_from_actions

    with Progress(
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("train", total=settings.train.epochs, status="")

        def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
            status = f"val_loss {logs['val_loss']:.4f}  val_acc {logs['val_accuracy']:.4f}"
            progress.update(task, completed=epoch, status=status)
            if not console.is_terminal:
                console.print(f"epoch {epoch}: loss {logs['loss']:.4f} acc {logs['accuracy']:.4f} {status}")

        return train_from_actions(actions, out, settings, use_mlflow=use_mlflow, on_epoch_end=on_epoch_end)


def _print_outcome(outcome, console) -> None:
    from rich.table import Table

    metrics = outcome.metrics
    table = Table(
        title=f"Test split ({metrics['counts']['test']} windows; next != current: "
        f"{metrics['counts']['test_changes']})"
    )
    table.add_column("model")
    for k in (1, 3, 5, 10):
        table.add_column(f"top-{k}", justify="right")
    table.add_column("top-1 (changes)", justify="right")
    names = {
        "lstm": "LSTM",
        "ngram": f"n-gram (order {metrics['ngram']['order']})",
        "most_frequent": "most frequent",
    }
    for model, label in names.items():
        row = metrics["test"][model]
        table.add_row(
            label,
            *(f"{row[f'top{k}']:.4f}" for k in (1, 3, 5, 10)),
            f"{metrics['test_changes'][model]['top1']:.4f}",
        )
    console.print(table)
    result = outcome.train_result
    resumed = f", resumed from epoch {result.resumed_from}" if result.resumed_from else ""
    console.print(f"epochs: {result.epochs_done} (kept epoch {result.best_epoch}{resumed})")
    verdict = "yes" if metrics["lstm_at_least_best_baseline"] else "NO"
    console.print(f"LSTM top-1 and top-5 >= best baseline ({metrics['best_baseline']}): {verdict}")
    console.print(f"run dir:  {outcome.run_dir}")
    console.print(f"metrics:  {outcome.metrics_path}")
    console.print(f"dataset:  {outcome.dataset_dir}")
    if outcome.run_id:
        decision = outcome.decision
        console.print(f"mlflow run: {outcome.run_id}")
        line = f"registered: {decision.registered_model} {decision.describe()} ({decision.reason})"
        console.print(line, soft_wrap=True)


def predict_command(
    actions: Annotated[
        list[str], typer.Argument(help="The most recent actions, oldest first (verb_resource).")
    ],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Run dir, model.keras or predictor.npz file, or MLflow URI such as "
            "models:/perfspec@champion (with a predictor.npz there, TensorFlow is never loaded).",
        ),
    ] = DEFAULT_MODEL,
    top: Annotated[int, typer.Option("--top", min=1, help="How many next actions to print.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print the most likely next actions after ACTIONS, with probabilities.

    Unknown actions are mapped to <unk> and reported; if none is known the command fails (exit 2).
    """
    # light imports only: with a predictor.npz nothing on this path imports TensorFlow or Keras
    from perfspec.learn.predict import Predictor, describe

    predictor = Predictor.load(model)  # models:/ resolves in the project's store (settings)
    prediction = predictor.predict(actions, top)
    if as_json:
        typer.echo(json.dumps(describe(prediction)))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"next action after {actions[-1]}")
    table.add_column("#", justify="right")
    table.add_column("action")
    table.add_column("probability", justify="right")
    for rank, (action, probability) in enumerate(prediction.actions, start=1):
        table.add_row(str(rank), action, f"{probability:.4f}")
    Console().print(table)
    if prediction.unknown:
        print(f"warning: unknown actions mapped to <unk>: {', '.join(prediction.unknown)}", file=sys.stderr)
    if prediction.padded:
        print(
            f"note: {prediction.padded} of {predictor.window} window slots padded with <unk>", file=sys.stderr
        )
