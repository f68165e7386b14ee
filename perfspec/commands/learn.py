"""CLI commands of the learning layer: ``perfspec train`` and ``perfspec predict`` (see perfspec/cli.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from perfspec.commands import DataDir

DEFAULT_MODEL = "models:/perfspec@champion"


def register(app: typer.Typer) -> None:
    """Add this layer's subcommands to the ``perfspec`` app."""
    app.command("train")(train_command)
    app.command("predict")(predict_command)
    app.command("sweep")(sweep_command)


def _settings(data_dir: Path | None):
    """The one settings object, with ``--data-dir`` over PERFSPEC_PATHS__DATA_DIR."""
    from perfspec.settings import get_settings

    return get_settings().with_section("paths", data_dir=data_dir)


STREAMS_HELP = (
    "global: one window over all actions (default); actor: one stream per requester, a window is the "
    "actor's own last W actions (needs ACTIONS = actions.parquet, which has usernames)."
)


def train_command(
    actions: Annotated[
        Path,
        typer.Argument(
            help="Actions: actions.txt (one verb_resource token a line) or actions.parquet (with who made "
            "each action; needed by --streams actor); both written by `perfspec actions`."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Run directory (models, metrics, plots). Re-running on it resumes. "
            "Default: <data_dir>/runs/<dataset-fingerprint12>-<settings-hash8>.",
        ),
    ] = None,
    family: Annotated[
        list[str] | None,
        typer.Option(
            "--family",
            help="Neural families fitted beside the n-gram: lstm, gru, transformer (repeat the flag or "
            "comma-separate; default lstm,gru).",
        ),
    ] = None,
    cv: Annotated[
        int | None, typer.Option("--cv", help="Blocked CV folds for model selection (0 = no CV; default 5).")
    ] = None,
    keep_repeats: Annotated[
        bool,
        typer.Option(
            "--keep-repeats", help="Keep verbatim repeats of long earlier spans (they leak into test)."
        ),
    ] = False,
    streams: Annotated[str | None, typer.Option("--streams", help=STREAMS_HELP)] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Maximum epochs (early stopping may end sooner).")
    ] = None,
    window: Annotated[int | None, typer.Option(help="Past actions the model sees (W).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
    lstm_units: Annotated[int | None, typer.Option(help="Units per recurrent layer (LSTM, GRU).")] = None,
    lstm_layers: Annotated[int | None, typer.Option(help="Stacked recurrent layers (LSTM, GRU).")] = None,
    embedding_dim: Annotated[int | None, typer.Option(help="Action embedding size.")] = None,
    heads: Annotated[int | None, typer.Option(help="Transformer attention heads.")] = None,
    blocks: Annotated[int | None, typer.Option(help="Transformer blocks.")] = None,
    learning_rate: Annotated[
        float | None, typer.Option(help="Adam learning rate (start of the schedule).")
    ] = None,
    dropout: Annotated[float | None, typer.Option(help="Dropout rate.")] = None,
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
    data_dir: DataDir = None,
) -> None:
    """Score the n-gram, most-frequent, neural families and a mixture on ACTIONS; log the best.

    Verbatim repeats are removed first; every model is compared on blocked CV folds (paired with the
    n-gram) and on the chronological hold-out. The candidate (best CV mean top-5) is written as
    predictor.npz in --out, registered as `perfspec`, and moved to @champion only if it beats the
    champion beyond noise.
    """
    settings = _settings(data_dir)
    if split not in (None, "chronological", "kfold"):
        from perfspec.errors import InputError

        raise InputError(f"unknown --split {split!r}", hint="use chronological or kfold")
    settings = settings.with_section(
        "dataset",
        streams=_streams(streams),
        window=window,
        min_count=min_count,
        split=split,
        folds=folds,
        fold=fold,
        keep_repeats=True if keep_repeats else None,
    )
    if split == "kfold" and cv is None:
        cv = 0
    families = [f.strip() for item in family or [] for f in item.split(",") if f.strip()] or None
    settings = settings.with_section("selection", cv_folds=cv, train_families=families)
    settings = settings.with_section(
        "train",
        epochs=epochs,
        batch_size=batch_size,
        lstm_units=lstm_units,
        lstm_layers=lstm_layers,
        embedding_dim=embedding_dim,
        heads=heads,
        blocks=blocks,
        learning_rate=learning_rate,
        dropout=dropout,
        patience=patience,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )
    from perfspec.learn.experiment import train_from_actions
    from perfspec.runtime import import_tensorflow_quietly

    import_tensorflow_quietly()  # TensorFlow's start-up lines say nothing to our users
    console = _stderr_console()
    outcome = train_from_actions(actions, out, settings, use_mlflow=not no_mlflow, say=console.print)
    print_outcome(outcome.metrics, outcome.run_dir, outcome.run_id, outcome.decision, settings)


def _streams(value: str | None) -> str | None:
    if value not in (None, "global", "actor"):
        from perfspec.errors import InputError

        raise InputError(f"unknown --streams {value!r}", hint="use global or actor")
    return value


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def print_outcome(metrics, run_dir: Path, run_id, decision, settings) -> None:
    """The comparison table and every verdict, each of them true (they are computed, not assumed)."""
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=160)  # logs and pipes: keep names whole
    data, leak = metrics["dataset"], metrics["leakage"]
    if data["repeats_removed"]:
        console.print(
            f"[yellow]repeats:[/] {data['repeats_removed']:,} of {data['original_actions']:,} actions repeat "
            f"earlier spans verbatim and were removed; trained on {data['actions']:,} actions"
        )
    console.print(
        f"leakage (windows seen verbatim in training): val {leak['val']:.3f}, test {leak['test']:.3f}"
    )
    if leak["warning"]:
        console.print(
            "[bold red]WARNING: most held-out windows occur verbatim in training: these scores measure "
            "memorisation, not prediction[/]"
        )
    target = metrics["target_metric"]
    table = Table(
        title=f"Chronological hold-out ({metrics['counts']['test']} windows) and blocked CV "
        f"({metrics['cv_folds']} folds)"
    )
    from perfspec.learn.scoring import KS

    table.add_column("model")
    for k in KS:
        table.add_column(f"top-{k}", justify="right")
    table.add_column(f"CV {target}", justify="right")
    table.add_column(f"vs n-gram (paired CV {target})", justify="right")
    order = sorted(
        metrics["test"], key=lambda m: -(metrics["cv"].get(m, {}).get(target, {}).get("mean") or 0)
    )
    reference = metrics["verdict"]["reference"]
    for model in order:
        row = metrics["test"][model]
        cv = metrics["cv"].get(model, {}).get(target)
        paired = metrics["cv_paired"].get(model, {}).get(target)
        label = f"{model} *" if model == metrics["champion_candidate"] else model
        if model == reference:
            label += f" (order {metrics['models'][reference]['order']})"
        table.add_row(
            label,
            *(f"{row[f'top{k}']:.4f}" for k in KS),
            f"{cv['mean']:.4f} ± {cv['std']:.4f}" if cv else "-",
            f"{paired['mean']:+.4f} ± {paired['se']:.4f}" if paired and paired.get("se") is not None else "-",
        )
    console.print(table)
    verdict = metrics["verdict"]
    candidate = metrics["champion_candidate"]
    console.print(f"candidate (* best CV mean {target}): {candidate}")
    if metrics["cv"] and candidate != reference:
        beyond = verdict["beats_reference_beyond_noise"]
        console.print(
            f"{candidate} beats the n-gram beyond noise (paired CV gain > "
            f"{settings.selection.promotion_standard_errors:g} SE): {'yes' if beyond else 'NO'}"
        )
    elif candidate == reference:
        console.print("no other model beats the n-gram on CV: the n-gram is the candidate")
    interval = metrics.get("test_ci", {}).get(candidate, {}).get(target)
    if interval:
        console.print(
            f"{candidate} hold-out {target}: 95% block-bootstrap interval {interval[0]:.3f}-{interval[1]:.3f}"
        )
    if metrics.get("streams") == "actor":
        ref = metrics["test_global_reference"]["ngram"]
        console.print(
            f"global bigram on the same next actions: top-1 {ref['top1']:.4f}, top-5 {ref['top5']:.4f}; "
            f"{metrics['unseen_actor_share']:.1%} of test actions come from actors unseen in training "
            f"({metrics['unseen_actor_handling']})"
        )
        inputs = metrics["inputs"]
        shown = ", ".join(
            f"{name.replace('actor_window', 'window').replace('+', ' + ')} {inputs[name]['top5']:.4f}"
            for name in inputs
            if isinstance(inputs[name], dict) and "top5" in inputs[name]
        )
        console.print(f"what each input adds (n-gram family, hold-out top-5): {shown}")
    from perfspec.learn.tracking import kept_epochs

    for line in kept_epochs(metrics):
        console.print(f"training: {line}")
    console.print(f"run dir:  {run_dir}")
    console.print(f"metrics:  {Path(run_dir) / 'metrics.json'}")
    if run_id:
        from perfspec.learn.tracking import experiment_link

        console.print(f"mlflow run: {run_id}")
        console.print(
            f"registered: {decision.registered_model} {decision.describe()} ({decision.reason})",
            soft_wrap=True,
        )
        experiment_id = (json.loads((Path(run_dir) / "mlflow.json").read_text()) or {}).get(
            "experiment_id", ""
        )
        console.print(f"compare runs: {experiment_link(settings, experiment_id)}")


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
    actor: Annotated[
        str | None,
        typer.Option(
            "--actor",
            help="Whose window ACTIONS is (a username): required by a model trained with --streams actor, "
            "refused by a global one.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Print the most likely next actions after ACTIONS, with probabilities, and which model answered
    (for models:/NAME@ALIAS: the registered version and its MLflow run).

    Unknown actions are mapped to <unk> and reported; if none is known the command fails (exit 2).
    """
    # light imports only: with a predictor.npz nothing on this path imports TensorFlow or Keras
    from perfspec.learn.predict import MODEL_URI_SCHEMES, Predictor, describe

    settings = _settings(data_dir)
    tracking_uri = settings.mlflow_tracking_uri if model.startswith(MODEL_URI_SCHEMES) else None
    predictor = Predictor.load(model, tracking_uri=tracking_uri)  # models:/ resolves in the project's store
    prediction = predictor.predict(actions, top, actor)
    known = len(predictor.vocab) - 1  # <unk> is never a prediction
    if as_json:
        typer.echo(json.dumps(describe(prediction, predictor)))
        return
    from rich.console import Console
    from rich.table import Table

    name = predictor.info.get("name") or predictor.family
    whose = f" by {prediction.actor}" if prediction.actor else ""
    table = Table(title=f"next action{whose} after {actions[-1]} ({name}, {model})")
    table.add_column("#", justify="right")
    table.add_column("action")
    table.add_column("probability", justify="right")
    for rank, (action, probability) in enumerate(prediction.actions, start=1):
        table.add_row(str(rank), action, f"{probability:.4f}")
    Console().print(table)
    typer.echo(f"model: {answered_by(predictor, model)}")
    if top > known:
        print(
            f"note: --top {top}, but the model knows {known} actions: all of them are listed", file=sys.stderr
        )
    if prediction.unknown:
        print(f"warning: unknown actions mapped to <unk>: {', '.join(prediction.unknown)}", file=sys.stderr)
    if prediction.unseen_actor:
        print(
            f"note: {prediction.actor} made no action in the training part; predicted from its window alone",
            file=sys.stderr,
        )
    if prediction.padded:
        print(
            f"note: {prediction.padded} of {predictor.window} window slots padded with <unk>", file=sys.stderr
        )


def answered_by(predictor, model: str) -> str:
    """``models:/perfspec/3 (run 0123abcd…, mixture)`` or the path it was loaded from."""
    info = predictor.info
    name = info.get("name") or predictor.family
    if info.get("model_version"):
        run = f"run {info['run_id']}, " if info.get("run_id") else ""
        return f"{info['model_version']} ({run}{name}; asked for {model})"
    return f"{predictor.source} ({name})"


def sweep_command(
    actions: Annotated[
        Path, typer.Argument(help="actions.txt, or actions.parquet (needed by --streams actor).")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Run directory (default: <data_dir>/runs/sweep-<...>).")
    ] = None,
    families: Annotated[
        list[str] | None,
        typer.Option(
            "--families",
            help="Families to try (repeat the flag or comma-separate): ngram, lstm, gru, transformer, "
            "mixture. Default: all.",
        ),
    ] = None,
    grid: Annotated[
        Path | None,
        typer.Option(
            "--grid", help="YAML/JSON grid: {family: [{setting: value, ...}, ...]} (default: built in)."
        ),
    ] = None,
    cv: Annotated[int | None, typer.Option("--cv", help="Blocked CV folds (default 5).")] = None,
    streams: Annotated[str | None, typer.Option("--streams", help=STREAMS_HELP)] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs per training.")] = None,
    no_mlflow: Annotated[
        bool, typer.Option("--no-mlflow", help="Skip MLflow logging and the model registry.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Compare several families and settings on the same CV folds and hold-out; log a parent MLflow run
    with one child run per model, register the best and promote it only if it earns @champion."""
    from perfspec.learn.configs import load_grid
    from perfspec.learn.sweep import run_sweep
    from perfspec.runtime import import_tensorflow_quietly

    import_tensorflow_quietly()
    settings = (
        _settings(data_dir)
        .with_section("selection", cv_folds=cv)
        .with_section("train", epochs=epochs)
        .with_section("dataset", streams=_streams(streams))
    )
    chosen = [f.strip() for item in families or [] for f in item.split(",") if f.strip()] or None
    outcome = run_sweep(
        actions,
        out,
        settings,
        chosen,
        load_grid(grid) if grid else None,
        use_mlflow=not no_mlflow,
        say=_stderr_console().print,
    )
    print_outcome(outcome.metrics, outcome.run_dir, outcome.run_id, outcome.decision, settings)
    if outcome.child_run_ids:
        typer.echo(f"child runs: {len(outcome.child_run_ids)} (one per model, under the parent run)")
