"""CLI commands of the data layer: ``perfspec clean``, ``perfspec actions`` (and ``version``)."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    """Add this layer's subcommands to the ``perfspec`` app."""
    register_version(app)
    app.command("clean")(clean_command)
    app.command("actions")(actions_command)


def _version() -> None:
    """Print the perfspec version."""
    from perfspec import __version__

    typer.echo(__version__)


def register_version(app: typer.Typer) -> None:
    app.command("version")(_version)


def clean_command(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="Audit logs: JSON lines of audit.k8s.io Events, Event/EventList JSON documents, or the "
            "PerfSPEC Logstash CSV; plain, .gz, .xz or .bz2 (detected from content). A directory adds "
            "its files, sorted by path.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output directory for events.parquet, rejects.jsonl, summary.json."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
    batch_rows: Annotated[
        int | None, typer.Option(help="Events per Parquet row group (memory grows with it).")
    ] = None,
    max_line_bytes: Annotated[
        int | None, typer.Option(help="Longer lines are rejected (counted, first bytes kept), not parsed.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes parsing large uncompressed JSON-lines files and encoding events.parquet "
            "(0 = one per CPU, 1 = this process only; the same output bytes with any number)."
        ),
    ] = None,
    dedupe: Annotated[
        bool | None,
        typer.Option(
            "--dedupe/--no-dedupe",
            help="Merge a request's stages into one row, latest stage kept.",
            show_default=False,
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Progress bar (default: on when stderr is a terminal).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Clean raw Kubernetes audit logs into typed Parquet (one row per request).

    Writes OUT/events.parquet, OUT/rejects.jsonl (every unreadable record with file, line and reason)
    and OUT/summary.json (read == kept + duplicates + rejected).

    Request and response bodies are never stored, not even in rejects.jsonl.

    Exit code 2 on bad input, or when a compressed file is truncated or has trailing garbage (the
    events before the break are still written); 3 when OUT cannot be written. Files of a directory
    that are not audit logs are skipped with a warning on stderr (and listed in summary.json).
    """
    from perfspec.audit.worker import skip_pandas_probe

    skip_pandas_probe()  # this process never hands pandas objects to pyarrow: save ~0.7 s of start-up
    from perfspec.audit.clean import clean_sources
    from perfspec.errors import InputError
    from perfspec.settings import get_settings

    settings = get_settings().with_section(
        "clean", batch_rows=batch_rows, max_line_bytes=max_line_bytes, dedupe=dedupe, workers=workers
    )
    show_progress = sys.stderr.isatty() if progress is None else progress
    summary = clean_sources(sources, out, settings.clean, progress=show_progress and not as_json)
    # The outputs are written and closed: the interpreter's final garbage collection over every object
    # of the imported modules (pyarrow, pydantic...) is not needed at exit (~50 ms of a ~2 s clean).
    gc.freeze()
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2, sort_keys=True))
    else:
        _print_clean(summary, out)
    for skipped in summary.skipped_files:  # on stderr, with --json too: a file left out is never quiet
        typer.secho(
            f"warning: skipped {skipped['file']}: {skipped['reason']}", fg=typer.colors.YELLOW, err=True
        )
    broken = summary.incomplete_files
    if broken:
        first = broken[0]
        raise InputError(
            f"{first.file}: {first.error}; the {first.kept} event(s) before the break were kept in {out}"
            + (f" ({len(broken) - 1} more incomplete files)" if len(broken) > 1 else ""),
            hint="copy the file again from its source, then re-run clean",
        )


_MAX_FILE_ROWS = 20


def _print_clean(summary: Any, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False, highlight=False)
    table = Table(title=f"perfspec clean -> {out}", title_justify="left", expand=True)
    table.add_column("file", overflow="fold", ratio=1)
    for column in ("format", "read", "kept", "duplicates", "rejected"):
        table.add_column(column, justify="left" if column == "format" else "right", no_wrap=True)
    shown = summary.files if len(summary.files) <= _MAX_FILE_ROWS else summary.files[: _MAX_FILE_ROWS - 1]
    for f in shown:
        fmt = f.format if f.compression == "none" else f"{f.format} ({f.compression})"
        note = "" if f.complete else " [red](truncated)[/red]"
        table.add_row(
            f.file + note, fmt, f"{f.read:,}", f"{f.kept:,}", f"{f.duplicates:,}", f"{f.rejected:,}"
        )
    if len(shown) < len(summary.files):
        table.add_row(
            f"... {len(summary.files) - len(shown)} more files (see summary.json)", "", "", "", "", ""
        )
    if len(summary.files) > 1:
        table.add_row(
            "total",
            "",
            f"{summary.read:,}",
            f"{summary.kept:,}",
            f"{summary.duplicates:,}",
            f"{summary.rejected:,}",
        )
    console.print(table)
    if summary.reject_reasons:
        reasons = ", ".join(f"{k}: {v:,}" for k, v in summary.reject_reasons.items())
        console.print(f"rejects ({reasons}) -> {out / 'rejects.jsonl'}")
    if summary.first_request_at:
        console.print(f"requests from {summary.first_request_at} to {summary.last_request_at}")
    console.print(f"wrote {out / 'events.parquet'}, {out / 'summary.json'}")


def actions_command(
    events: Annotated[
        Path,
        typer.Argument(
            help="events.parquet written by `perfspec clean` "
            "(or a seed .txt corpus, one verb_resource a line).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="actions.txt to write; actions.parquet (with timestamps) goes beside it."
        ),
    ],
    preset: Annotated[
        str | None,
        typer.Option(
            help="paper: the PerfSPEC rule (drop get/list/watch and events/leases/replicationcontrollers), "
            "fixed. custom: the drop lists and switches below. "
            "Default: paper, or custom if any of them is given.",
            show_default=False,
        ),
    ] = None,
    drop_verbs: Annotated[
        str | None, typer.Option(help="Comma-separated verbs to drop (custom preset).", show_default=False)
    ] = None,
    drop_resources: Annotated[
        str | None,
        typer.Option(help="Comma-separated resources to drop (custom preset).", show_default=False),
    ] = None,
    include_subresource: Annotated[
        bool | None,
        typer.Option(
            "--include-subresource/--no-subresource",
            help="Spell tokens verb_resource/subresource, e.g. create_pods/exec (custom preset).",
            show_default=False,
        ),
    ] = None,
    keep_reads: Annotated[
        bool | None,
        typer.Option(
            "--keep-reads/--drop-reads",
            help="Keep get/list/watch even if in the drop list (custom preset).",
            show_default=False,
        ),
    ] = None,
    report: Annotated[
        bool,
        typer.Option("--report/--no-report", help="Also write distribution.{png,pdf,csv} beside --out."),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Turn cleaned events into the action sequence the model learns (one verb_resource a line).

    The paper preset reproduces the PerfSPEC seed corpus exactly (audit-logs.csv gives the first
    2,163 lines of events-dataset.txt).
    """
    from perfspec.actions import build_actions
    from perfspec.errors import InputError
    from perfspec.settings import get_settings

    custom_flags = any(v is not None for v in (drop_verbs, drop_resources, include_subresource, keep_reads))
    if preset is None:
        preset = "custom" if custom_flags else None
    elif preset not in ("paper", "custom"):
        raise InputError(f"unknown --preset {preset!r}", hint="use paper or custom")
    elif preset == "paper" and custom_flags:
        raise InputError(
            "--preset paper is fixed and takes no drop lists or switches", hint="use --preset custom"
        )
    settings = get_settings().with_section(
        "actions",
        preset=preset,
        drop_verbs=_split(drop_verbs),
        drop_resources=_split(drop_resources),
        include_subresource=include_subresource,
        keep_reads=keep_reads,
    )
    summary = build_actions(events, out, settings.actions)
    result = summary.to_dict()
    if report and summary.actions:
        from perfspec.actions.report import write_distribution_report

        written = write_distribution_report(out.with_suffix(".parquet"), out.parent)
        result["outputs"] += [str(p) for p in written]
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    typer.echo(
        f"{summary.actions:,} actions ({summary.distinct_actions} distinct) from {summary.events:,} events, "
        f"preset {summary.preset}; dropped {summary.dropped_by_verb:,} by verb, "
        f"{summary.dropped_by_resource:,} by resource, {summary.dropped_no_verb:,} without verb"
    )
    for path in result["outputs"]:
        typer.echo(f"wrote {path}")


def _split(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(item.strip() for item in value.split(",") if item.strip())
