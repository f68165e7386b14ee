"""One learning experiment: every model scored on the same CV folds and hold-out, compared, a candidate.

Why steps that persist: ``perfspec train``, ``perfspec sweep`` and the Prefect ``train``/``sweep``
flows run the same steps (the flows as separate, mapped tasks). Each step writes the ranks it measured
to ``<run_dir>/scores/<model>.npz`` and each trained model to ``<run_dir>/models/<model>/`` (neural
trainings checkpoint and resume there; CV folds train under ``<run_dir>/cv/fold-<k>/<model>/``), so a
crashed or re-run experiment redoes only what is missing. ``finish`` compares what was scored (CV
summaries, paired differences to the best n-gram, the candidate), writes ``metrics.json``, plots and
CSVs, and copies the candidate's bundle to ``<run_dir>/predictor.npz``: what ``Predictor.load(run_dir)``
serves and MLflow registers.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perfspec.errors import InputError
from perfspec.fileio import atomic_path, write_json_atomic
from perfspec.learn.bundle import BUNDLE_NAME, read_bundle, write_bundle
from perfspec.learn.configs import (
    MOST_FREQUENT,
    ModelConfig,
    label,
    mixture_config,
    neural_config,
    ngram_config,
    ngram_name,
)
from perfspec.learn.dataset import Dataset, build_dataset
from perfspec.learn.families import Scorer
from perfspec.learn.families.frequency import MostFrequent
from perfspec.learn.families.mixture import Mixture
from perfspec.learn.families.ngram import NGram
from perfspec.learn.scoring import target_ranks
from perfspec.learn.selection import ModelScores, cv_summary, fold_view
from perfspec.settings import SelectionSettings, Settings

EpochCallback = Callable[[int, dict[str, float]], None]
Say = Callable[[str], None]
CANDIDATE_FILE = "model.json"  # in the run dir: which model the root predictor.npz is


def _quiet(_: str) -> None:
    return None


# --- persisted scores -------------------------------------------------------------------------------
def scores_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / "scores" / f"{name}.npz"


def save_scores(run_dir: Path, scores: ModelScores) -> None:
    arrays = {f"fold{i}": r for i, r in enumerate(scores.fold_ranks)}
    if scores.test_ranks is not None:
        arrays["test"] = scores.test_ranks
    info = {"name": scores.name, "family": scores.family, "folds": len(scores.fold_ranks), **scores.info}
    arrays["info"] = np.array([json.dumps(info, sort_keys=True, default=str)])
    target = scores_path(run_dir, scores.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, suffix=".npz") as tmp:
        # numpy's stub: a **dict[str, ndarray] could also bind its `allow_pickle: bool` keyword
        np.savez(tmp, **arrays)  # type: ignore[arg-type]


def load_scores(run_dir: Path, name: str) -> ModelScores | None:
    path = scores_path(run_dir, name)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            info = json.loads(str(data["info"].reshape(-1)[0]))
            folds = [data[f"fold{i}"] for i in range(int(info.pop("folds")))]
            test = data["test"] if "test" in data.files else None
    except (OSError, ValueError, KeyError):
        return None  # torn by a crash (cannot happen with atomic writes) or older: score again
    return ModelScores(info.pop("name"), info.pop("family"), folds, test, info)


def model_dir(run_dir: Path, name: str, fold: int | None = None) -> Path:
    base = Path(run_dir) / ("models" if fold is None else f"cv/fold-{fold}")
    return base / name


# --- fitting one model on one view (a CV fold or the chronological split) ------------------------------
def _ranks(scorer: Scorer, view: Dataset) -> np.ndarray:
    x, y = view.windows("test")
    return target_ranks(scorer.probabilities(x), y)


def _fit_counts(config: ModelConfig, view: Dataset) -> Scorer:
    classes, window = len(view.vocab), view.window
    if config.family == "most_frequent":
        return MostFrequent.fit(view.sequences("train"), classes, window)
    return NGram.fit(view.sequences("train"), classes, window, int(config.settings["order"]))


def _fit_neural(
    config: ModelConfig, view: Dataset, out_dir: Path, on_epoch_end: EpochCallback | None
) -> tuple[Scorer, dict[str, Any]]:
    from perfspec.learn.training import train

    result = train(view, config.train_settings(), out_dir, on_epoch_end=on_epoch_end)
    scorer, _vocab, _info = read_bundle(out_dir / BUNDLE_NAME)
    info = {
        "best_epoch": result.best_epoch,
        "epochs": len(result.history.get("loss", [])),
        "stopped_early": result.stopped_early,
        "train_seconds": round(result.train_seconds, 2),
    }
    return scorer, info


def _views(dataset: Dataset, folds: int) -> list[Dataset]:
    return [fold_view(dataset, folds, k) for k in range(folds)]


# --- the steps ------------------------------------------------------------------------------------------
def score_counts(
    dataset: Dataset, run_dir: Path, selection: SelectionSettings, say: Say = _quiet
) -> ModelScores:
    """Most-frequent and the n-gram (order chosen by CV mean top-k, else on validation); returns the
    n-gram's scores."""
    run_dir = Path(run_dir)
    folds = selection.cv_folds
    views = _views(dataset, folds) if folds else []
    orders = sorted(set(selection.ngram_orders))
    by_order: dict[int, ModelScores] = {}
    for order in orders:
        config = ngram_config(order)
        scores = ModelScores(config.name, "ngram")
        scores.fold_ranks = [_ranks(_fit_counts(config, view), view) for view in views]
        by_order[order] = scores
    key = f"top{selection.target_k}"
    if folds:
        means = {o: cv_summary(s)[key]["mean"] for o, s in by_order.items()}
        basis = f"CV mean {key}"
    else:  # no CV: choose on the validation part (never on test)
        x, y = dataset.windows("val")
        means = {}
        for order in orders:
            scorer = _fit_counts(ngram_config(order), dataset)
            means[order] = float(np.mean(target_ranks(scorer.probabilities(x), y) < selection.target_k))
        basis = f"validation {key}"
    best = max(orders, key=lambda o: (round(means[o], 12), -o))
    reference = ngram_name(dataset.streams)
    say(f"n-gram order {best} ({basis} {means[best]:.4f}; orders {', '.join(map(str, orders))})")
    for config, name, extra in (
        (ngram_config(best), reference, {"order": best, "chosen_by": basis, "by_order": means}),
        (MOST_FREQUENT, MOST_FREQUENT.name, {}),
    ):
        scores = ModelScores(name, config.family, info={"config": config.to_dict(), **extra})
        same = name == reference
        scores.fold_ranks = (
            by_order[best].fold_ranks if same else [_ranks(_fit_counts(config, v), v) for v in views]
        )
        scorer = _fit_counts(config, dataset)
        scores.test_ranks = _ranks(scorer, dataset)
        write_bundle(scorer, dataset.vocab, model_dir(run_dir, name) / BUNDLE_NAME, {"name": name})
        save_scores(run_dir, scores)
        if name == reference:
            ngram_scores = scores
    return ngram_scores


def score_neural(
    dataset: Dataset,
    config: ModelConfig,
    run_dir: Path,
    selection: SelectionSettings,
    say: Say = _quiet,
    on_epoch_end: EpochCallback | None = None,
) -> ModelScores:
    """Train ``config`` on every CV fold and on the chronological split; ranks on each held-out part."""
    run_dir = Path(run_dir)
    done = load_scores(run_dir, config.name)
    key = {"config": config.to_dict(), "dataset": dataset.fingerprint}
    if (
        done is not None
        and len(done.fold_ranks) == selection.cv_folds
        and done.test_ranks is not None
        and {"config": done.info.get("config"), "dataset": done.info.get("dataset")} == key
    ):
        return done  # scored earlier with the same data and settings (a re-run, or a resumed flow)
    scores = ModelScores(config.name, config.family, info={**key, "label": label(config)})
    for fold, view in enumerate(_views(dataset, selection.cv_folds) if selection.cv_folds else []):
        say(f"{config.name}: fold {fold + 1}/{selection.cv_folds}")
        scorer, _ = _fit_neural(config, view, model_dir(run_dir, config.name, fold), None)
        scores.fold_ranks.append(_ranks(scorer, view))
    say(f"{config.name}: hold-out training")
    scorer, info = _fit_neural(config, dataset, model_dir(run_dir, config.name), on_epoch_end)
    scores.test_ranks = _ranks(scorer, dataset)
    scores.info |= info
    save_scores(run_dir, scores)
    return scores


def score_mixture(
    dataset: Dataset, neural: ModelConfig, run_dir: Path, selection: SelectionSettings, say: Say = _quiet
) -> ModelScores:
    """``neural`` interpolated with the chosen n-gram, weight fitted on each view's validation part."""
    run_dir = Path(run_dir)
    config = mixture_config(neural)
    ngram = load_scores(run_dir, ngram_name(dataset.streams))
    if ngram is None:
        raise InputError(f"no n-gram scores in {run_dir}", hint="score the counts models first")
    order = int(ngram.info["order"])
    scores = ModelScores(config.name, "mixture", info={"config": config.to_dict(), "ngram_order": order})
    views = _views(dataset, selection.cv_folds) if selection.cv_folds else []
    weights = []
    for fold, view in enumerate(views):
        mixture = _mix(view, model_dir(run_dir, neural.name, fold), order)
        weights.append(mixture.weight)
        scores.fold_ranks.append(_ranks(mixture, view))
    mixture = _mix(dataset, model_dir(run_dir, neural.name), order)
    scores.test_ranks = _ranks(mixture, dataset)
    scores.info |= {
        "weight": mixture.weight,
        "fold_weights": weights,
        "label": f"{label(neural)} x{mixture.weight:g} + ngram-{order}",
    }
    write_bundle(mixture, dataset.vocab, model_dir(run_dir, config.name) / BUNDLE_NAME, {"name": config.name})
    say(f"{config.name}: neural weight {mixture.weight:.2f} (fitted on validation)")
    save_scores(run_dir, scores)
    return scores


def best_neural(scores: Sequence[ModelScores], target_k: int) -> str:
    """The neural model the mixture is built on: the best CV mean top-k (the hold-out's without CV)."""

    def score(s: ModelScores) -> float:
        ranks = s.fold_ranks or [s.test_ranks if s.test_ranks is not None else np.zeros(0)]
        return float(np.mean([np.mean(r < target_k) for r in ranks]))

    return max(scores, key=score).name


def score_best_mixture(
    dataset: Dataset,
    configs: Sequence[ModelConfig],
    run_dir: Path,
    selection: SelectionSettings,
    say: Say = _quiet,
) -> ModelScores:
    """The mixture of the best already-scored neural config (``best_neural``) with the n-gram."""
    scored = [load_scores(Path(run_dir), c.name) for c in configs]
    missing = [c.name for c, s in zip(configs, scored, strict=True) if s is None]
    if missing:
        raise InputError(f"not scored yet in {run_dir}: {', '.join(missing)}", hint="train them first")
    name = best_neural([s for s in scored if s is not None], selection.target_k)
    best = next(c for c in configs if c.name == name)
    say(f"mixture: {best.name} + n-gram (best neural by CV mean top{selection.target_k})")
    return score_mixture(dataset, best, run_dir, selection, say)


def _mix(view: Dataset, neural_dir: Path, order: int) -> Mixture:
    neural, _vocab, _info = read_bundle(neural_dir / BUNDLE_NAME)
    ngram = NGram.fit(view.sequences("train"), len(view.vocab), view.window, order)
    x, y = view.windows("val")
    return Mixture.fit(neural, ngram, x, y)


def finish(dataset: Dataset, run_dir: Path, settings: Settings, names: Sequence[str]) -> dict[str, Any]:
    """Compare the scored models, write ``metrics.json`` and plots, install the candidate's bundle."""
    from perfspec.learn.evaluation import write_report

    run_dir = Path(run_dir)
    scores = {}
    for name in names:
        loaded = load_scores(run_dir, name)
        if loaded is None:
            raise InputError(f"{name} was not scored in {run_dir}", hint="re-run the experiment")
        scores[name] = loaded
    metrics = write_report(dataset, run_dir, scores, settings.selection)
    install_candidate(run_dir, metrics["champion_candidate"], dataset)
    return metrics


def install_candidate(run_dir: Path, name: str, dataset: Dataset) -> None:
    """``<run_dir>/predictor.npz`` (+ ``model.keras`` for a neural candidate) := the candidate's."""
    source = model_dir(run_dir, name)
    scorer, vocab, info = read_bundle(source / BUNDLE_NAME)
    write_bundle(
        scorer,
        vocab,
        Path(run_dir) / BUNDLE_NAME,
        {**info, "name": name, "family": scorer.family, **dataset.stream_info()},
    )
    keras_file = source / "model.keras"
    target = Path(run_dir) / "model.keras"
    if keras_file.is_file():
        with atomic_path(target, suffix=".keras") as tmp:
            shutil.copyfile(keras_file, tmp)
    else:
        target.unlink(missing_ok=True)
    dataset.vocab.save(Path(run_dir) / "vocab.json")
    write_json_atomic(
        Path(run_dir) / CANDIDATE_FILE,
        {"name": name, "family": scorer.family, "window": scorer.window, "streams": dataset.streams},
    )


# --- what `perfspec train` runs ------------------------------------------------------------------------
@dataclass
class TrainOutcome:
    """Where everything went, and how the models compare."""

    dataset: Dataset
    dataset_dir: Path
    run_dir: Path
    metrics: dict[str, Any]
    run_id: str | None = None
    decision: Any = None  # perfspec.learn.promotion.PromotionDecision when MLflow is used

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.json"


def save_dataset(dataset: Dataset, datasets_dir: Path) -> Path:
    """Store the dataset under ``<datasets_dir>/<fingerprint12>/`` (once per fingerprint)."""
    target = Path(datasets_dir) / dataset.fingerprint[:12]
    try:
        existing = Dataset.load(target)
        if existing.fingerprint == dataset.fingerprint and (existing.has_names or not dataset.has_names):
            return target
    except Exception:  # absent, partial or of an older format: (re)write it
        pass
    return dataset.save(target)


def experiment_name(fingerprint: str, settings: Settings, configs: Sequence[ModelConfig]) -> str:
    """``<fingerprint12>-<hash8>`` of the dataset and everything that shapes the models and the choice."""
    import hashlib

    from perfspec.learn.training import RESUMABLE_CHANGES

    shaping = {
        "configs": [
            {**c.to_dict(), "params": {k: v for k, v in c.settings.items() if k not in RESUMABLE_CHANGES}}
            for c in configs
        ],
        "selection": settings.selection.model_dump(
            mode="json", include={"cv_folds", "target_k", "ngram_orders", "mixture"}
        ),
    }
    digest = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:8]
    return f"{fingerprint[:12]}-{digest}"


def experiment_dir(
    settings: Settings,
    fingerprint: str,
    configs: Sequence[ModelConfig],
    *,
    sweep: bool = False,
    fresh: bool = False,
) -> Path:
    """Where an experiment's outputs go: ``<runs_dir>/[sweep-]<experiment_name>``, shared by the CLI and
    the flows so a re-run resumes in the same folder; ``fresh`` adds a UTC time stamp (a new folder)."""
    import datetime as dt

    name = ("sweep-" if sweep else "") + experiment_name(fingerprint, settings, configs)
    if fresh:
        name += dt.datetime.now(dt.UTC).strftime("-%Y%m%dT%H%M%S")
    return (settings.paths.runs_dir / name).resolve()


def read_fingerprint(dataset_dir: Path) -> str:
    """The fingerprint of a saved dataset (its ``dataset.json``), without loading its arrays."""
    meta = Path(dataset_dir) / "dataset.json"
    try:
        return str(json.loads(meta.read_text())["fingerprint"])
    except (OSError, ValueError, KeyError) as error:
        raise InputError(
            f"not a dataset directory: {dataset_dir} ({error})", hint="build one with the prepare flow"
        ) from error


def default_configs(settings: Settings) -> list[ModelConfig]:
    """What ``perfspec train`` fits besides the counts models: each of ``selection.train_families`` with
    the train settings, named by its family (``metrics.json`` keys ``lstm``, ``gru``, ... and ``mixture``)."""
    return [
        neural_config(settings.train.model_copy(update={"family": family}), name=family)
        for family in settings.selection.train_families
    ]


def run_experiment(
    dataset: Dataset,
    configs: Sequence[ModelConfig],
    run_dir: Path,
    settings: Settings,
    say: Say = _quiet,
    on_epoch_end: EpochCallback | None = None,
) -> dict[str, Any]:
    """Counts models, each neural config (CV + hold-out), the mixture of the best neural config."""
    selection = settings.selection
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    score_counts(dataset, run_dir, selection, say)
    names = [ngram_name(dataset.streams), MOST_FREQUENT.name]
    neural = [score_neural(dataset, c, run_dir, selection, say, on_epoch_end) for c in configs]
    names += [c.name for c in configs]
    if selection.mixture and neural:
        names.append(score_best_mixture(dataset, configs, run_dir, selection, say).name)
    return finish(dataset, run_dir, settings, names)


def train_from_actions(
    actions_file: Path,
    out_dir: Path | None,
    settings: Settings,
    *,
    use_mlflow: bool = True,
    say: Say = _quiet,
    on_epoch_end: EpochCallback | None = None,
) -> TrainOutcome:
    """Build the dataset, score every model (CV + hold-out), log the run and maybe promote the candidate.

    ``out_dir=None``: ``<data_dir>/runs/<experiment_name>`` (known once the dataset is built).
    """
    dataset = build_dataset(Path(actions_file), settings.dataset)
    if dataset.repeats:
        say(
            f"removed {dataset.repeats_removed:,} actions that repeat earlier spans verbatim "
            f"({len(dataset.repeats)} span(s)); {len(dataset.ids):,} of {dataset.original_actions:,} kept "
            "(--keep-repeats keeps them)"
        )
    dataset_dir = save_dataset(dataset, settings.paths.datasets_dir)
    configs = default_configs(settings)
    run_dir = Path(out_dir) if out_dir is not None else experiment_dir(settings, dataset.fingerprint, configs)
    from perfspec.learn.tracking import opening_title, training_run

    title = opening_title(dataset, [c.name for c in configs])
    with training_run(settings, run_dir, title, enabled=use_mlflow):  # duration = the training's
        metrics = run_experiment(dataset, configs, run_dir, settings, say, on_epoch_end)
    outcome = TrainOutcome(dataset, dataset_dir, run_dir, metrics)
    if use_mlflow:
        from perfspec.learn.promotion import register_and_promote
        from perfspec.learn.tracking import log_run

        outcome.run_id = log_run(settings, dataset, run_dir, metrics)
        outcome.decision = register_and_promote(settings, outcome.run_id, metrics, run_dir=run_dir)
    return outcome
