"""PNG plots of a training run, for a person to look at (matplotlib, headless Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from perfspec.fileio import atomic_path


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height), dpi=110)


def _save(plt, fig, target: Path) -> Path:
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return target


def learning_curves(history: Mapping[str, Sequence[float]], best_epoch: int, target: Path) -> Path:
    """Loss and accuracy per epoch, train vs validation, with the kept (best-validation) epoch marked."""
    plt, fig = _figure(10, 4)
    epochs = range(1, len(history.get("loss", [])) + 1)
    for index, (metric, label) in enumerate((("loss", "cross-entropy loss"), ("accuracy", "top-1 accuracy"))):
        ax = fig.add_subplot(1, 2, index + 1)
        ax.plot(epochs, history.get(metric, []), marker=".", label="train")
        ax.plot(epochs, history.get(f"val_{metric}", []), marker=".", label="validation")
        if best_epoch:
            ax.axvline(
                best_epoch, color="grey", linestyle="--", linewidth=1, label=f"kept: epoch {best_epoch}"
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("LSTM learning curves")
    return _save(plt, fig, target)


def topk_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], target: Path) -> Path:
    """Top-k accuracy for k=1..K of every model side by side; one column per evaluation set.

    The second row zooms on the strong models (all but the weakest), whose curves nearly touch 1.0.
    """
    plt, fig = _figure(5 * len(curves), 7.5)
    styles = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-.")]
    for index, (panel, models) in enumerate(curves.items()):
        weakest = min(models, key=lambda m: models[m][0] if models[m] else 0.0)
        strong = {m: v for m, v in models.items() if m != weakest} or dict(models)
        floor = min((min(v) for v in strong.values() if len(v)), default=0.0)
        for row, shown, title in ((0, models, panel), (1, strong, f"{panel}, zoom")):
            ax = fig.add_subplot(2, len(curves), row * len(curves) + index + 1)
            for number, (model, values) in enumerate(shown.items()):
                marker, line = styles[number % len(styles)]
                ks = range(1, len(values) + 1)
                ax.plot(ks, values, marker=marker, linestyle=line, markersize=4, label=model)
            ax.set_xlabel("k")
            ax.set_ylabel("top-k accuracy")
            ax.set_ylim((0, 1.02) if row == 0 else (max(0.0, floor - 0.01), 1.001))
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(loc="lower right")
    fig.tight_layout()
    return _save(plt, fig, target)


def per_action_accuracy(
    rows: Sequence[Mapping[str, object]], models: Sequence[str], target: Path, limit: int = 40
) -> Path:
    """Top-1 recall per action (the ``limit`` most frequent test targets), one bar per model."""
    import numpy as np

    shown = list(rows)[:limit]
    plt, fig = _figure(10, max(3.0, 0.28 * len(shown) + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    height = 0.8 / max(len(models), 1)
    positions = np.arange(len(shown))
    for index, model in enumerate(models):
        values = [float(row[f"{model}_recall"]) for row in shown]  # type: ignore[arg-type]
        ax.barh(positions + index * height, values, height=height, label=model)
    ax.set_yticks(positions + height * (len(models) - 1) / 2)
    ax.set_yticklabels([f"{row['action']} (n={row['support']})" for row in shown], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("top-1 recall on the test split")
    ax.set_title(f"Per-action accuracy ({len(shown)} most frequent test actions)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    return _save(plt, fig, target)
