"""Screenshots of the MLflow UI pages a change affects, as a person sees them (headless Chromium).

Why a script: the runs table, a sweep's parent run and the compare page of its children are where users
judge the learning results; looking at them after a change catches what no assertion does (hidden
columns, unreadable names, empty plots). ``make screenshots`` starts ``mlflow server`` on 127.0.0.1 over
the data dir's store, shoots each page with ``chromium --headless --screenshot`` and stops the server.

    .venv/bin/python scripts/screenshots.py --data-dir perfspec-data --out screenshots/
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
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
    port = _free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            uri,
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **ENV},
    )
    base = f"http://127.0.0.1:{port}"
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        _wait(f"{base}/health")
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
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
