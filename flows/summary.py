"""Markdown and table content of the pipeline's Prefect artifacts (pure functions, tested alone)."""

from __future__ import annotations

from typing import Any

from tasks.records import PipelineResult, TrainedRun


def topk_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model: hold-out top-k and CV mean top-5, best CV first (the candidate on top)."""
    cv = metrics.get("cv", {})
    rows = []
    for model, scores in metrics.get("test", {}).items():
        row: dict[str, Any] = {"model": model}
        row |= {k: round(float(v), 4) for k, v in scores.items()}
        mean = cv.get(model, {}).get("top5", {}).get("mean")
        row["cv_top5"] = round(float(mean), 4) if mean is not None else ""
        rows.append(row)
    return sorted(rows, key=lambda r: -(r["cv_top5"] if r["cv_top5"] != "" else r.get("top5", 0)))


def actor_lines(trained: TrainedRun) -> list[str]:
    """The per-actor run in a few lines: its candidate against the per-actor n-gram and the global
    bigram on the same next actions, unseen actors, and its own champion decision."""
    m = trained.metrics
    candidate, reference = m.get("champion_candidate"), m.get("verdict", {}).get("reference")
    test, global_ref = m.get("test", {}), m.get("test_global_reference", {}).get("ngram", {})
    lines = ["## Per-actor streams (each requester's own next action)"]
    for name in dict.fromkeys([candidate, reference]):
        if name in test:
            ci = m.get("test_ci", {}).get(name, {}).get("top5")
            shown = f" (95% interval {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
            top1, top5 = test[name]["top1"], test[name]["top5"]
            lines.append(f"- `{name}`: hold-out top-1 {top1:.4f}, top-5 {top5:.4f}{shown}")
    if global_ref:
        top1, top5 = global_ref["top1"], global_ref["top5"]
        lines.append(f"- global bigram on the same actions: top-1 {top1:.4f}, top-5 {top5:.4f}")
    if "unseen_actor_share" in m:
        lines.append(f"- test actions by actors unseen in training: {m['unseen_actor_share']:.1%}")
    registered = trained.promotion.decision.get("registered_model", "")
    reason = trained.promotion.decision.get("reason")
    lines.append(
        f"- champion ({registered}): {trained.promotion.describe()}" + (f" ({reason})" if reason else "")
    )
    from perfspec.learn.tracking import kept_epochs

    lines += [f"- training: {line}" for line in kept_epochs(m)]
    lines.append(f"- run dir: `{trained.run_dir}`, MLflow run `{trained.run_id}`")
    return lines


def compare_link(trained: TrainedRun) -> str | None:
    """The MLflow runs table of the run's experiment (``?workflowType=machine_learning``: not MLflow 3's
    GenAI overview); for a local store, on the ``mlflow ui`` the pipeline's last lines start."""
    import json
    from pathlib import Path

    try:
        record = json.loads((Path(trained.run_dir) / "mlflow.json").read_text())
        experiment_id = record["experiment_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from perfspec.learn.tracking import experiment_url

    return experiment_url(trained.tracking_uri, str(experiment_id))


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
    m = trained.metrics
    data, leak = m.get("dataset", {}), m.get("leakage", {})
    if data.get("repeats_removed"):
        lines.append(
            f"- **repeats removed**: {data['repeats_removed']} of {data['original_actions']} actions repeat "
            f"earlier spans verbatim; trained on {data['actions']}"
        )
    if leak:
        warn = " — **scores measure memorisation**" if leak.get("warning") else ""
        lines.append(
            f"- leakage (held-out windows seen verbatim in training): val {leak['val']:.3f}, "
            f"test {leak['test']:.3f}{warn}"
        )
    for model in trained.models:
        extra = ", ".join(f"{k} {v}" for k, v in model.info.items() if k in ("order", "best_epoch", "weight"))
        cv = f", CV top-5 {model.cv_top5_mean:.4f}" if model.cv_top5_mean is not None else ""
        lines.append(
            f"- `{model.name}` ({model.family}): hold-out top-5 {model.test_top5:.4f}{cv}"
            + (f" ({extra})" if extra else "")
        )
    from perfspec.learn.tracking import kept_epochs

    lines += [f"- training: {line}" for line in kept_epochs(m)]
    lines.append(f"- candidate: `{m.get('champion_candidate')}` (best CV mean {m.get('target_metric')})")
    verdict = m.get("verdict") or {}
    paired = verdict.get("cv_paired_difference") or {}
    if paired.get("se") is not None and m.get("champion_candidate") != verdict.get("reference", "ngram"):
        beyond = "**beyond noise**" if verdict.get("beats_reference_beyond_noise") else "not beyond noise"
        lines.append(
            f"- vs the n-gram (paired CV {m.get('target_metric')}): "
            f"{paired['mean']:+.4f} ± {paired['se']:.4f} (SE), {beyond}"
        )
    lines.append(f"- run dir: `{trained.run_dir}`")
    rows = topk_rows(trained.metrics)
    if rows:
        cols = [c for c in rows[0] if c != "model"]
        lines += ["", "## Chronological hold-out top-k, and blocked-CV top-5 (best CV first)", ""]
        lines.append("| model | " + " | ".join(cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        for row in rows:
            lines.append(f"| {row['model']} | " + " | ".join(f"{row.get(c, '')}" for c in cols) + " |")
    p = trained.promotion
    reason = p.decision.get("reason") or ""
    lines += ["", "## Champion decision", f"- {p.describe()}{': ' + str(reason) if reason else ''}"]
    for key in ("version", "champion_version"):  # PromotionDecision's fields worth a line
        if p.decision.get(key) not in (None, ""):
            lines.append(f"- {key}: `{p.decision[key]}`")
    if result.actor_trained is not None:
        lines += ["", *actor_lines(result.actor_trained)]
    lines += ["", "## MLflow", f"- run `{trained.run_id}` in `{trained.tracking_uri}`"]
    if result.run_url:
        lines.append(f"- [open the run]({result.run_url})")
    compare = compare_link(trained)
    if compare:
        lines.append(f"- compare runs (the experiment's runs table): {compare}")
    if ui_hint:
        lines.append(f"- {ui_hint}")
    return "\n".join(lines) + "\n"
