"""MLflow: one run per experiment (a sweep: a parent run and one child per configuration).

Why these names and metrics: a person compares runs in the MLflow UI. Runs are named for what they are
(``mixture-gru-128x1-e64-d0.5 · 10,821 actions``) and carry a description (``mlflow.note.content``).
Headline metrics sort together under short names (``top5``, ``top5_ngram``, ``cv_top5_mean``,
``cv_top5_gain``, ``leakage_test``); every model's hold-out scores are ``test_<model>_top<k>``, its CV
mean/std ``cv_<model>_top5_mean``/``_std`` and its coverage curve ``coverage_<model>`` (step = k). The
neural model's per-epoch curves are ``epoch_loss``... (step = epoch); the final ``loss``/``val_*`` are
those of the kept epoch, not the last. The model is an MLflow pyfunc over ``predictor.npz`` (any family,
no TensorFlow needed to serve it).

Why idempotent: ``log_run`` records its run in ``<run_dir>/mlflow.json`` and returns that run again
while it exists (FINISHED) and the results it logged are unchanged; a failed attempt deletes its run.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perfspec.errors import EnvironmentProblem
from perfspec.fileio import sha256_files, write_json_atomic
from perfspec.learn.bundle import BUNDLE_NAME
from perfspec.learn.dataset import Dataset
from perfspec.learn.promotion import RUN_RECORD, TAG_FINGERPRINT, TAG_MODEL_URI, read_run_record
from perfspec.mlflow_store import use_store
from perfspec.settings import Settings

MODEL_ARTIFACT = "model"
TAG_CANDIDATE = "champion_candidate"
HEADLINE_K = (1, 5, 10)
LEARNING_SECTIONS = ("actions", "dataset", "train", "selection")
DISTRIBUTION_PLOT = "distribution.png"  # written by `perfspec actions` beside actions.txt/.parquet
REGISTERED_MODEL_DESCRIPTION = (
    "PerfSPEC next-action predictor: given the last W Kubernetes API actions (verb_resource), the "
    "most likely next ones, so that their policy verification is computed before they arrive. Each "
    "version is the CV-chosen candidate of one experiment (any family: n-gram, LSTM, GRU, Transformer, "
    "mixture); @champion moves only when a challenger beats it beyond noise on paired test blocks."
)


def configure(settings: Settings) -> str:
    """Point MLflow at the configured store and make sure the experiment exists; returns its id."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    use_store(uri)
    client = MlflowClient(uri)
    name = settings.mlflow.experiment
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            location = settings.mlflow_artifact_location if uri.startswith(("sqlite:", "file:")) else None
            try:
                experiment_id = client.create_experiment(
                    name,
                    artifact_location=location,
                    tags={
                        "mlflow.note.content": "PerfSPEC learning phase: next-action models, one run "
                        "per experiment (sweeps: a parent run with one child per configuration)."
                    },
                )
            except MlflowException:  # created concurrently by another process
                created = client.get_experiment_by_name(name)
                if created is None:  # it was not: the creation itself failed
                    raise
                experiment_id = created.experiment_id
        else:
            experiment_id = experiment.experiment_id
    except MlflowException as error:
        raise EnvironmentProblem(f"MLflow store {uri} is not usable: {error.message}") from error
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def experiment_link(settings: Settings, experiment_id: str, ui_url: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI page with the experiment's runs table (not MLflow 3's GenAI overview)."""
    return experiment_url(settings.mlflow_tracking_uri, experiment_id, ui_url)


def experiment_url(tracking_uri: str, experiment_id: str, ui_url: str = "http://127.0.0.1:5000") -> str:
    """``experiment_link`` for a tracking URI: a server's own address, else the ``mlflow ui`` default."""
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else ui_url
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


class PredictorModel:
    """An MLflow pyfunc over ``predictor.npz``: rows of W action names -> the top-5 next actions.

    An actor-stream model's rows also carry an ``actor`` column (whose window it is)."""

    def load_context(self, context: Any) -> None:
        from perfspec.learn.predict import Predictor

        self.predictor = Predictor.from_bundle(Path(context.artifacts["predictor"]))

    def predict(
        self,
        context: Any,  # noqa: ARG002 - unused, but MLflow passes it only to a `context` parameter
        model_input,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """``model_input``: a DataFrame (or rows) of W action names; left unannotated on purpose, so
        MLflow takes the signature from the input example rather than from a type hint."""
        import pandas as pd

        k = int((params or {}).get("k", 5))
        actors: list[Any] = [None] * len(model_input)
        if hasattr(model_input, "columns") and "actor" in model_input.columns:
            actors = model_input["actor"].tolist()
            model_input = model_input.drop(columns=["actor"])
        rows = model_input.values.tolist() if hasattr(model_input, "values") else list(model_input)
        out = []
        for row, actor in zip(rows, actors, strict=True):
            prediction = self.predictor.predict([str(a) for a in row if a], k, actor)
            record: dict[str, Any] = {}
            for rank, (action, probability) in enumerate(prediction.actions, start=1):
                record[f"action_{rank}"], record[f"probability_{rank}"] = action, probability
            out.append(record)
        return pd.DataFrame(out)


_PYFUNC: list[type] = []


def _pyfunc_class() -> type:
    """``PredictorModel`` as an ``mlflow.pyfunc.PythonModel`` (made once; MLflow's type-hint inference,
    which runs when the class is made, warns about an untyped ``predict``: expected here)."""
    if not _PYFUNC:
        import mlflow.pyfunc

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            _PYFUNC.append(
                type(
                    "PerfspecPredictor", (PredictorModel, mlflow.pyfunc.PythonModel), {"__module__": __name__}
                )
            )
    return _PYFUNC[0]


@contextlib.contextmanager
def _quiet_mlflow_loggers() -> Any:
    """Silence two MLflow warnings that say nothing to our users: the python_model is pickled (ours is a
    class of this package, unpickled only by perfspec itself) and pip's version is not resolved (the
    requirements are given explicitly)."""
    import logging

    loggers = [logging.getLogger(name) for name in ("mlflow.pyfunc", "mlflow.utils.environment")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def results_digest(run_dir: Path) -> str:
    """Identifies the results a run dir holds (a re-run that changes anything changes it)."""
    return sha256_files([Path(run_dir) / BUNDLE_NAME, Path(run_dir) / "metrics.json"])


def logged_run(settings: Settings, run_dir: Path) -> str | None:
    """The run id recorded for this run dir, if it is in this store, FINISHED, and logged these results."""
    import mlflow
    from mlflow.exceptions import MlflowException

    record = read_run_record(run_dir)
    run_id = record.get("run_id")
    if not run_id or record.get("tracking_uri") != settings.mlflow_tracking_uri:
        return None
    try:
        if record.get("results") != results_digest(run_dir):
            return None
        run = mlflow.MlflowClient().get_run(run_id)
    except (MlflowException, OSError):
        return None
    if run.info.status != "FINISHED" or run.info.lifecycle_stage != "active":
        return None
    return str(run_id)


def run_title(metrics: dict[str, Any], label: str | None = None) -> str:
    """``<candidate> · per actor · <config> · w10 · 10,821 actions`` (or ``label · ...``): what a person
    reads in the runs table, whose name column shows ~25 characters: what tells runs apart comes first."""
    actions = metrics["dataset"]["actions"]
    candidate = metrics["champion_candidate"]
    shown = metrics["models"].get(candidate, {}).get("label")
    streams = " · per actor" if metrics.get("streams") == "actor" else ""
    if label:
        return f"{label}{streams} · w{metrics['split']['window']} · {actions:,} actions"
    config = f" · {shown}" if shown and shown != candidate else ""
    return f"{candidate}{streams}{config} · w{metrics['split']['window']} · {actions:,} actions"


def changed_settings(settings: Settings, sections: Sequence[str] = LEARNING_SECTIONS) -> dict[str, Any]:
    """``section.field -> value`` for every setting of ``sections`` that differs from its default (an
    environment override such as ``PERFSPEC_TRAIN__LSTM_UNITS=64``, or a CLI flag): what makes this run
    different from one with nothing configured."""
    out: dict[str, Any] = {}
    for section in sections:
        current = getattr(settings, section)
        default = type(current)().model_dump(mode="json")
        for key, value in current.model_dump(mode="json").items():
            if value != default.get(key):
                out[f"{section}.{key}"] = value
    return out


def run_description(metrics: dict[str, Any], settings: Settings | None = None) -> str:
    """Markdown for the run page: data, leakage, the settings that differ from the defaults, the
    comparison and its verdict."""
    data, leak, verdict = metrics["dataset"], metrics["leakage"], metrics["verdict"]
    target = metrics["target_metric"]
    lines = [
        f"**Data**: {data['actions']:,} actions ({data['original_actions']:,} read, "
        f"{data['repeats_removed']:,} removed as verbatim repeats), vocabulary {data['vocab_size']}, "
        f"source `{data['source']}`.",
        f"**Leakage** (windows found verbatim in training): val {leak['val']:.3f}, test {leak['test']:.3f}"
        + (" — **scores measure memorisation**" if leak.get("warning") else "")
        + ".",
        f"**Candidate**: `{metrics['champion_candidate']}` (best CV mean {target}, "
        f"{metrics['cv_folds']} blocked folds).",
    ]
    if settings is not None:
        changed = changed_settings(settings)
        shown = ", ".join(f"`{k}={v}`" for k, v in changed.items()) if changed else "none (all defaults)"
        lines.insert(2, f"**Settings changed from the defaults**: {shown}.")
    kept = _kept_epoch_line(metrics)
    if kept:
        lines.append(f"**Training**: {kept}.")
    paired = verdict.get("cv_paired_difference")
    if paired and paired.get("se") is not None:
        beyond = "beyond" if verdict["beats_reference_beyond_noise"] else "not beyond"
        lines.append(
            f"**vs n-gram** (paired CV {target}): {paired['mean']:+.4f} ± {paired['se']:.4f} (SE), "
            f"{beyond} noise."
        )
    table = ["| model | hold-out top-1 | top-5 | top-10 | CV top-5 |", "|---|---|---|---|---|"]
    for name, scores in sorted(metrics["test"].items(), key=lambda kv: -kv[1]["top5"]):
        cv = metrics["cv"].get(name, {}).get("top5")
        cv_text = f"{cv['mean']:.4f} ± {cv['std']:.4f}" if cv else "—"
        table.append(
            f"| {name} | {scores['top1']:.4f} | {scores['top5']:.4f} | {scores['top10']:.4f} | {cv_text} |"
        )
    return "\n\n".join(lines) + "\n\n" + "\n".join(table)


def epoch_summary(name: str, info: dict[str, Any], limit: int | None = None) -> str | None:
    """``gru: stopped early at epoch 13 of 30, kept epoch 5`` (or ``ran 30 of 30 epochs, kept epoch 28``)
    from a neural model's info (``best_epoch``, ``epochs``, ``stopped_early``; ``metrics.json`` models):
    which weights its scores come from. None for a model that trained no epochs."""
    best, ran = info.get("best_epoch"), info.get("epochs")
    if not best or not ran:
        return None
    limit = limit or (info.get("config", {}).get("params") or {}).get("epochs") or ran
    if info.get("stopped_early"):
        return f"{name}: stopped early at epoch {ran} of {limit}, kept epoch {best}"
    return f"{name}: ran {ran} of {limit} epochs, kept epoch {best}"


def kept_epochs(metrics: dict[str, Any]) -> list[str]:
    """``epoch_summary`` of every neural model of ``metrics["models"]``."""
    found = (epoch_summary(name, info) for name, info in metrics.get("models", {}).items())
    return [line for line in found if line]


def _kept_epoch_line(metrics: dict[str, Any]) -> str:
    return "; ".join(kept_epochs(metrics))


def headline_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The few numbers a person picks once in the runs table (short names that sort together)."""
    candidate, reference = metrics["champion_candidate"], metrics["verdict"]["reference"]
    out: dict[str, float] = {}
    for k in HEADLINE_K:
        out[f"top{k}"] = metrics["test"][candidate][f"top{k}"]
        if reference in metrics["test"]:
            out[f"top{k}_ngram"] = metrics["test"][reference][f"top{k}"]
    out["leakage_test"] = metrics["leakage"]["test"]
    out["leakage_val"] = metrics["leakage"]["val"]
    cv = metrics["cv"].get(candidate, {}).get("top5")
    if cv:
        out["cv_top5_mean"], out["cv_top5_std"] = cv["mean"], cv["std"]
    paired = metrics["cv_paired"].get(candidate, {}).get("top5")
    if paired and paired.get("se") is not None:
        out["cv_top5_gain"], out["cv_top5_gain_se"] = paired["mean"], paired["se"]
    if "test_global_reference" in metrics:  # actor streams: the global bigram on the same actions
        for k in HEADLINE_K:
            out[f"top{k}_global_reference"] = metrics["test_global_reference"]["ngram"][f"top{k}"]
        out["unseen_actor_share"] = metrics["unseen_actor_share"]
    out["actions"] = metrics["dataset"]["actions"]
    out["repeats_removed"] = metrics["dataset"]["repeats_removed"]
    return out


def _pending_run(client: Any, settings: Settings, run_dir: Path) -> str | None:
    """The run ``start_run`` opened for this run dir and nothing finished since (RUNNING, or FAILED by a
    crashed training that is now resumed), if it is in this store."""
    from mlflow.exceptions import MlflowException

    record = read_run_record(run_dir)
    run_id = record.get("run_id")
    if not run_id or not record.get("started") or record.get("tracking_uri") != settings.mlflow_tracking_uri:
        return None
    try:
        run = client.get_run(run_id)
    except (MlflowException, OSError):
        return None
    if run.info.status == "FINISHED" or run.info.lifecycle_stage != "active":
        return None
    return str(run_id)


def start_run(
    settings: Settings,
    run_dir: Path,
    title: str,
    *,
    description: str = "",
    extra_tags: dict[str, str] | None = None,
) -> str | None:
    """Open the MLflow run when training starts (status RUNNING), so that its duration and status in the
    runs table mean something; ``log_run`` fills it in and finishes it. Returns its id, or None when this
    run dir's results are already logged (a re-run that changes nothing: ``log_run`` returns that run).

    A run opened earlier for ``run_dir`` and never finished (a crash, a failure) is reopened, not doubled.
    """
    import mlflow

    run_dir = Path(run_dir)
    experiment_id = configure(settings)
    if logged_run(settings, run_dir) is not None:
        return None
    client = mlflow.MlflowClient()
    pending = _pending_run(client, settings, run_dir)
    if pending is not None:
        client.update_run(pending, status="RUNNING")
        return pending
    changed = changed_settings(settings)
    note = description or "Training in progress: the results are logged when it ends."
    if changed:
        note += "\n\n**Settings changed from the defaults**: " + ", ".join(
            f"`{k}={v}`" for k, v in changed.items()
        )
    tags = {"mlflow.note.content": note, **(extra_tags or {})}
    run = client.create_run(experiment_id, run_name=title, tags=tags)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        run_dir / RUN_RECORD,
        {
            "run_id": run.info.run_id,
            "tracking_uri": settings.mlflow_tracking_uri,
            "experiment_id": experiment_id,
            "started": True,
        },
    )
    return str(run.info.run_id)


def opening_title(dataset: Dataset, models: Sequence[str], sweep: bool = False) -> str:
    """The run's name while it trains (``log_run`` renames it after the candidate when it ends)."""
    streams = " · per actor" if dataset.streams == "actor" else ""
    what = f"sweep · {len(models)} configs" if sweep else "training " + ", ".join(models or ["n-gram"])
    return f"{what}{streams} · w{dataset.window} · {len(dataset.ids):,} actions"


@contextlib.contextmanager
def training_run(
    settings: Settings,
    run_dir: Path,
    title: str,
    *,
    enabled: bool = True,
    extra_tags: dict[str, str] | None = None,
) -> Iterator[str | None]:
    """``start_run`` before the block (when ``enabled``); ``fail_run`` if the block raises."""
    run_id = start_run(settings, run_dir, title, extra_tags=extra_tags) if enabled else None
    try:
        yield run_id
    except BaseException:
        if enabled:
            fail_run(settings, run_dir)
        raise


def fail_run(settings: Settings, run_dir: Path) -> None:
    """Mark the run ``start_run`` opened for ``run_dir`` FAILED (training did not finish); a re-run that
    resumes reopens it. Never raises: it is called while another error is on its way to the user."""
    with contextlib.suppress(Exception):
        import mlflow

        use_store(settings.mlflow_tracking_uri)
        client = mlflow.MlflowClient()
        pending = _pending_run(client, settings, Path(run_dir))
        if pending is not None:
            client.set_terminated(pending, "FAILED")


def log_run(
    settings: Settings,
    dataset: Dataset,
    run_dir: Path,
    metrics: dict,
    *,
    parent_run_id: str | None = None,
    title: str | None = None,
    log_model: bool = True,
    extra_tags: dict[str, str] | None = None,
) -> str:
    """Log one finished experiment (``run_dir`` from ``perfspec.learn.experiment``) as an MLflow run:
    into the run ``start_run`` opened when training started, else a new one.

    Child runs of a sweep pass ``parent_run_id`` (never through MLflow's global active run, so a
    sweep's children can be logged from any thread or task).
    """
    import mlflow
    from mlflow.entities import RunTag

    run_dir = Path(run_dir)
    experiment_id = configure(settings)
    existing = logged_run(settings, run_dir)
    if existing is not None:
        return existing
    client = mlflow.MlflowClient()
    name = title or run_title(metrics)
    tags = {"mlflow.note.content": run_description(metrics, settings), **(extra_tags or {})}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    pending = None if parent_run_id else _pending_run(client, settings, run_dir)
    if pending is not None:
        run_id = pending
        client.update_run(run_id, status="RUNNING", name=name)
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    else:
        run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    try:
        _log_contents(client, run_id, dataset, run_dir, metrics, settings, log_model)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        with contextlib.suppress(Exception):
            client.delete_run(run_id)
        raise
    client.set_terminated(run_id)
    write_json_atomic(
        run_dir / RUN_RECORD,
        {
            "run_id": run_id,
            "tracking_uri": settings.mlflow_tracking_uri,
            "experiment_id": experiment_id,
            "results": results_digest(run_dir),
        },
    )
    return run_id


def _log_contents(
    client: Any,
    run_id: str,
    dataset: Dataset,
    run_dir: Path,
    metrics: dict,
    settings: Settings,
    log_model: bool,
) -> None:
    """Params, tags, inputs, metrics, artifacts and the model, into run ``run_id``."""
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    candidate = metrics["champion_candidate"]
    params = {f"dataset.{k}": v for k, v in settings.dataset.model_dump().items()}
    # what the dataset was built with, when it differs from the settings (the pipeline's per-actor run)
    params |= {"dataset.streams": dataset.streams, "dataset.window": dataset.window}
    params |= {f"selection.{k}": v for k, v in settings.selection.model_dump().items()}
    model_info = metrics["models"].get(candidate, {})
    for key, value in (model_info.get("config", {}).get("params") or {}).items():
        params[f"model.{key}"] = value
    params |= {"candidate": candidate, "family": model_info.get("family"), "vocab_size": len(dataset.vocab)}
    params["ngram.order"] = metrics["models"].get(metrics["verdict"]["reference"], {}).get("order")
    tags = {
        TAG_FINGERPRINT: dataset.fingerprint,
        TAG_CANDIDATE: candidate,
        "family": str(model_info.get("family")),
        "dataset_source": dataset.source,
        "run_dir": str(run_dir.resolve()),
        "repeats_removed": str(metrics["dataset"]["repeats_removed"]),
        "leakage_warning": str(metrics["leakage"]["warning"]).lower(),
        "streams": metrics.get("streams", "global"),
    }
    timestamp = int(mlflow.MlflowClient().get_run(run_id).info.start_time or 0)
    batch = [Metric(k, float(v), timestamp, 0) for k, v in headline_metrics(metrics).items()]
    for section in ("test", "test_changes"):
        for model, scores in metrics.get(section, {}).items():
            batch += [Metric(f"{section}_{model}_{k}", float(v), timestamp, 0) for k, v in scores.items()]
    for model, summary in metrics.get("cv", {}).items():
        for stat in ("mean", "std"):
            value = summary["top5"][stat]
            if value is not None:
                batch.append(Metric(f"cv_{model}_top5_{stat}", float(value), timestamp, 0))
    for model, curve in metrics.get("coverage", {}).items():
        batch += [Metric(f"coverage_{model}", float(v), timestamp, k) for k, v in enumerate(curve, start=1)]
    batch += _epoch_metrics(run_dir, metrics, timestamp)
    for start in range(0, len(batch), 900):
        client.log_batch(run_id, metrics=batch[start : start + 900])
    client.log_batch(
        run_id,
        params=[Param(k, str(v)[:6000]) for k, v in params.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    _log_inputs(run_id, dataset)

    for name in (
        "metrics.json",
        "per_action.csv",
        "confused_pairs.csv",
        "coverage.csv",
        "cv.csv",
        "vocab.json",
    ):
        if (run_dir / name).is_file():
            client.log_artifact(run_id, str(run_dir / name))
    if (run_dir / "plots").is_dir():
        client.log_artifacts(run_id, str(run_dir / "plots"), artifact_path="plots")
    distribution = _distribution_plot(dataset)
    if distribution is not None:  # the data the models learnt from, beside their plots
        client.log_artifact(run_id, str(distribution), artifact_path="plots")
    with tempfile.TemporaryDirectory(prefix="perfspec-dataset-") as tmp:
        client.log_artifacts(run_id, str(dataset.save(Path(tmp))), artifact_path="dataset")
    if (run_dir / "model.keras").is_file():
        client.log_artifact(run_id, str(run_dir / "model.keras"), artifact_path="keras")
    if log_model and (run_dir / BUNDLE_NAME).is_file():
        uri = _log_model(run_id, dataset, run_dir)
        client.set_tag(run_id, TAG_MODEL_URI, uri)


def _distribution_plot(dataset: Dataset) -> Path | None:
    """``distribution.png`` of the actions the dataset was built from (``perfspec actions`` writes it
    beside ``actions.txt``/``actions.parquet``), if it is there."""
    if not dataset.source:
        return None
    found = Path(dataset.source).parent / DISTRIBUTION_PLOT
    return found if found.is_file() else None


def _epoch_metrics(run_dir: Path, metrics: dict, timestamp: int) -> list[Any]:
    """The kept neural model's curves (step = epoch) and its kept epoch's values as the final ones."""
    from mlflow.entities import Metric

    from perfspec.learn.evaluation import kept_history

    found = kept_history(run_dir, metrics["models"], metrics["champion_candidate"])
    if found is None:
        return []
    history = found[1]
    best = int(history.get("best_epoch") or 0)
    out = []
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        values = history.get(key, [])
        out += [Metric(f"epoch_{key}", float(v), timestamp, e) for e, v in enumerate(values, start=1)]
        if 0 < best <= len(values):
            out.append(Metric(key, float(values[best - 1]), timestamp, best))
    out.append(Metric("best_epoch", float(best), timestamp, 0))
    return out


def _log_inputs(run_id: str, dataset: Dataset) -> None:
    """The train and test windows as MLflow datasets (digest, source, size) for the Datasets column."""
    import mlflow
    from mlflow.data.numpy_dataset import from_numpy  # `mlflow.data.from_numpy`, set there at import time
    from mlflow.entities import Dataset as DatasetEntity
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for context, split in (("training", "train"), ("testing", "test")):
        x, y = dataset.windows(split)
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways": a local file
            warnings.simplefilter("ignore", UserWarning)
            data = from_numpy(
                x,
                targets=y,
                source=dataset.source or "actions",
                name=f"actions-{dataset.fingerprint[:12]}-{split}",
                digest=f"{dataset.fingerprint[:24]}-{split}",
            )
        config = data.to_dict()  # the public form of what MLflow's own Dataset -> entity conversion reads
        entity = DatasetEntity(
            name=config["name"],
            digest=config["digest"],
            source_type=config["source_type"],
            source=config["source"],
            schema=config.get("schema"),
            profile=config.get("profile"),
        )
        inputs.append(DatasetInput(entity, [InputTag("mlflow.data.context", context)]))
    mlflow.MlflowClient().log_inputs(run_id, datasets=inputs)


def _log_model(run_id: str, dataset: Dataset, run_dir: Path) -> str:
    """The pyfunc over the candidate's ``predictor.npz``; returns its model URI."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from perfspec.learn.predict import Predictor

    predictor = Predictor.from_bundle(run_dir / BUNDLE_NAME)
    x, _ = dataset.windows("test")
    rows = [dataset.vocab.decode(row) for row in x[:2]]
    example = pd.DataFrame(rows, columns=[f"a{i}" for i in range(dataset.window)])
    if dataset.layout is not None:  # whose window each row is
        codes = dataset.layout.codes[dataset.positions("test")[:2]]
        example["actor"] = [str(dataset.layout.names[c]) for c in codes]
    model = _pyfunc_class()()
    model.predictor = predictor
    signature = infer_signature(example, model.predict(None, example))
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), _quiet_mlflow_loggers():
        warnings.simplefilter("ignore")
        info = mlflow.models.Model.log(
            artifact_path=None,
            name=MODEL_ARTIFACT,
            flavor=mlflow.pyfunc,
            python_model=_pyfunc_class()(),
            artifacts={"predictor": str(run_dir / BUNDLE_NAME)},
            signature=signature,
            input_example=example,
            pip_requirements=[f"numpy=={np.__version__}", f"pandas=={pd.__version__}"],
            metadata={
                "vocab": dataset.vocab.to_json(),
                "window": dataset.window,
                TAG_FINGERPRINT: dataset.fingerprint,
                "family": predictor.family,
                "streams": dataset.streams,
            },
            run_id=run_id,
        )
    return info.model_uri


def describe_registered_model(client: Any, name: str) -> None:
    """A description on the registered model (once), so the Models page says what it is."""
    with contextlib.suppress(Exception):
        if not client.get_registered_model(name).description:
            client.update_registered_model(name, description=REGISTERED_MODEL_DESCRIPTION)
