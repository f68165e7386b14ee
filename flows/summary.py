"""Markdown and table content of the pipeline's Prefect artifacts (pure functions, tested alone)."""

from __future__ import annotations

import re
from typing import Any

from tasks.records import PipelineResult

# ``test_<model>_top<k>`` after flattening ``{"test": {model: {"top1": ...}}}``; the ``test_changes`` part
# (windows whose target differs from the last action) is a separate view, not a model.
_TOPK = re.compile(r"^test_(?!changes_)(?P<model>[a-z][a-z0-9_]*?)_top(?P<k>\d+)$")
MODEL_ORDER = ("lstm", "ngram", "most_frequent")


def _flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flatten(value, f"{name}_")
        else:
            flat[name] = value
    return flat


def topk_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model with its test top-k accuracies, from ``test_<model>_top<k>`` keys."""
    table: dict[str, dict[str, float]] = {}
    for key, value in _flatten(metrics).items():
        match = _TOPK.match(key)
        if match and isinstance(value, int | float) and not isinstance(value, bool):
            table.setdefault(match["model"], {})[f"top{match['k']}"] = round(float(value), 4)
    order = {m: i for i, m in enumerate(MODEL_ORDER)}
    rows = []
    for model in sorted(table, key=lambda m: (order.get(m, len(order)), m)):
        ks = sorted(table[model], key=lambda c: int(c[3:]))
        rows.append({"model": model, **{k: table[model][k] for k in ks}})
    return rows


def markdown_summary(result: PipelineResult, ui_hint: str | None = None) -> str:
    """The per-run report people read in the Prefect UI."""
    prepared, trained = result.prepared, result.trained
    lines = ["# perfspec pipeline run", "", "## Data"]
    lines.append(f"- sources: {', '.join(f'`{s}`' for s in prepared.sources)}")
    if prepared.clean:
        c = prepared.clean
        lines.append(
            f"- events: read {c.read}, kept {c.kept}, duplicates {c.duplicates}, rejected {c.rejected}"
        )
        if c.incomplete_files:
            ended_early = ", ".join(f"`{f}`" for f in c.incomplete_files)
            lines.append(f"- **warning**: truncated or corrupt, events before the break kept: {ended_early}")
    if prepared.actions:
        lines.append(f"- actions: {prepared.actions.actions} ({prepared.actions.distinct} distinct)")
    d = prepared.dataset
    windows = ", ".join(f"{k} {v}" for k, v in d.windows.items())
    lines += [
        f"- dataset `{d.fingerprint[:12]}`: {d.actions} actions, vocabulary {d.vocab_size}, "
        f"windows: {windows}",
        "",
        "## Training",
    ]
    t = trained.train
    lines.append(
        f"- epochs done {t.epochs_done} (this run {t.epochs_this_call}, resumed from {t.resumed_from}), "
        f"best epoch {t.best_epoch} (val_loss {t.best_val_loss:.4f}), "
        f"{'stopped early, ' if t.stopped_early else ''}{t.train_seconds:.1f} s"
    )
    lines.append(f"- run dir: `{t.run_dir}`")
    rows = topk_rows(trained.metrics)
    if rows:
        cols = [c for c in rows[0] if c != "model"]
        lines += ["", "## Test accuracy: model vs baselines", ""]
        lines.append("| model | " + " | ".join(cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        for row in rows:
            lines.append(f"| {row['model']} | " + " | ".join(f"{row.get(c, '')}" for c in cols) + " |")
    p = trained.promotion
    reason = p.decision.get("reason") or p.decision.get("message") or ""
    lines += ["", "## Champion decision", f"- {p.describe()}{': ' + str(reason) if reason else ''}"]
    for key in ("version", "champion_version", "previous_champion", "model_uri"):
        if p.decision.get(key) not in (None, ""):
            lines.append(f"- {key}: `{p.decision[key]}`")
    lines += ["", "## MLflow", f"- run `{trained.run_id}` in `{trained.tracking_uri}`"]
    if result.run_url:
        lines.append(f"- [open the run]({result.run_url})")
    if ui_hint:
        lines.append(f"- {ui_hint}")
    return "\n".join(lines) + "\n"
