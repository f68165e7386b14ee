"""Screenshots of the MLflow and Prefect UI pages a change affects, as a person sees them (headless Chromium).

Why a script: the runs table, a run page, the compare page and the Prefect flow runs are where users judge
the learning results; looking at them after a change catches what no assertion does (hidden columns,
unreadable or identical names, a duration of 0.7 s, empty plots, a progress bar stuck at 65 %). ``make
screenshots`` starts ``mlflow server`` on 127.0.0.1 over the data dir's store (and ``prefect server`` over
the data dir's embedded Prefect database, when a flow has run there), shoots each page with ``chromium
--headless --screenshot`` and stops the servers. Pages (``--out``):

- ``runs-table.png`` (the experiment's runs: names, status, duration), ``latest-run.png`` (run page: tags,
  description, registered version), ``latest-run-metrics.png`` (its model metrics),
  ``latest-run-distribution.png`` (the action distribution logged with it), ``compare-latest.png`` (the
  compare page of the two latest runs of the same stream kind: what changed, side by side);
- for the latest sweep: ``parent-run.png``, ``parent-artifacts.png``, ``compare-children.png``;
- ``registered-model.png``;
- Prefect: ``prefect-runs.png`` (flow runs: names and tags), ``prefect-pipeline-run.png``,
  ``prefect-train-run.png``, and one page per artifact of the latest runs (``prefect-artifact-<key>.png``:
  pipeline-summary, topk-metrics, training-progress, effective-settings).

    .venv/bin/python scripts/screenshots.py --data-dir perfspec-data --out screenshots/
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"error: {url} did not answer within {seconds:.0f} s")


@contextlib.contextmanager
def _server(command: list[str], health: str, env: dict[str, str], startup: float = 60) -> Iterator[str]:
    """``command`` (a program of this venv) on a free loopback port until the block ends; yields its URL."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**env, "PREFECT_UI_API_URL": f"{base}/api"}  # the Prefect UI asks its API here; MLflow ignores it
    program = [
        str(Path(sys.executable).parent / command[0]),
        *command[1:],
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(program, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        _wait(f"{base}{health}", startup)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def shoot(url: str, target: Path, size: str = "1600,1000", budget_ms: int = 15000) -> Path:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("error: no Chromium found\n  hint: apt-get install chromium")
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={size}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={target}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("perfspec-data"))
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    args = parser.parse_args(argv)
    db = (args.data_dir / "mlflow" / "mlflow.db").resolve()
    if not db.is_file():
        raise SystemExit(f"error: no MLflow store at {db}\n  hint: run `make run` or `perfspec sweep` first")
    os.environ.update(ENV)
    from mlflow import MlflowClient

    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("perfspec")
    if experiment is None:
        raise SystemExit("error: no 'perfspec' experiment in the store\n  hint: train a model first")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    parent = next((r for r in runs if r.data.tags.get("perfspec.kind") == "sweep"), None)
    children = [r for r in runs if parent and r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    top_level = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    # the global model's runs first (the pipeline also trains a per-actor model after it)
    latest = next((r for r in top_level if r.data.tags.get("streams", "global") == "global"), None)
    latest = latest or (top_level[0] if top_level else None)
    same_kind = [
        r
        for r in top_level
        if latest is not None
        and r.data.tags.get("streams") == latest.data.tags.get("streams")
        and r.data.tags.get("perfspec.kind") == latest.data.tags.get("perfspec.kind")
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    command = ["mlflow", "server", "--backend-store-uri", uri, "--workers", "1"]
    with _server(command, "/health", {**os.environ, **ENV}) as base:
        exp = experiment.experiment_id
        pages = {"runs-table.png": f"{base}/#/experiments/{exp}/runs?workflowType=machine_learning"}
        if latest is not None:
            run_url = f"{base}/#/experiments/{exp}/runs/{latest.info.run_id}"
            pages["latest-run.png"] = run_url
            pages["latest-run-metrics.png"] = f"{run_url}/model-metrics"
            pages["latest-run-distribution.png"] = f"{run_url}/artifacts/plots/distribution.png"
        if len(same_kind) >= 2:
            ids = ",".join(f'"{r.info.run_id}"' for r in same_kind[:2])
            pages["compare-latest.png"] = f'{base}/#/compare-runs?runs=[{ids}]&experiments=["{exp}"]'
        if parent is not None:
            pages["parent-run.png"] = f"{base}/#/experiments/{exp}/runs/{parent.info.run_id}"
            pages["parent-artifacts.png"] = (
                f"{base}/#/experiments/{exp}/runs/{parent.info.run_id}/artifacts/plots/coverage.png"
            )
        if children:
            ids = ",".join(f'"{r.info.run_id}"' for r in children[:8])
            pages["compare-children.png"] = f'{base}/#/compare-runs?runs=[{ids}]&experiments=["{exp}"]'
        pages["registered-model.png"] = f"{base}/#/models/perfspec"
        for name, url in pages.items():
            # the compare page is long: its Artifacts section (plots side by side) is at the bottom
            size = (
                "1800,4200"
                if name.startswith("compare")
                else "1800,1800"
                if name == "latest-run.png"
                else None
            )
            print(shoot(url, args.out / name, size or "1800,1000"))
    prefect_pages(args.data_dir, args.out)


def _api(base: str, path: str, body: dict | None = None) -> Any:
    """One call to the Prefect server's REST API (POST with ``body``, else GET)."""
    import json

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base}/api{path}", data=data, headers={"Content-Type": "application/json"}
    )
    return json.loads(urllib.request.urlopen(request, timeout=30).read())


def prefect_pages(data_dir: Path, out: Path) -> None:
    """The latest ``pipeline`` flow run and its summary artifact, from the embedded Prefect database."""
    home = (data_dir / "prefect").resolve()
    if not any(home.glob("*.db")):
        print(f"(no Prefect database under {home}: skipping the Prefect pages)")
        return
    env = {**os.environ, **ENV, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    with _server(["prefect", "server", "start"], "/api/health", env, startup=120) as base:
        runs = _api(base, "/flow_runs/filter", {"sort": "START_TIME_DESC", "limit": 50})
        latest: dict[str, str] = {}
        for run in runs:
            flow = _api(base, f"/flows/{run['flow_id']}")
            latest.setdefault(flow["name"], run["id"])
        print(shoot(f"{base}/runs", out / "prefect-runs.png", "1800,1100", budget_ms=60000))
        for flow_name in ("pipeline", "train"):
            if flow_name in latest:
                target = out / f"prefect-{flow_name}-run.png"
                print(shoot(f"{base}/runs/flow-run/{latest[flow_name]}", target, "1800,1100"))
        # the newest version of each artifact key, on its own page (the key page can render empty)
        artifacts = _api(base, "/artifacts/filter", {"sort": "CREATED_DESC", "limit": 200})
        shot: set[str] = set()
        for artifact in artifacts:
            key = artifact.get("key")
            if not key or key in shot:
                continue
            shot.add(key)
            target = out / f"prefect-artifact-{key}.png"
            print(shoot(f"{base}/artifacts/artifact/{artifact['id']}", target, "1800,1600"))


if __name__ == "__main__":
    main()
