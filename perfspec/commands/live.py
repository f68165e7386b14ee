"""CLI commands of the live layer: ``perfspec live`` (the online predictor) and ``perfspec replay``
(see perfspec/live)."""

from __future__ import annotations

import gc
import json
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from perfspec.commands import DataDir, use_data_dir
from perfspec.commands.learn import DEFAULT_MODEL
from perfspec.errors import EnvironmentProblem, InputError
from perfspec.signals import on_stop_signals

EMIT_CHOICES = {"file": ("file",), "stdout": ("stdout",), "both": ("file", "stdout")}


def register(app: typer.Typer) -> None:
    """Add this layer's subcommands to the ``perfspec`` app."""
    app.command("live")(live_command)
    app.command("replay")(replay_command)


def _say(text: str) -> None:
    typer.echo(text, err=True)
    sys.stderr.flush()


def live_command(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Run dir, predictor.npz, or an MLflow URI; models:/NAME@ALIAS is polled for new versions "
            "(live.poll_seconds) and swapped in without a restart.",
        ),
    ] = DEFAULT_MODEL,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            help="Be the audit webhook at HOST:PORT (the receiver: events written and fsynced before the "
            "200, into --events); predictions and /metrics are served on the same port.",
        ),
    ] = None,
    follow: Annotated[
        Path | None,
        typer.Option(
            "--follow",
            help="Follow a receiver's folder (audit-NNNNNN.jsonl) or an API-server audit log file instead.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for predictions-NNNNNN.jsonl, unexpected-NNNNNN.jsonl, state.json, summary.json "
            "(default: <data_dir>/live).",
        ),
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option(
            "--events",
            help="--listen: the folder the receiver writes audit-NNNNNN.jsonl into (default: "
            "<data_dir>/raw/live); point `collect --receiver-dir` at it.",
        ),
    ] = None,
    top: Annotated[
        int | None, typer.Option("--top", min=1, max=10, help="Predictions per record (default 5).")
    ] = None,
    emit: Annotated[
        str, typer.Option("--emit", help="Where prediction records go: file (under --out), stdout, or both.")
    ] = "file",
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            help="--follow: HOST:PORT of the /predictions and /metrics server (default live.http, "
            "127.0.0.1:9445; port 0: any).",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="PERFSPEC_RECEIVER__TOKEN",
            show_envvar=True,
            help="Require 'Authorization: Bearer TOKEN' for POSTs and the GET routes but /healthz.",
        ),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow a non-loopback address without --token.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Predict the next actions online, from the live audit stream, until SIGTERM/Ctrl-C.

    Every action (the model's action rule) updates its stream's window (global, or the actor's for an
    actor-stream model) and emits the top-k as a JSON line; GET /predictions, /predictions/<actor> and
    /metrics (Prometheus). On exit: drains the queue, flushes, prints a summary, exits 0.
    """
    from perfspec.live.models import ModelWatcher, load_served, split_alias
    from perfspec.live.service import LiveService
    from perfspec.settings import get_settings

    use_data_dir(data_dir)

    if (listen is None) == (follow is None):
        raise InputError(
            "give exactly one of --listen HOST:PORT and --follow DIR_OR_FILE",
            hint="--listen 127.0.0.1:9444 to be the webhook; --follow raw/<campaign> to read its files",
        )
    if emit not in EMIT_CHOICES:
        raise InputError(f"--emit {emit!r} is not file, stdout or both", hint="e.g. --emit both")
    if follow is not None and not follow.exists():
        raise InputError(
            f"--follow {follow}: no such file or folder", hint="a receiver's folder or an audit log"
        )
    settings = get_settings().with_section("live", top=top, http=http)
    data_dir = settings.paths.data_dir
    out_dir = out or data_dir / "live"
    _writable(out_dir, "--out")
    served = load_served(model)
    watcher = None
    if split_alias(model) is not None:
        watcher = ModelWatcher(model, served, settings.live.poll_seconds, log=_say)
    service = LiveService(
        served, out_dir, settings.live, _rule(settings), emit=EMIT_CHOICES[emit], watcher=watcher, log=_say
    )
    gc.freeze()  # what is loaded now (model, modules) stays out of the collector's full passes: fewer pauses
    stop = threading.Event()
    with on_stop_signals(lambda _name: stop.set()):
        service.start()
        try:
            if listen is not None:
                _listen(service, settings, listen, events or data_dir / "raw" / "live", token, insecure, stop)
            else:
                assert follow is not None
                _follow(service, settings, follow, out_dir, token, stop)
        finally:
            summary = service.stop()
    _print_summary(summary, out_dir)


def _rule(settings: Any) -> Any:
    from perfspec.actions.presets import resolve

    return resolve(settings.actions)


def _writable(folder: Path, flag: str) -> None:
    from perfspec.fileio import ensure_writable_dir

    try:
        ensure_writable_dir(folder)
    except OSError as error:
        raise EnvironmentProblem(
            f"{flag} {folder}: cannot write there ({error.strerror or error})",
            hint=f"pass a {flag} folder you can write to",
        ) from error


def _listen(
    service: Any,
    settings: Any,
    address: str,
    events: Path,
    token: str | None,
    insecure: bool,
    stop: threading.Event,
) -> None:
    """The receiver, with the live predictor as its after-write hook and GET routes, until ``stop``."""
    from perfspec.collect.receiver import AuditReceiver, check_exposure
    from perfspec.live.web import parse_address

    host, port = parse_address(address, "--listen")
    settings = settings.with_section("receiver", host=host, port=port, token=token)
    for warning in check_exposure(settings.receiver, insecure):
        _say(warning)
    receiver = AuditReceiver(
        events,
        settings.receiver,
        max_line_bytes=settings.clean.max_line_bytes,
        on_accepted=service.submit,
        routes=service.route,
    ).start()
    _say(
        f"live: receiving audit events at {receiver.post_url} into {events}; predictions at "
        f"{receiver.url}/predictions, metrics at {receiver.url}/metrics; model {service.served.version} "
        "(Ctrl-C or SIGTERM to stop)"
    )
    try:
        stop.wait()
    finally:
        stats = receiver.stop()  # in-flight batches are written and handed over before this returns
        _say(f"receiver: {stats['events']} events acknowledged in {len(stats['files'])} file(s)")


def _follow(
    service: Any, settings: Any, target: Path, out_dir: Path, token: str | None, stop: threading.Event
) -> None:
    """Follow ``target`` into the service, with the small read-only server, until ``stop``."""
    from perfspec.collect.receiver import is_loopback
    from perfspec.live.follow import follow, make_follower
    from perfspec.live.web import ReadServer, parse_address

    host, port = parse_address(settings.live.http, "--http")
    token = token or settings.receiver.token
    if not is_loopback(host) and not token:
        raise InputError(
            f"refusing to serve predictions on {host} without a token",
            hint="pass --token (or PERFSPEC_RECEIVER__TOKEN), or bind 127.0.0.1",
        )
    server = ReadServer(host, port, service.route, token).start()
    follower = make_follower(target, out_dir, service)
    _say(
        f"live: following {target}; predictions at {server.url}/predictions, metrics at "
        f"{server.url}/metrics; model {service.served.version} (Ctrl-C or SIGTERM to stop)"
    )
    try:
        follow(follower, stop, settings.live.follow_interval_seconds)
    finally:
        follower.close()
        server.stop()


def _print_summary(summary: dict[str, Any], out_dir: Path) -> None:
    hit = summary["hit_at"]
    lead, latency = summary["lead_time_ms"], summary["latency_ms"]
    dropped = sum(summary["dropped"].values())
    _say(
        f"live: {summary['events']:,} events, {summary['actions']:,} actions, {summary['predictions']:,} "
        f"predictions by {', '.join(summary['model_versions']) or 'no model'}; hit@1 {hit['1']:.3f}, "
        f"hit@5 {hit['5']:.3f}, hit@10 {hit['10']:.3f}; in time {summary['in_time']:.1%}"
    )
    _say(
        f"live: lead time p50 ~{lead['p50']} ms; latency p50 ~{latency['p50']} ms, p99 ~{latency['p99']} ms "
        f"(bucket estimates); {summary['unexpected']:,} unexpected; {summary['overflow']:,} not predicted "
        f"(queue full); {dropped:,} records dropped by slow outputs; {summary['swaps']} model swap(s)"
    )
    _say(f"live: wrote {out_dir / 'summary.json'}")


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
    data_dir: DataDir = None,
) -> None:
    """Replay a cleaned audit log through the next-action predictor, as the runtime would have seen it.

    Writes replay.json (hit@k, lead time, latency, unexpected actions), unexpected.jsonl and plots/.
    """
    from perfspec.live.replay import parse_speed, replay
    from perfspec.settings import get_settings

    use_data_dir(data_dir)

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
