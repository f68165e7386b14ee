"""MLflow: one run per training, the model registry, and the ``@champion`` promotion rule.

Why a rule instead of "latest wins": a nightly retrain must not replace a good model with a worse
one. A new version becomes champion only if its test top-1 beats the champion's by
``promotion_margin``. Top-1 on different test data is not comparable, so when the champion was
trained on another dataset (fingerprint differs) it is re-evaluated on the challenger's test windows
(shipped with the run as the ``dataset/`` artifact) through the same ``Predictor`` and the two are
compared there. If that re-evaluation is impossible the champion is kept. Every decision is logged
as the run tag ``champion_decision`` (``promoted``/``kept``) with the reason in ``champion_reason``.

Why idempotent: ``perfspec train`` and the nightly pipeline re-run on unchanged data, and Prefect
retries ``log-run``/``promote-model``. ``log_run`` records its run in ``<run_dir>/mlflow.json`` and
returns that run again while it still exists (FINISHED) and the training it logged is unchanged; a
failed attempt deletes its half-logged run. ``register_and_promote`` reuses the version already
registered for a run id and, once decided, returns the decision recorded on that version.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perfspec.errors import EnvironmentProblem, InputError
from perfspec.fileio import sha256_files, write_json_atomic
from perfspec.learn.dataset import Dataset
from perfspec.learn.predict import BUNDLE_NAME, export_bundle
from perfspec.learn.vocab import Vocabulary
from perfspec.mlflow_store import use_store
from perfspec.settings import Settings

MODEL_ARTIFACT = "model"
TAG_FINGERPRINT = "dataset_fingerprint"
TAG_DECISION = "champion_decision"
TAG_REASON = "champion_reason"
TAG_MODEL_URI = "perfspec.model_uri"
TAG_TOP1 = "test_lstm_top1"
TAG_DECISION_RECORD = "perfspec.decision"  # the PromotionDecision as JSON, on the model version
RUN_RECORD = "mlflow.json"  # in the run dir: run id, store, training digest, registered version


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of ``register_and_promote`` (also logged as tags on the run and the model version)."""

    registered_model: str
    version: str
    promoted: bool
    reason: str
    challenger_top1: float
    champion_version: str | None = None
    champion_top1: float | None = None
    same_dataset: bool | None = None
    replayed: bool = False  # this run was decided earlier (a re-run or retry): nothing moved now
    current_champion: str | None = None  # on a replay: the version @champion points at today

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for people; a replay says so instead of announcing an old promotion as news."""
        verdict = "promoted to @champion" if self.promoted else "not promoted (champion kept)"
        if not self.replayed:
            return f"v{self.version} {verdict}"
        now = f"@champion is v{self.current_champion}" if self.current_champion else "no @champion now"
        return f"v{self.version} was {verdict} when first logged (nothing changed now; {now})"


def configure(settings: Settings) -> str:
    """Point MLflow at the configured store and make sure the experiment exists; returns its id.

    With the embedded SQLite store the experiment's artifacts go to ``<data_dir>/mlflow/artifacts``.
    """
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
                experiment_id = client.create_experiment(name, artifact_location=location)
            except MlflowException:  # created concurrently by another process
                experiment_id = client.get_experiment_by_name(name).experiment_id
        else:
            experiment_id = experiment.experiment_id
    except MlflowException as error:
        raise EnvironmentProblem(f"MLflow store {uri} is not usable: {error.message}") from error
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


class _KerasFlavor:
    """``mlflow.keras`` whose ``save_model`` first creates its directory and adds ``predictor.npz``.

    Why: in MLflow 3.17 ``mlflow.keras.save_model`` writes ``input_example.json`` before it creates the
    model directory, so ``mlflow.keras.log_model(..., input_example=...)`` fails with FileNotFoundError.
    With ``perfspec_vocab`` the TensorFlow-free inference bundle (``perfspec.learn.predict``) is written next
    to ``MLmodel``, so ``Predictor.load("models:/...")`` downloads only that file.
    """

    @staticmethod
    def save_model(path: str, perfspec_vocab: Vocabulary | None = None, **kwargs: Any) -> None:
        import os

        import mlflow.keras

        os.makedirs(path, exist_ok=True)
        mlflow.keras.save_model(path=path, **kwargs)
        if perfspec_vocab is not None:
            export_bundle(kwargs["model"], perfspec_vocab, Path(path) / BUNDLE_NAME)


def pip_requirements() -> list[str]:
    """Explicit requirements: inferring them would import-trace the model (~7 s per log)."""
    import keras
    import tensorflow as tf

    return [f"tensorflow-cpu=={tf.__version__}", f"keras=={keras.__version__}", f"numpy=={np.__version__}"]


def training_digest(run_dir: Path) -> str:
    """Identifies the training a run dir holds (a resume with more epochs changes it)."""
    return sha256_files([Path(run_dir) / "model.keras", Path(run_dir) / "history.json"])


def read_run_record(run_dir: Path) -> dict[str, Any]:
    try:
        record = json.loads((Path(run_dir) / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def logged_run(settings: Settings, run_dir: Path) -> str | None:
    """The run id recorded for this run dir, if it is in this store, FINISHED, and logged this training."""
    import mlflow
    from mlflow.exceptions import MlflowException

    record = read_run_record(run_dir)
    run_id = record.get("run_id")
    if not run_id or record.get("tracking_uri") != settings.mlflow_tracking_uri:
        return None
    try:
        if record.get("training") != training_digest(run_dir):
            return None
        run = mlflow.MlflowClient().get_run(run_id)
    except (MlflowException, OSError):
        return None
    if run.info.status != "FINISHED" or run.info.lifecycle_stage != "active":
        return None
    return str(run_id)


def log_run(settings: Settings, dataset: Dataset, run_dir: Path, metrics: dict) -> str:
    """Log one finished training (``run_dir`` from ``train`` + ``evaluate``) as an MLflow run.

    Once per training: returns the run recorded in ``<run_dir>/mlflow.json`` when ``logged_run``
    accepts it. A failure part-way deletes the new run, so a retry leaves no FAILED run behind.
    """
    import mlflow

    run_dir = Path(run_dir)
    configure(settings)
    existing = logged_run(settings, run_dir)
    if existing is not None:
        return existing
    run = mlflow.start_run(run_name=run_dir.name)
    run_id = run.info.run_id
    try:
        _log_contents(run, dataset, run_dir, metrics, settings)
    except BaseException:
        mlflow.end_run("FAILED")
        with contextlib.suppress(Exception):
            mlflow.MlflowClient().delete_run(run_id)
        raise
    mlflow.end_run()
    write_json_atomic(
        run_dir / RUN_RECORD,
        {
            "run_id": run_id,
            "tracking_uri": settings.mlflow_tracking_uri,
            "experiment_id": run.info.experiment_id,
            "training": training_digest(run_dir),
        },
    )
    return run_id


def _log_contents(run: Any, dataset: Dataset, run_dir: Path, metrics: dict, settings: Settings) -> None:
    """Params, tags, inputs, metrics, artifacts and the model, into the active ``run``."""
    import keras
    import mlflow
    from mlflow.entities import Metric
    from mlflow.models import infer_signature

    run_id = run.info.run_id
    history = (
        json.loads((run_dir / "history.json").read_text()) if (run_dir / "history.json").is_file() else {}
    )
    params = {f"dataset.{k}": v for k, v in settings.dataset.model_dump().items()}
    params |= {f"train.{k}": v for k, v in settings.train.model_dump().items()}
    params |= {"ngram.order": metrics.get("ngram", {}).get("order"), "vocab_size": len(dataset.vocab)}
    mlflow.log_params(params)
    mlflow.set_tags(
        {
            TAG_FINGERPRINT: dataset.fingerprint,
            "dataset_source": dataset.source,
            "run_dir": str(run_dir.resolve()),
            TAG_TOP1: str(metrics["test"]["lstm"]["top1"]),
        }
    )
    x_train, y_train = dataset.windows("train")
    x_test, y_test = dataset.windows("test")
    # one input per split; MLflow keys inputs by digest, so each split gets its own
    for context, split, (x, y) in (
        ("training", "train", (x_train, y_train)),
        ("testing", "test", (x_test, y_test)),
    ):
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways": a local file
            warnings.simplefilter("ignore", UserWarning)
            data = mlflow.data.from_numpy(
                x,
                targets=y,
                source=dataset.source or "actions",
                name=f"actions-{dataset.fingerprint[:12]}-{split}",
                digest=f"{dataset.fingerprint[:24]}-{split}",
            )
        mlflow.log_input(data, context=context)

    timestamp = int(run.info.start_time or 0)
    batch = [
        Metric(key, float(value), timestamp, epoch)
        for key in ("loss", "accuracy", "val_loss", "val_accuracy")
        for epoch, value in enumerate(history.get(key, []), start=1)
    ]
    for section in ("test", "test_changes"):
        for model, scores in metrics.get(section, {}).items():
            for name, value in scores.items():
                batch.append(Metric(f"{section}_{model}_{name}", float(value), timestamp, 0))
    client = mlflow.MlflowClient()
    for start in range(0, len(batch), 900):
        client.log_batch(run_id, metrics=batch[start : start + 900])
    if history.get("best_epoch"):
        mlflow.log_metric("best_epoch", history["best_epoch"])

    for name in ("history.json", "metrics.json", "per_action.csv", "confused_pairs.csv", "vocab.json"):
        if (run_dir / name).is_file():
            mlflow.log_artifact(str(run_dir / name))
    if (run_dir / "plots").is_dir():
        mlflow.log_artifacts(str(run_dir / "plots"), artifact_path="plots")
    with tempfile.TemporaryDirectory(prefix="perfspec-dataset-") as tmp:
        mlflow.log_artifacts(str(dataset.save(Path(tmp))), artifact_path="dataset")

    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    example = x_test[:2] if len(x_test) else x_train[:2]
    signature = infer_signature(example, np.asarray(model(example, training=False)))
    # MLflow checks the input example by running the model; keep Keras' progress bar off our stdout
    with contextlib.redirect_stdout(io.StringIO()):
        info = mlflow.models.Model.log(
            artifact_path=None,
            name=MODEL_ARTIFACT,
            flavor=_KerasFlavor,
            flavor_name="mlflow.keras",
            model=model,
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
            perfspec_vocab=dataset.vocab,
            metadata={
                "vocab": dataset.vocab.to_json(),
                "window": dataset.window,
                TAG_FINGERPRINT: dataset.fingerprint,
            },
        )
    mlflow.set_tag(TAG_MODEL_URI, info.model_uri)


def registered_version(client: Any, name: str, run_id: str) -> Any | None:
    """The version of ``name`` already registered for ``run_id`` (the oldest, should there be more)."""
    found = [
        v
        for v in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        if v.tags.get("run_id", run_id) == run_id  # not a version another run made of the same model
    ]
    return min(found, key=lambda v: int(v.version)) if found else None


def register_and_promote(
    settings: Settings, run_id: str, metrics: dict, run_dir: Path | None = None
) -> PromotionDecision:
    """Register the run's model as a new version; move ``@champion`` to it only if it wins.

    Idempotent per run id: a version already registered for the run is reused, and a decision already
    taken for it is returned as recorded. ``run_dir``: also note version and decision in its
    ``mlflow.json``.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    configure(settings)
    client = mlflow.MlflowClient()
    name, alias, margin = (
        settings.mlflow.registered_model,
        settings.mlflow.champion_alias,
        settings.mlflow.promotion_margin,
    )
    run = client.get_run(run_id)
    fingerprint = run.data.tags.get(TAG_FINGERPRINT, "")
    model_uri = run.data.tags.get(TAG_MODEL_URI) or f"runs:/{run_id}/{MODEL_ARTIFACT}"
    challenger = float(metrics["test"]["lstm"]["top1"])
    existing = registered_version(client, name, run_id)
    if existing is not None and TAG_DECISION_RECORD in existing.tags:
        recorded = PromotionDecision(**json.loads(existing.tags[TAG_DECISION_RECORD]))
        _note_in_run_dir(run_dir, recorded)
        try:
            current = client.get_model_version_by_alias(name, settings.mlflow.champion_alias).version
        except MlflowException:
            current = None
        return dataclasses.replace(recorded, replayed=True, current_champion=current)
    if existing is not None:  # registered, but the attempt that did it failed before deciding
        version = existing.version
    else:
        version = mlflow.register_model(
            model_uri, name, tags={TAG_FINGERPRINT: fingerprint, TAG_TOP1: str(challenger), "run_id": run_id}
        ).version

    try:
        champion = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        champion = None
    already = champion is not None and str(champion.version) == str(version)
    if already:  # an earlier attempt moved the alias, then failed before recording its decision
        champion = None

    champion_top1: float | None = None
    same: bool | None = None
    if already:
        promoted, reason = True, f"v{version} is already @{alias} (an earlier attempt promoted it)"
    elif champion is None:
        promoted, reason = True, f"no @{alias} yet"
    else:
        same = champion.tags.get(TAG_FINGERPRINT) == fingerprint
        if same:
            champion_top1 = float(champion.tags.get(TAG_TOP1, "nan"))
            basis = "same dataset"
        else:
            champion_top1 = _reevaluate(settings, champion.version, run_id)
            basis = "champion re-evaluated on the challenger's test split"
        if champion_top1 is None or np.isnan(champion_top1):
            promoted, reason = False, f"kept v{champion.version}: champion could not be scored on this data"
        else:
            promoted = challenger > champion_top1 + margin
            verb = "beats" if promoted else "does not beat"
            reason = (
                f"v{version} top-1 {challenger:.4f} {verb} v{champion.version} {champion_top1:.4f}"
                f" + margin {margin} ({basis})"
            )
    if promoted:
        client.set_registered_model_alias(name, alias, version)
    decision = "promoted" if promoted else "kept"
    client.set_tag(run_id, TAG_DECISION, decision)
    client.set_tag(run_id, TAG_REASON, reason)
    client.set_model_version_tag(name, version, TAG_DECISION, decision)
    outcome = PromotionDecision(
        registered_model=name,
        version=str(version),
        promoted=promoted,
        reason=reason,
        challenger_top1=challenger,
        champion_version=None if champion is None else str(champion.version),
        champion_top1=champion_top1,
        same_dataset=same,
    )
    # written last: its presence means the decision is complete
    client.set_model_version_tag(name, version, TAG_DECISION_RECORD, json.dumps(outcome.to_dict()))
    _note_in_run_dir(run_dir, outcome)
    return outcome


def _note_in_run_dir(run_dir: Path | None, decision: PromotionDecision) -> None:
    """Add the registered version and the decision to ``<run_dir>/mlflow.json`` (if it is there)."""
    if run_dir is None:
        return
    record = read_run_record(run_dir)
    if record:
        record |= {
            "registered_model": decision.registered_model,
            "version": decision.version,
            "decision": decision.to_dict(),
        }
        write_json_atomic(Path(run_dir) / RUN_RECORD, record)


def _reevaluate(settings: Settings, champion_version: str, run_id: str) -> float | None:
    """Champion top-1 on the challenger run's test windows (names mapped through its own vocabulary)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from perfspec.learn.predict import Predictor

    try:
        with tempfile.TemporaryDirectory(prefix="perfspec-reeval-") as tmp:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="dataset", dst_path=tmp)
            dataset = Dataset.load(Path(local))
        predictor = Predictor.load(
            f"models:/{settings.mlflow.registered_model}/{champion_version}",
            tracking_uri=settings.mlflow_tracking_uri,
        )
    except (MlflowException, InputError, OSError):
        return None
    windows, targets = names_of_test_windows(dataset, predictor.window)
    if not targets:
        return None
    ids = np.stack([_encode_padded(predictor, row) for row in windows])
    probs = predictor.probabilities_batch(ids)
    truth = np.array([predictor.vocab.id_of(t) for t in targets])
    return float(np.mean(np.argmax(probs, axis=1) == truth))


def names_of_test_windows(dataset: Dataset, window: int) -> tuple[list[list[str]], list[str]]:
    """The test part's targets with up to ``window`` preceding actions each, as action NAMES.

    Same targets as ``dataset.windows("test")``; the history never reaches across the segment start.
    Names (not the dataset's ids) so that another model sees actions outside this dataset's vocabulary
    as they are, mapped through its own vocabulary, rather than as ``<unk>``.
    """
    windows: list[list[str]] = []
    targets: list[str] = []
    for start, end in dataset.segments["test"]:
        names = dataset.names(start, end)
        for pos in range(start + dataset.window, end):
            windows.append(names[max(0, pos - start - window) : pos - start])
            targets.append(names[pos - start])
    return windows, targets


def _encode_padded(predictor: Any, actions: list[str]) -> np.ndarray:
    """Like ``Predictor.encode`` but never refuses an all-unknown window (it simply scores badly)."""
    kept = actions[-predictor.window :]
    ids = np.zeros(predictor.window, dtype=np.int32)
    ids[predictor.window - len(kept) :] = [predictor.vocab.id_of(a) for a in kept]
    return ids
