"""Screenshots of the MLflow UI pages a change affects, as a person sees them (headless Chromium).

Why a script: the runs table, a sweep's parent run and the compare page of its children are where users
judge the learning results; looking at them after a change catches what no assertion does (hidden
columns, unreadable names, empty plots). ``make screenshots`` starts ``mlflow server`` on 127.0.0.1 over
the data dir's store (and ``prefect server`` over the data dir's embedded Prefect database, when a flow
has run there), shoots each page with ``chromium --headless --screenshot`` and stops the servers.

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


def shoot(url: str, target: Path, size: str = "1600,1000") -> Path:
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
            "--virtual-time-budget=15000",
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
    parent = next((r for r in runs if r.data.tags.get("perfspec.kind") == "sweep"), runs[0] if runs else None)
    children = [r for r in runs if parent and r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    args.out.mkdir(parents=True, exist_ok=True)
    command = ["mlflow", "server", "--backend-store-uri", uri, "--workers", "1"]
    with _server(command, "/health", {**os.environ, **ENV}) as base:
        exp = experiment.experiment_id
        pages = {"runs-table.png": f"{base}/#/experiments/{exp}/runs?workflowType=machine_learning"}
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
            print(shoot(url, args.out / name))
    prefect_pages(args.data_dir, args.out)


def prefect_pages(data_dir: Path, out: Path) -> None:
    """The latest ``pipeline`` flow run and its summary artifact, from the embedded Prefect database."""
    home = (data_dir / "prefect").resolve()
    if not any(home.glob("*.db")):
        print(f"(no Prefect database under {home}: skipping the Prefect pages)")
        return
    env = {**os.environ, **ENV, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    with _server(["prefect", "server", "start"], "/api/health", env, startup=120) as base:
        import json

        request = urllib.request.Request(
            f"{base}/api/flow_runs/filter",
            data=json.dumps({"sort": "START_TIME_DESC", "limit": 20}).encode(),
            headers={"Content-Type": "application/json"},
        )
        runs = json.loads(urllib.request.urlopen(request, timeout=30).read())
        flows = {}
        for run in runs:
            flow = json.loads(urllib.request.urlopen(f"{base}/api/flows/{run['flow_id']}", timeout=30).read())
            flows.setdefault(flow["name"], run["id"])
        if "pipeline" in flows:
            print(shoot(f"{base}/runs/flow-run/{flows['pipeline']}", out / "prefect-pipeline-run.png"))
        print(
            shoot(f"{base}/artifacts/key/pipeline-summary", out / "prefect-pipeline-summary.png", "1600,1600")
        )


if __name__ == "__main__":
    main()
