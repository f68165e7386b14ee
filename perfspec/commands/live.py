"""CLI commands of the live layer: ``perfspec replay`` (see perfspec/live)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from perfspec.commands.learn import DEFAULT_MODEL


def register(app: typer.Typer) -> None:
    """Add this layer's subcommands to the ``perfspec`` app."""
    app.command("replay")(replay_command)


def replay_command(
    events: Annotated[Path, typer.Argument(help="A cleaned log: the events.parquet `perfspec clean` wrote.")],
    model: Annotated[
        str,
        typer.Option(
            "--model", help="Run dir, predictor.npz / model.keras, or an MLflow URI (models:/NAME@ALIAS)."
        ),
    ] = DEFAULT_MODEL,
    speed: Annotated[
        str,
        typer.Option("--speed", help="max (as fast as possible), or a factor of the recorded pace: 1, 10…"),
    ] = "max",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output folder (default: <data_dir>/replays/<log folder name>)."),
    ] = None,
    top: Annotated[
        int, typer.Option("--top", min=1, max=10, help="An action outside the top K is unexpected.")
    ] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print replay.json on stdout.")] = False,
) -> None:
    """Replay a cleaned audit log through the next-action predictor, as the runtime would have seen it.

    Writes replay.json (hit@k, lead time, latency, unexpected actions), unexpected.jsonl and plots/.
    """
    from perfspec.live.replay import parse_speed, replay
    from perfspec.settings import get_settings

    settings = get_settings()
    out_dir = out or settings.paths.data_dir / "replays" / events.resolve().parent.name
    report = replay(
        events, model, out_dir, speed=parse_speed(speed), top=top, actions_settings=settings.actions
    )
    if as_json:
        typer.echo(json.dumps(report))
        return
    hit, tail = report["hit_at"], report["hit_at_last_tenth"]
    lead = report["lead_time_ms"]
    latency = report["latency_ms"]
    typer.echo(
        f"replayed {report['actions']:,} actions ({report['events']:,} events) through "
        f"{report['model_versions'][0]}: hit@1 {hit['1']:.3f}, hit@5 {hit['5']:.3f}, hit@10 {hit['10']:.3f}; "
        f"last tenth of the log hit@5 {tail['5']:.3f} (positions the model trained on inflate the whole-log "
        "numbers)"
    )
    typer.echo(
        f"in time {report['in_time']:.1%}; in the top 5 and in time {report['precomputed_at']['5']:.1%}"
    )
    typer.echo(
        f"lead time p50 {lead['p50']} ms, p90 {lead['p90']} ms; prediction latency p50 {latency['p50']} ms, "
        f"p99 {latency['p99']} ms; {report['unexpected']:,} unexpected (outside the top {top})"
    )
    typer.echo(f"wrote {out_dir / 'replay.json'}, {out_dir / 'unexpected.jsonl'}, {out_dir / 'plots'}")
