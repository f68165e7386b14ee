"""CLI commands of the collection layer: ``collect`` (Helm campaigns), ``receive`` (audit webhook),
``tail-audit`` (log-file backend) and ``label`` (events -> campaign steps)."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from perfspec.errors import InputError
from perfspec.signals import on_stop_signals


def _settings() -> Any:
    from perfspec.settings import get_settings

    return get_settings()


def _start_receiver(settings: Any, out_dir: Path, err: Any) -> Any:
    from perfspec.collect.receiver import AuditReceiver, check_exposure

    for warning in check_exposure(settings.receiver):
        err.print(warning, highlight=False, markup=False)
    receiver = AuditReceiver(out_dir, settings.receiver, max_line_bytes=settings.clean.max_line_bytes).start()
    err.print(f"receiving audit events at {receiver.post_url} into {out_dir}")
    return receiver


def _stop_receiver(receiver: Any, drain_seconds: float, err: Any) -> None:
    """Wait for the API server's last batch (it flushes every <= 5 s), then stop and report."""
    time.sleep(drain_seconds)
    stats = receiver.stop()
    err.print(
        f"receiver: {stats['events']} events in {len(stats['files'])} file(s), "
        f"{stats['rejected_bodies']} rejected bodies"
    )


@contextlib.contextmanager
def _progress(err: Any, total: int) -> Iterator[Callable[[str, dict[str, Any]], None]]:
    """A step callback: a progress bar on a terminal, one line per finished step otherwise."""
    if not err.is_terminal:

        def line(kind: str, record: dict[str, Any]) -> None:
            if kind == "end":
                err.print(
                    f"[{record['kind']}] {record['action']} {record['chart_key']} "
                    f"{record['release']}: {record['result']}"
                    + (f" ({record['error']})" if record["error"] else ""),
                    highlight=False,
                    markup=False,
                )

        yield line
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("starting", total=total)

        def advance(kind: str, record: dict[str, Any]) -> None:
            if kind == "start":
                bar.update(task, description=f"{record['action']} {record['chart_key']} ({record['kind']})")
            elif record["kind"] == "planned":
                bar.advance(task)

        yield advance


def _print_plan(spec: Any, steps: list[Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in steps], indent=2))
        return
    from collections import Counter

    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=160)  # piped: do not wrap names
    names = Counter(c.name for c in spec.charts)
    shared = sorted(n for n, k in names.items() if k > 1)
    pauses = sum(s.pause_after_seconds for s in steps)
    order = "as listed" if spec.shuffle_seed is None else f"shuffled (seed {spec.shuffle_seed})"
    # chart and namespace are what a user checks: in a narrow terminal they wrap, they are never cut;
    # timeout and pause, the same for every step of an action, then move to one line under the table
    waits = {s.action: (s.timeout_seconds, s.pause_after_seconds) for s in steps}
    uniform = len(waits) == len({(s.action, s.timeout_seconds, s.pause_after_seconds) for s in steps})
    narrow = console.width < 120 and uniform
    columns = ["#", "action", "chart", "version", "release = namespace"]
    if not narrow:
        columns += ["timeout", "pause"]
    table = Table(title=f"campaign {spec.name}: {len(steps)} steps", box=box.SIMPLE_HEAD, padding=0)
    table.show_edge = False
    for column in columns:
        whole = column in ("chart", "release = namespace")
        table.add_column(
            column,
            justify="right" if column in ("#", "timeout", "pause") else "left",
            overflow="fold" if whole else "ellipsis",
            no_wrap=not whole,
        )
    for s in steps:
        cells = [str(s.index), s.action, s.chart.key, s.chart.version or "-", s.release]
        if not narrow:
            cells += [f"{s.timeout_seconds}s", f"{s.pause_after_seconds:g}s"]
        table.add_row(*cells)
    console.print(table)
    console.print(
        f"{len(spec.charts)} charts x {spec.repetitions} repetition(s), mode {spec.mode}, "
        f"order {order}"
        + (f"; skipped: {', '.join(spec.skipped)}" if spec.skipped else "")
        + (f"; names shared by two repos (kept apart): {', '.join(shared)}" if shared else "")
    )
    if narrow:
        console.print(
            "timeout, pause after: " + ", ".join(f"{action} {t}s, {p:g}s" for action, (t, p) in waits.items())
        )
    console.print(f"pauses alone take {pauses / 60:.1f} min; dry run: nothing was touched.")


def collect(
    charts: Annotated[
        Path,
        typer.Option(
            "--charts",
            help="Charts file: Artifact Hub JSON (sample/helm-charts.json) "
            "or a YAML/JSON list of {name, repo, version}.",
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Campaign name (folder raw/<name>/). Default: "
            "<file stem>-<UTC time>. An existing campaign of that name is resumed.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and exit; touches nothing.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --dry-run: print the plan as a JSON list of steps.")
    ] = False,
    helm: Annotated[
        str | None, typer.Option("--helm", help="The helm executable (default: settings, 'helm').")
    ] = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig",
            help="Kubeconfig for helm and the checks (default: $KUBECONFIG or ~/.kube/config).",
        ),
    ] = None,
    skip_cluster_check: Annotated[
        bool,
        typer.Option(
            "--skip-cluster-check",
            help="Do not contact the API server before starting (no version "
            "record, no leftover cleanup, namespaces created by helm unlabelled).",
        ),
    ] = False,
    keep_leftover_namespaces: Annotated[
        bool,
        typer.Option(
            "--keep-leftover-namespaces",
            help="Do not uninstall releases / delete namespaces that earlier campaigns left behind "
            "(settings collect.delete_leftover_namespaces=false). Only namespaces perfspec labelled "
            "(app.kubernetes.io/managed-by=perfspec) and named <prefix>-<rep>-<pos>-<chart> are "
            "ever touched.",
        ),
    ] = False,
    skip: Annotated[
        list[str] | None, typer.Option("--skip", help="Leave out a chart (name or repo/name); repeatable.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N charts.")] = None,
    shuffle_seed: Annotated[
        int | None, typer.Option("--shuffle-seed", help="Shuffle the chart order with this seed.")
    ] = None,
    repetitions: Annotated[
        int | None, typer.Option("--repetitions", min=1, help="Run the sequence N times.")
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            help="batch (install all, then uninstall all; the paper) "
            "or pairwise (install then uninstall each chart).",
        ),
    ] = None,
    install_timeout: Annotated[
        int | None, typer.Option("--install-timeout", min=1, help="helm --timeout, seconds.")
    ] = None,
    retries: Annotated[
        int | None, typer.Option("--retries", min=0, help="Retries of a failing install.")
    ] = None,
    pause_install: Annotated[
        float | None, typer.Option("--pause-install", min=0, help="Seconds after an install.")
    ] = None,
    pause_uninstall: Annotated[
        float | None, typer.Option("--pause-uninstall", min=0, help="Seconds after an uninstall.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Campaign folder (default: <data_dir>/raw/<name>).")
    ] = None,
    receive: Annotated[
        bool,
        typer.Option(
            "--receive",
            help="Also run the audit webhook receiver (receiver "
            "settings: host/port/token/TLS) writing into the campaign folder.",
        ),
    ] = False,
    receiver_dir: Annotated[
        Path | None,
        typer.Option(
            "--receiver-dir",
            help="Folder where `perfspec receive` writes this campaign's events; labels.jsonl is "
            "built from it.",
        ),
    ] = None,
) -> None:
    """Run a Helm install/uninstall campaign on a test cluster and write raw/<name>/manifest.json."""
    from perfspec.collect.plan import plan_steps
    from perfspec.collect.spec import load_campaign

    settings = _settings()
    if mode is not None and mode not in ("batch", "pairwise"):
        raise InputError(f"--mode must be batch or pairwise, not {mode!r}")
    if as_json and not dry_run:
        raise InputError("--json only goes with --dry-run")
    overrides = {
        "skip": tuple(skip or ()) or None,
        "limit": limit,
        "shuffle_seed": shuffle_seed,
        "repetitions": repetitions,
        "mode": mode,
        "install_timeout_seconds": install_timeout,
        "install_retries": retries,
        "pause_after_install_seconds": pause_install,
        "pause_after_uninstall_seconds": pause_uninstall,
        "delete_leftover_namespaces": False if keep_leftover_namespaces else None,
    }
    if name is None and not dry_run:
        name = f"{charts.stem}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    spec = load_campaign(charts, settings.collect, name=name, **overrides)
    steps = plan_steps(spec)
    if dry_run:
        _print_plan(spec, steps, as_json)
        return
    _run(spec, steps, settings, _Target(helm, kubeconfig, skip_cluster_check, out, receive, receiver_dir))


@dataclass(frozen=True)
class _Target:
    """Where a campaign runs and writes: helm, cluster access, output folder, audit intake."""

    helm: str | None
    kubeconfig: Path | None
    skip_cluster_check: bool
    out: Path | None
    receive: bool
    receiver_dir: Path | None


def _run(spec: Any, steps: list[Any], settings: Any, target: _Target) -> None:
    """Run the campaign; with ``--receive`` the receiver runs beside it and its events are labelled."""
    from rich.console import Console

    from perfspec.collect.campaign import run_campaign
    from perfspec.collect.cluster import make_cluster_client
    from perfspec.collect.helm import make_helm_driver

    collect_settings = settings.collect
    kube = target.kubeconfig or collect_settings.kubeconfig
    out_dir = target.out or settings.paths.raw_dir / spec.name
    driver = make_helm_driver(target.helm or collect_settings.helm, kube, collect_settings.helm_grace_seconds)
    cluster = (
        None
        if target.skip_cluster_check
        else make_cluster_client(kube, collect_settings.cluster_request_timeout_seconds)
    )
    err = Console(stderr=True)
    receiver = _start_receiver(settings, out_dir, err) if target.receive else None
    receiver_dir = None if receiver is not None else target.receiver_dir  # labelled after the drain below
    try:
        with _progress(err, len(steps)) as progress:
            result = run_campaign(spec, out_dir, driver, cluster, receiver_dir, progress=progress)
    finally:
        if receiver is not None:
            _stop_receiver(receiver, settings.receiver.drain_seconds if sys.exc_info()[0] is None else 0, err)
    if receiver is not None:
        from perfspec.collect.labels import record_labels

        summary = record_labels(result.manifest_path, out_dir)
        err.print(f"labelled {summary['labelled']} of {summary['events']} events by step")
    typer.echo(
        f"campaign {result.name}: {result.status}; installs ok {result.installs_ok}, failed "
        f"{result.installs_failed}; uninstalls ok {result.uninstalls_ok}, failed {result.uninstalls_failed}; "
        f"cleanup uninstalls {result.cleanup_uninstalls}; skipped (done before) {result.steps_skipped}"
        + (f"; labelled events {result.labelled_events}" if result.labelled_events is not None else "")
    )
    typer.echo(f"manifest: {result.manifest_path}")
    if result.status == "interrupted":
        raise typer.Exit(130)


def receive(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for audit-NNNNNN.jsonl (e.g. perfspec-data/raw/<name>).")
    ],
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Address to bind (default 127.0.0.1). A non-loopback address needs --token (refused "
            "otherwise, unless --insecure) and should have --tls-cert/--tls-key (warned otherwise).",
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=0, max=65535, help="Port (default 9444; 0 = any).")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="PERFSPEC_RECEIVER__TOKEN",
            help="Require 'Authorization: Bearer TOKEN' (401 otherwise).",
            show_envvar=True,
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="Serve HTTPS with this PEM certificate.")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="Private key (PEM) of --tls-cert.")
    ] = None,
    max_body: Annotated[
        int | None,
        typer.Option("--max-body", min=1, help="Largest accepted body in bytes (413 above; default 16 MiB)."),
    ] = None,
    path: Annotated[
        str | None,
        typer.Option(
            "--path", help="The URL path that takes POSTs (default /audit, as deployments/kind renders it)."
        ),
    ] = None,
    rotate_bytes: Annotated[
        int | None,
        typer.Option("--rotate-bytes", min=1, help="Start a new file past this size (default 256 MiB)."),
    ] = None,
    drop_bodies: Annotated[
        bool | None,
        typer.Option(
            "--drop-bodies/--keep-bodies",
            help="Strip requestObject/responseObject (default: drop; they can hold Secrets).",
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Allow a non-loopback --host without --token (anyone who can reach the port can "
            "write events).",
        ),
    ] = False,
) -> None:
    """Receive audit events from the API server's webhook backend (EventList POSTs) until SIGTERM/Ctrl-C."""
    from perfspec.collect.receiver import AuditReceiver, check_exposure

    settings = _settings().with_section(
        "receiver",
        host=host,
        port=port,
        token=token,
        tls_cert=tls_cert,
        tls_key=tls_key,
        max_body_bytes=max_body,
        path=path,
        rotate_bytes=rotate_bytes,
        drop_bodies=drop_bodies,
    )
    warnings = check_exposure(settings.receiver, insecure)  # raises for an exposed, token-less bind
    receiver = AuditReceiver(out, settings.receiver, max_line_bytes=settings.clean.max_line_bytes)
    for warning in warnings:
        typer.echo(warning, err=True)
    stop = threading.Event()
    with on_stop_signals(lambda _name: stop.set()):
        receiver.start()
        typer.echo(
            f"listening on {receiver.post_url}, writing to {out} (Ctrl-C or SIGTERM to stop)", err=True
        )
        sys.stderr.flush()
        try:
            _show_receiver(receiver, stop)
        finally:
            stats = receiver.stop()
    typer.echo(json.dumps({"stopped": True, **stats}))


def _show_receiver(receiver: Any, stop: threading.Event) -> None:
    """Until ``stop``: a live status line on a terminal, nothing otherwise (logs stay clean)."""
    if sys.stderr.isatty():
        from rich.console import Console

        with Console(stderr=True).status("") as status:
            while not stop.wait(1.0):
                s = receiver.stats.snapshot()
                status.update(
                    f"{s['events']} events in {s['batches']} batches, "
                    f"{s['rejected_bodies']} rejected, file {receiver.sink.current_name}"
                )
    else:
        stop.wait()


def tail_audit(
    log: Annotated[Path, typer.Option("--log", help="The API server's --audit-log-path file to follow.")],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for audit-NNNNNN.jsonl (same layout as `receive`).")
    ],
    state: Annotated[
        Path | None, typer.Option("--state", help="Offset file for resuming (default: OUT/tail-state.json).")
    ] = None,
    interval: Annotated[float, typer.Option("--interval", min=0.01, help="Seconds between polls.")] = 0.5,
    once: Annotated[
        bool, typer.Option("--once", help="Copy what is there now and exit (no following).")
    ] = False,
    drop_bodies: Annotated[
        bool | None,
        typer.Option(
            "--drop-bodies/--keep-bodies",
            help="Strip requestObject/responseObject from copied lines (default: drop, as `receive`; "
            "settings receiver.drop_bodies). They can hold Secrets.",
        ),
    ] = None,
) -> None:
    """Follow an audit log file (log backend) through rotation and truncation into OUT, resumably."""
    from perfspec.collect.sink import JsonlSink
    from perfspec.collect.tailer import LogTailer

    settings = _settings()
    sink = JsonlSink(out, settings.receiver.rotate_bytes, prefix="audit")
    drop = settings.receiver.drop_bodies if drop_bodies is None else drop_bodies
    tailer = LogTailer(log, state or out / "tail-state.json", sink, drop_bodies=drop)
    stop = threading.Event()
    with on_stop_signals(lambda _name: stop.set()):
        try:
            if once:
                tailer.poll()
            else:
                typer.echo(f"following {log} into {out} (Ctrl-C or SIGTERM to stop)", err=True)
                tailer.follow(stop, interval)
        finally:
            sink.close()
    typer.echo(json.dumps(tailer.stats()))


def label(
    campaign: Annotated[Path, typer.Argument(help="Campaign folder holding manifest.json.")],
    audit_dir: Annotated[
        Path | None,
        typer.Option("--audit-dir", help="Where the audit-*.jsonl files are (default: the campaign folder)."),
    ] = None,
) -> None:
    """Link each received audit event to the campaign step running when it arrived (labels.jsonl)."""
    from perfspec.collect.labels import record_labels
    from perfspec.collect.manifest import MANIFEST_NAME

    manifest = campaign / MANIFEST_NAME
    if not manifest.is_file():
        raise InputError(f"no {MANIFEST_NAME} in {campaign}", hint="run `perfspec collect` first")
    summary = record_labels(manifest, audit_dir or campaign)
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "per_step"}))


def register(app: typer.Typer) -> None:
    """Add this layer's subcommands to the ``perfspec`` app."""
    app.command("collect")(collect)
    app.command("receive")(receive)
    app.command("tail-audit")(tail_audit)
    app.command("label")(label)
