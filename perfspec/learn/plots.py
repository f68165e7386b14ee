"""PNG plots of a training run, for a person to look at (matplotlib, headless Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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


def learning_curves(
    history: Mapping[str, Sequence[float]], best_epoch: int, target: Path, name: str = "model"
) -> Path:
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
    fig.suptitle(f"Learning curves: {name} (hold-out training)")
    return _save(plt, fig, target)


def coverage_curves(
    coverage: Mapping[str, Sequence[float]], windows: int, candidate: str, target: Path
) -> Path:
    """Share of next actions inside the top k (k = 1..20) per model on the hold-out: the runtime's metric."""
    plt, fig = _figure(9, 5.5)
    ax = fig.add_subplot(1, 1, 1)
    styles = ["-", "--", ":", "-."]
    for number, (model, values) in enumerate(sorted(coverage.items(), key=lambda mv: -mv[1][4])):
        ks = range(1, len(values) + 1)
        bold = model == candidate
        label = f"{model} (candidate)" if bold else model
        ax.plot(
            ks,
            values,
            linestyle=styles[number % len(styles)],
            marker="o" if bold else ".",
            linewidth=2.4 if bold else 1.2,
            markersize=4,
            label=f"{label}: top-5 {values[4]:.3f}",
        )
    ax.set_xlabel("k = candidate actions precomputed per step")
    ax.set_ylabel("share of next actions in the top k")
    ax.set_xticks(range(1, 21))
    ax.set_ylim(0, 1.0)
    ax.set_title(f"Coverage on the chronological hold-out ({windows} windows)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(plt, fig, target)


def cv_comparison(
    cv: Mapping[str, Mapping[str, Mapping[str, Any]]],
    metric: str,
    candidate: str,
    target: Path,
    paired: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    standard_errors: float = 2.0,
) -> Path:
    """Left: CV ``metric`` per model (folds as dots, mean +- std). Right: the paired per-fold gain over the
    n-gram, mean +- ``standard_errors`` SE: a model beats the n-gram beyond noise when its bar clears 0."""
    names = sorted(cv, key=lambda n: float(cv[n][metric]["mean"]))
    panels = 2 if paired else 1
    plt, fig = _figure(9 + 5 * (panels - 1), max(3.0, 0.45 * len(names) + 1.5))
    ax = fig.add_subplot(1, panels, 1)
    for row, name in enumerate(names):
        stats = cv[name][metric]
        mean, std = float(stats["mean"]), float(stats["std"])
        folds = [float(v) for v in stats["folds"]]
        color = "tab:red" if name == candidate else "tab:blue"
        ax.errorbar(mean, row, xerr=std, fmt="o", color=color, capsize=4)
        ax.scatter(folds, [row] * len(folds), color=color, alpha=0.35, s=14)
        ax.annotate(
            f"{mean:.3f}", (mean, row), textcoords="offset points", xytext=(0, 7), fontsize=7, ha="center"
        )
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([f"{n} (candidate)" if n == candidate else n for n in names], fontsize=8)
    ax.set_xlabel(f"{metric} per fold (dots), mean +- std (bar)")
    ax.set_title(f"Blocked cross-validation: {metric}")
    ax.grid(axis="x", alpha=0.3)
    if paired:
        right = fig.add_subplot(1, 2, 2, sharey=ax)
        for row, name in enumerate(names):
            diff = paired.get(name, {}).get(metric)
            if not diff or diff.get("se") is None:
                continue
            mean, se = float(diff["mean"]), float(diff["se"])
            folds = [float(v) for v in diff["folds"]]
            clear = mean - standard_errors * se > 0
            color = "tab:green" if clear else ("tab:red" if name == candidate else "tab:gray")
            right.errorbar(mean, row, xerr=standard_errors * se, fmt="o", color=color, capsize=4)
            right.scatter(folds, [row] * len(folds), color=color, alpha=0.35, s=14)
            right.annotate(
                f"{mean:+.3f}",
                (mean, row),
                textcoords="offset points",
                xytext=(0, 7),
                fontsize=7,
                ha="center",
            )
        right.axvline(0, color="black", linewidth=1)
        right.set_xlabel(f"paired gain over the n-gram per fold (dots), mean +- {standard_errors:g} SE (bar)")
        right.set_title("Beyond noise? (green: the bar clears 0)")
        right.grid(axis="x", alpha=0.3)
        right.tick_params(labelleft=False)
    fig.tight_layout()
    return _save(plt, fig, target)


def per_action_accuracy(
    rows: Sequence[Mapping[str, object]], models: Sequence[str], target: Path, limit: int = 40
) -> Path:
    """Top-1 recall per action (the ``limit`` most frequent test targets), one bar per model."""
    import numpy as np

    shown = [row for row in rows if int(row.get("support", 1)) > 0][:limit]  # type: ignore[call-overload]
    plt, fig = _figure(10, max(3.0, 0.28 * len(shown) + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    height = 0.8 / max(len(models), 1)
    positions = np.arange(len(shown))
    for index, model in enumerate(models):
        values = [float(row[f"{model}_recall"]) for row in shown]  # type: ignore[arg-type]
        bars = ax.barh(positions + index * height, values, height=height, label=model)
        # the value at the end of each bar: a recall of 0 reads "0", not as a missing bar
        ax.bar_label(
            bars,
            labels=[f"{v:.2f}".rstrip("0").rstrip(".") or "0" for v in values],
            fontsize=5,
            padding=1.5,
            color=bars.patches[0].get_facecolor() if bars.patches else None,
        )
    ax.set_yticks(positions + height * (len(models) - 1) / 2)
    ax.set_yticklabels([f"{row['action']} (n={row['support']})" for row in shown], fontsize=7)
    ax.set_xlim(0, 1.08)  # room for the value labels
    ax.invert_yaxis()
    ax.set_xlabel("top-1 recall on the test split")
    ax.set_title(f"Per-action accuracy ({len(shown)} most frequent test actions)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    return _save(plt, fig, target)


def per_actor_scores(rows: Sequence[Mapping[str, Any]], models: Sequence[str], target: Path) -> Path:
    """Top-5 per actor (the busiest in the test part): each model and the global stream's reference."""
    import numpy as np

    plt, fig = _figure(10, max(3.0, 0.45 * len(rows) + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    height = 0.8 / max(len(models), 1)
    positions = np.arange(len(rows))
    for index, model in enumerate(models):
        values = [float(row[f"{model}_top5"]) for row in rows]
        shown = "global bigram (reference)" if model == "global_reference" else model
        ax.barh(positions + index * height, values, height=height, label=shown)
    ax.set_yticks(positions + height * (len(models) - 1) / 2)
    labels = [
        f"{row['actor']} (n={row['test_actions']}{'' if row['seen_in_training'] else ', unseen'})"
        for row in rows
    ]
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlim(-0.02, 1)
    ax.invert_yaxis()
    ax.set_xlabel("top-5 on the test part (the actor's next action)")
    ax.set_title("Per actor: the actor's own stream vs the global stream on the same actions")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    return _save(plt, fig, target)
