"""The action distribution report (like the seed's ``actions_distribution.pdf``).

Why: before training, a user should see what the model will learn: which verbs touch which resources
and how unbalanced the vocabulary is. A bubble chart (verbs x resources, area = count) shows ~200
distinct actions on one page; the CSV holds the exact counts.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from perfspec.actions.presets import spell
from perfspec.errors import InputError
from perfspec.fileio import atomic_path, write_text_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PNG, PDF, CSV = "distribution.png", "distribution.pdf", "distribution.csv"
_MAX_BUBBLE_AREA = 900.0  # points^2 of the largest bubble
_NO_RESOURCE = "(none)"
MAX_RESOURCE_ROWS = 40  # beyond this, the rarest resources share one row: the chart fits one screen


def action_counts(actions_parquet: Path) -> list[tuple[str, str, int]]:
    """``(verb, resource, count)`` sorted by count (descending), then verb and resource."""
    path = Path(actions_parquet)
    try:
        table = pq.read_table(path, columns=["verb", "resource"])
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        raise InputError(
            f"{path}: not an actions.parquet ({exc})", hint="run `perfspec actions` first"
        ) from exc
    table = table.set_column(1, "resource", table["resource"].fill_null(_NO_RESOURCE))
    grouped = table.group_by(["verb", "resource"]).aggregate([([], "count_all")])
    rows = [
        (v, r, int(n))
        for v, r, n in zip(
            grouped["verb"].to_pylist(),
            grouped["resource"].to_pylist(),
            grouped["count_all"].to_pylist(),
            strict=True,
        )
    ]
    return sorted(rows, key=lambda row: (-row[2], row[0], row[1]))


def write_distribution_report(actions_parquet: Path, out_dir: Path) -> list[Path]:
    """Write ``distribution.png``, ``distribution.pdf`` and ``distribution.csv`` into ``out_dir``."""
    counts = action_counts(actions_parquet)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = sum(n for _, _, n in counts)
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["action", "verb", "resource", "count", "share"])
    for verb, resource, n in counts:
        token = spell(verb, None if resource == _NO_RESOURCE else resource)
        writer.writerow([token, verb, resource, n, f"{n / total:.6f}" if total else "0"])
    write_text_atomic(out_dir / CSV, table.getvalue())
    figure = _figure(counts, total)
    try:
        with atomic_path(out_dir / PNG) as png:
            figure.savefig(png, format="png", dpi=150, metadata={"Software": None})
        with atomic_path(out_dir / PDF) as pdf:
            figure.savefig(
                pdf, format="pdf", metadata={"CreationDate": None, "Producer": None, "Creator": None}
            )
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)
    return [out_dir / PNG, out_dir / PDF, out_dir / CSV]


def group_tail(
    counts: list[tuple[str, str, int]], max_rows: int = MAX_RESOURCE_ROWS
) -> list[tuple[str, str, int]]:
    """``counts`` with the long tail of resources summed per verb into one row, ``+N other resources``:
    every resource seen only once, and any beyond the ``max_rows - 1`` busiest. Unchanged when nothing
    would be grouped but a single row. The CSV keeps every resource."""
    totals: dict[str, int] = {}
    for _, resource, n in counts:
        totals[resource] = totals.get(resource, 0) + n
    ranked = sorted(totals, key=lambda r: (-totals[r], r))
    kept = {r for r in ranked[: max_rows - 1] if totals[r] > 1}
    if len(totals) - len(kept) <= 1:
        return counts
    other = f"+{len(ranked) - len(kept)} other resources"
    grouped: dict[tuple[str, str], int] = {}
    for verb, resource, n in counts:
        key = (verb, resource if resource in kept else other)
        grouped[key] = grouped.get(key, 0) + n
    return sorted(((v, r, n) for (v, r), n in grouped.items()), key=lambda row: (-row[2], row[0], row[1]))


def _is_other(resource: str) -> bool:
    return resource.startswith("+") and resource.endswith(" other resources")


def _figure(counts: list[tuple[str, str, int]], total: int) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    distinct = len(counts)
    counts = group_tail(counts)
    verb_totals: dict[str, int] = {}
    resource_totals: dict[str, int] = {}
    for verb, resource, n in counts:
        verb_totals[verb] = verb_totals.get(verb, 0) + n
        resource_totals[resource] = resource_totals.get(resource, 0) + n
    verbs = sorted(verb_totals, key=lambda v: (-verb_totals[v], v))
    resources = sorted(resource_totals, key=lambda r: (_is_other(r), -resource_totals[r], r))  # tail last
    # Resources down the page (there are many), verbs across (there are few): readable at ~200 actions.
    row_of = {r: i for i, r in enumerate(resources)}
    col_of = {v: i for i, v in enumerate(verbs)}
    width = max(5.0, 1.1 * len(verbs) + 3.5)
    height = min(max(3.0, 0.19 * len(resources) + 1.6), 60.0)
    figure, axes = plt.subplots(figsize=(width, height))
    if counts:
        biggest = max(n for _, _, n in counts)
        xs = [col_of[v] for v, _, _ in counts]
        ys = [row_of[r] for _, r, _ in counts]
        sizes = [max(_MAX_BUBBLE_AREA * n / biggest, 8.0) for _, _, n in counts]
        axes.scatter(
            xs, ys, s=sizes, alpha=0.55, color="tab:blue", edgecolors="navy", linewidths=0.5, zorder=2
        )
        for (verb, resource, n), area in zip(counts, sizes, strict=True):
            offset = math.sqrt(area / math.pi) + 2.5  # just right of the bubble's edge
            axes.annotate(
                f"{n:,}", (col_of[verb], row_of[resource]), xytext=(offset, 0), textcoords="offset points",
                ha="left", va="center", fontsize=5.5, zorder=3,
            )  # fmt: skip
    axes.set_yticks(range(len(resources)))
    axes.set_yticklabels([f"{r} ({resource_totals[r]:,})" for r in resources], fontsize=6.5)
    axes.set_xticks(range(len(verbs)))
    axes.set_xticklabels([f"{v}\n({verb_totals[v]:,})" for v in verbs], fontsize=8)
    axes.xaxis.tick_top()
    axes.set_xlim(-0.6, max(len(verbs) - 0.3, 0.7))
    axes.set_ylim(-0.8, max(len(resources) - 0.2, 0.8))
    axes.invert_yaxis()
    axes.grid(True, linestyle=":", linewidth=0.5, alpha=0.6, zorder=1)
    axes.set_ylabel("resource (total)")
    axes.set_title(
        f"Action distribution: {total:,} actions, {distinct} distinct\n"
        "(verb x resource, bubble area = count)",
        fontsize=9,
    )
    figure.tight_layout()
    return figure
