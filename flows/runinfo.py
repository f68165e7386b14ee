"""What tells flow runs apart in the Prefect UI: a name from what the run does, tags, the effective settings.

Why: Prefect names runs at random (``coral-quokka``) and shows a flow's parameters, which are ``null``
whenever a setting comes from the environment (``PERFSPEC_TRAIN__LSTM_UNITS=64``) or a default. Each flow
renames its own run once it knows what it does (``train gru-64x1-e32-d0.3, 30 epochs, data 50ccb21ef348``:
commas, not the middle dot of MLflow's run names, which the run graph's font lacks), adds tags
(``family:gru``, ``streams:actor``, ``source:audit-logs``) and records the settings that differ from the
defaults: a log line and a markdown artifact (``effective-settings``) on the run. All of it is a
convenience: a failure to label a run never fails the run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from perfspec.settings import Settings

SETTINGS_ARTIFACT = "effective-settings"
INHERITED = ("source:",)  # tag keys whose value given by a caller wins over the run's own


def tag_value(text: str) -> str:
    """A short tag-safe form of ``text`` (no spaces or commas)."""
    return re.sub(r"[^A-Za-z0-9._:/+-]+", "-", str(text)).strip("-")[:60] or "-"


def label_flow_run(name: str | None = None, tags: Iterable[str] = ()) -> None:
    """Rename the current flow run and add ``tags`` to it. The tags it already has are kept, and a
    ``source:`` tag given by the caller wins (``source:sample`` stays the only one of the pipeline's
    subflow runs)."""
    from prefect import get_run_logger
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    run = context.flow_run
    have = list(run.tags or [])
    given = {tag.split(":", 1)[0] for tag in have if tag.startswith(INHERITED)}
    merged = list(dict.fromkeys([*have, *(t for t in tags if t.split(":", 1)[0] not in given)]))
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run.id, name=name or None, tags=merged)
    except Exception as error:  # a label is a convenience: never fail the run for it
        get_run_logger().warning("could not label this flow run: %s", error)


def settings_table(settings: Settings) -> list[tuple[str, Any, str]]:
    """``(setting, value, where from)`` for every setting that differs from its default."""
    import os

    rows = []
    for section in type(settings).model_fields:
        current = getattr(settings, section)
        default = type(current)().model_dump(mode="json")
        for key, value in current.model_dump(mode="json").items():
            if value == default.get(key):
                continue
            variable = f"PERFSPEC_{section.upper()}__{key.upper()}"
            origin = f"env {variable}" if variable in os.environ else "parameter, flag or default here"
            rows.append((f"{section}.{key}", value, origin))
    return rows


def record_settings(settings: Settings, what: str, important: Iterable[str] = ()) -> str:
    """Log the settings this run uses that differ from the defaults, and publish them as the
    ``effective-settings`` markdown artifact of the run; returns the markdown."""
    from prefect import get_run_logger
    from prefect.artifacts import create_markdown_artifact

    rows = settings_table(settings)
    lines = [f"# Effective settings: {what}", ""]
    shown = list(important)
    if shown:
        lines += ["Used by this run:", "", *(f"- `{line}`" for line in shown), ""]
    if rows:
        lines += ["Differing from the defaults:", "", "| setting | value | from |", "|---|---|---|"]
        lines += [f"| `{name}` | `{value}` | {origin} |" for name, value, origin in rows]
    else:
        lines.append("Every other setting has its default value.")
    markdown = "\n".join(lines) + "\n"
    changed = ", ".join(f"{name}={value}" for name, value, _ in rows) or "none"
    try:
        get_run_logger().info("settings differing from the defaults: %s", changed)
        create_markdown_artifact(
            markdown=markdown, key=SETTINGS_ARTIFACT, description=f"Settings of this run ({what})"
        )
    except Exception as error:  # never fail the run for its description
        get_run_logger().warning("could not record the settings: %s", error)
    return markdown


def pipeline_label(
    settings: Settings, source: Sequence[str] | None, actions: Path | None, epochs: int | None
) -> tuple[str, list[str]]:
    """The pipeline run's name and tags, from what it does: ``pipeline sample, lstm+gru, 20 epochs``."""
    if actions is not None:
        what = f"actions {actions.name}"
    elif source:
        what = ", ".join(Path(s).name for s in source[:2]) + (
            f" +{len(source) - 2}" if len(source) > 2 else ""
        )
    else:
        what = "sample"
    shown = epochs or (
        settings.prefect.sample_epochs if not source and actions is None else settings.train.epochs
    )
    families = "+".join(settings.selection.train_families)
    sweep = " sweep" if settings.selection.nightly_sweep else ""
    name = f"pipeline {what},{sweep} {families}, {shown} epochs"
    run_tags = [f"source:{tag_value(what.replace('actions ', ''))}"]
    run_tags += [f"family:{family}" for family in settings.selection.train_families]
    return name, run_tags
