"""CLI commands of the collection layer: ``collect`` (Helm campaigns), ``receive`` (audit webhook),
``tail-audit`` (log-file backend) and ``label`` (events -> campaign steps)."""

from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from perfspec.errors import InputError


def _settings() -> Any:
    from perfspec.settings import get_settings

    return get_settings()


def _print_plan(spec: Any, steps: list[Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in steps], indent=2))
        return
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=160)  # piped: do not wrap names
    names = Counter(c.name for c in spec.charts)
    shared = sorted(n for n, k in names.items() if k > 1)
    pauses = sum(s.pause_after_seconds for s in steps)
    order = "as listed" if spec.shuffle_seed is None else f"shuffled (seed {spec.shuffle_seed})"
    table = Table(title=f"campaign {spec.name}: {len(steps)} steps", show_lines=False)
    for column in ("#", "action", "chart", "version", "release = namespace", "timeout", "pause"):
        table.add_column(column, justify="right" if column in ("#", "timeout", "pause") else "left")
    for s in steps:
        table.add_row(
            str(s.index),
            s.action,
            s.chart.key,
            s.chart.version or "-",
            s.release,
            f"{s.timeout_seconds}s",
            f"{s.pause_after_seconds:g}s",
        )
    console.print(table)
    console.print(
        f"{len(spec.charts)} charts x {spec.repetitions} repetition(s), mode {spec.mode}, "
        f"order {order}"
        + (f"; skipped: {', '.join(spec.skipped)}" if spec.skipped else "")
        + (f"; names shared by two repos (kept apart): {', '.join(shared)}" if shared else "")
    )
    console.print(f"pauses alone take {pauses / 60:.1f} min; dry run: nothing was touched.")


def collect(
    charts: Path = typer.Option(
        ...,
        "--charts",
        help="Charts file: Artifact Hub JSON (sample/helm-charts.json) "
        "or a YAML/JSON list of {name, repo, version}.",
    ),
    name: str | None = typer.Option(
        None,
        "--name",
        help="Campaign name (folder raw/<name>/). Default: "
        "<file stem>-<UTC time>. An existing campaign of that name is resumed.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and exit; touches nothing."),
    as_json: bool = typer.Option(
        False, "--json", help="With --dry-run: print the plan as a JSON list of steps."
    ),
    helm: str | None = typer.Option(None, "--helm", help="The helm executable (default: settings, 'helm')."),
    kubeconfig: Path | None = typer.Option(
        None,
        "--kubeconfig",
        help="Kubeconfig for helm and the checks (default: $KUBECONFIG or ~/.kube/config).",
    ),
    skip_cluster_check: bool = typer.Option(
        False,
        "--skip-cluster-check",
        help="Do not contact the API server before starting (no version "
        "record, no leftover cleanup, namespaces created by helm unlabelled).",
    ),
    keep_leftover_namespaces: bool = typer.Option(
        False,
        "--keep-leftover-namespaces",
        help="Do not uninstall releases / delete namespaces that earlier campaigns left behind "
        "(settings collect.delete_leftover_namespaces=false). Only namespaces perfspec labelled "
        "(app.kubernetes.io/managed-by=perfspec) and named <prefix>-<rep>-<pos>-<chart> are ever touched.",
    ),
    skip: list[str] = typer.Option([], "--skip", help="Leave out a chart (name or repo/name); repeatable."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N charts."),
    shuffle_seed: int | None = typer.Option(
        None, "--shuffle-seed", help="Shuffle the chart order with this seed."
    ),
    repetitions: int | None = typer.Option(None, "--repetitions", min=1, help="Run the sequence N times."),
    mode: str | None = typer.Option(
        None,
        "--mode",
        help="batch (install all, then uninstall all; the paper) "
        "or pairwise (install then uninstall each chart).",
    ),
    install_timeout: int | None = typer.Option(
        None, "--install-timeout", min=1, help="helm --timeout, seconds."
    ),
    retries: int | None = typer.Option(None, "--retries", min=0, help="Retries of a failing install."),
    pause_install: float | None = typer.Option(
        None, "--pause-install", min=0, help="Seconds after an install."
    ),
    pause_uninstall: float | None = typer.Option(
        None, "--pause-uninstall", min=0, help="Seconds after an uninstall."
    ),
    out: Path | None = typer.Option(None, "--out", help="Campaign folder (default: <data_dir>/raw/<name>)."),
    receive: bool = typer.Option(
        False,
        "--receive",
        help="Also run the audit webhook receiver (receiver "
        "settings: host/port/token/TLS) writing into the campaign folder.",
    ),
    receiver_dir: Path | None = typer.Option(
        None,
        "--receiver-dir",
        help="Folder where `perfspec receive` writes this campaign's events; labels.jsonl is built from it.",
    ),
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
        "skip": tuple(skip) or None,
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
    _run(spec, steps, settings, helm, kubeconfig, skip_cluster_check, out, receive, receiver_dir)


def _run(
    spec: Any,
    steps: list[Any],
    settings: Any,
    helm: str | None,
    kubeconfig: Path | None,
    skip_cluster_check: bool,
    out: Path | None,
    receive: bool,
    receiver_dir: Path | None,
) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from perfspec.collect.campaign import run_campaign
    from perfspec.collect.cluster import make_cluster_client
    from perfspec.collect.helm import make_helm_driver

    collect_settings = settings.collect
    kube = kubeconfig or collect_settings.kubeconfig
    out_dir = out or settings.paths.raw_dir / spec.name
    driver = make_helm_driver(helm or collect_settings.helm, kube, collect_settings.helm_grace_seconds)
    cluster = (
        None
        if skip_cluster_check
        else make_cluster_client(kube, collect_settings.cluster_request_timeout_seconds)
    )
    receiver = None
    console = Console(stderr=True)
    err = Console(stderr=True)
    if receive:
        from perfspec.collect.receiver import AuditReceiver, check_exposure

        for warning in check_exposure(settings.receiver):
            err.print(warning, highlight=False, markup=False)
        receiver = AuditReceiver(out_dir, settings.receiver).start()
        receiver_dir = None  # labelled below, once the API server's last batch has arrived
    if receiver is not None:
        err.print(f"receiving audit events at {receiver.post_url} into {out_dir}")
    try:
        if console.is_terminal:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as bar:
                task = bar.add_task("starting", total=len(steps))

                def progress(kind: str, record: dict[str, Any]) -> None:
                    label = f"{record['action']} {record['chart_key']} ({record['kind']})"
                    if kind == "start":
                        bar.update(task, description=label)
                    elif record["kind"] == "planned":
                        bar.advance(task)

                result = run_campaign(spec, out_dir, driver, cluster, receiver_dir, progress=progress)
        else:

            def progress(kind: str, record: dict[str, Any]) -> None:
                if kind == "end":
                    err.print(
                        f"[{record['kind']}] {record['action']} {record['chart_key']} "
                        f"{record['release']}: {record['result']}"
                        + (f" ({record['error']})" if record["error"] else ""),
                        highlight=False,
                        markup=False,
                    )

            result = run_campaign(spec, out_dir, driver, cluster, receiver_dir, progress=progress)
    finally:
        if receiver is not None:
            if sys.exc_info()[0] is None:
                import time

                time.sleep(settings.receiver.drain_seconds)  # the API server flushes batches every <= 5 s
            stats = receiver.stop()
            err.print(
                f"receiver: {stats['events']} events in {len(stats['files'])} file(s), "
                f"{stats['rejected_bodies']} rejected bodies"
            )
    if receiver is not None:
        from perfspec.collect.campaign import load_manifest
        from perfspec.collect.labels import label_campaign
        from perfspec.fileio import write_json_atomic

        summary = label_campaign(result.manifest_path, out_dir, out_dir / "labels.jsonl")
        manifest = load_manifest(result.manifest_path)
        manifest["labels"] = summary
        write_json_atomic(result.manifest_path, manifest)
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
    host: str | None = typer.Option(
        None,
        "--host",
        help="Address to bind (default 127.0.0.1). A non-loopback address needs --token (refused "
        "otherwise, unless --insecure) and should have --tls-cert/--tls-key (warned otherwise).",
    ),
    port: int | None = typer.Option(None, "--port", min=0, max=65535, help="Port (default 9444; 0 = any)."),
    out: Path = typer.Option(
        ..., "--out", help="Folder for audit-NNNNNN.jsonl (e.g. perfspec-data/raw/<name>)."
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="PERFSPEC_RECEIVER__TOKEN",
        help="Require 'Authorization: Bearer TOKEN' (401 otherwise).",
        show_envvar=True,
    ),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="Serve HTTPS with this PEM certificate."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="Private key (PEM) of --tls-cert."),
    max_body: int | None = typer.Option(
        None, "--max-body", min=1, help="Largest accepted body in bytes (413 above; default 16 MiB)."
    ),
    path: str | None = typer.Option(
        None, "--path", help="The URL path that takes POSTs (default /audit, as deployments/kind renders it)."
    ),
    rotate_bytes: int | None = typer.Option(
        None, "--rotate-bytes", min=1, help="Start a new file past this size (default 256 MiB)."
    ),
    drop_bodies: bool | None = typer.Option(
        None,
        "--drop-bodies/--keep-bodies",
        help="Strip requestObject/responseObject (default: drop; they can hold Secrets).",
    ),
    insecure: bool = typer.Option(
        False,
        "--insecure",
        help="Allow a non-loopback --host without --token (anyone who can reach the port can write events).",
    ),
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
    receiver = AuditReceiver(out, settings.receiver)
    for warning in warnings:
        typer.echo(warning, err=True)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    receiver.start()
    typer.echo(f"listening on {receiver.post_url}, writing to {out} (Ctrl-C or SIGTERM to stop)", err=True)
    sys.stderr.flush()
    try:
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
    finally:
        stats = receiver.stop()
        for sig, old in previous.items():
            signal.signal(sig, old)
    typer.echo(json.dumps({"stopped": True, **stats}))


def tail_audit(
    log: Path = typer.Option(..., "--log", help="The API server's --audit-log-path file to follow."),
    out: Path = typer.Option(..., "--out", help="Folder for audit-NNNNNN.jsonl (same layout as `receive`)."),
    state: Path | None = typer.Option(
        None, "--state", help="Offset file for resuming (default: OUT/tail-state.json)."
    ),
    interval: float = typer.Option(0.5, "--interval", min=0.01, help="Seconds between polls."),
    once: bool = typer.Option(False, "--once", help="Copy what is there now and exit (no following)."),
    drop_bodies: bool | None = typer.Option(
        None,
        "--drop-bodies/--keep-bodies",
        help="Strip requestObject/responseObject from copied lines (default: drop, as `receive`; "
        "settings receiver.drop_bodies). They can hold Secrets.",
    ),
) -> None:
    """Follow an audit log file (log backend) through rotation and truncation into OUT, resumably."""
    from perfspec.collect.sink import JsonlSink
    from perfspec.collect.tailer import LogTailer

    settings = _settings()
    sink = JsonlSink(out, settings.receiver.rotate_bytes, prefix="audit")
    drop = settings.receiver.drop_bodies if drop_bodies is None else drop_bodies
    tailer = LogTailer(log, state or out / "tail-state.json", sink, drop_bodies=drop)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if once:
            tailer.poll()
        else:
            typer.echo(f"following {log} into {out} (Ctrl-C or SIGTERM to stop)", err=True)
            tailer.follow(stop, interval)
    finally:
        sink.close()
        for sig, old in previous.items():
            signal.signal(sig, old)
    typer.echo(json.dumps(tailer.stats()))


def label(
    campaign: Path = typer.Argument(..., help="Campaign folder holding manifest.json."),
    audit_dir: Path | None = typer.Option(
        None, "--audit-dir", help="Where the audit-*.jsonl files are (default: the campaign folder)."
    ),
) -> None:
    """Link each received audit event to the campaign step running when it arrived (labels.jsonl)."""
    from perfspec.collect.labels import label_campaign

    manifest = campaign / "manifest.json"
    if not manifest.is_file():
        raise InputError(f"no manifest.json in {campaign}", hint="run `perfspec collect` first")
    summary = label_campaign(manifest, audit_dir or campaign, campaign / "labels.jsonl")
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "per_step"}))


def register(app: typer.Typer) -> None:
    """Add this layer's subcommands to the ``perfspec`` app."""
    app.command("collect")(collect)
    app.command("receive")(receive)
    app.command("tail-audit")(tail_audit)
    app.command("label")(label)
