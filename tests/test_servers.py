"""Real servers on 127.0.0.1: `prefect server start` and `mlflow server` as subprocesses, `perfspec deploy`
registers deployments/prefect.yaml (nightly cron in a configured time zone), and a run triggered
through the API is executed by a real process worker and reaches the MLflow server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"{url} not healthy after {timeout} s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def _server(cmd: list[str], env: dict[str, str], log: Path, health: str) -> Iterator[subprocess.Popen]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(health, proc, log)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its workers only
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def server_env() -> dict[str, str]:
    """This process's environment without Prefect/MLflow/perfspec settings, telemetry off."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "PERFSPEC_"))}
    return base | {
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def prefect_server_command(port: int) -> list[str]:
    return [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]


def mlflow_server_command(port: int, backend: str, root: Path) -> list[str]:
    """`mlflow server` on loopback with ``backend`` as its store and artifacts under ``root``."""
    return [
        str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", backend,
        "--artifacts-destination", str(root / "mlflow-artifacts"), "--workers", "1",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("servers")
    base = server_env()
    prefect_port, mlflow_port = _free_port(), _free_port()
    prefect_env = base | {"PREFECT_HOME": str(root / "prefect-server"), "PREFECT_UI_ENABLED": "false"}
    mlflow_cmd = mlflow_server_command(mlflow_port, f"sqlite:///{root / 'mlflow.db'}", root)
    prefect_cmd = prefect_server_command(prefect_port)
    with (
        _server(
            prefect_cmd, prefect_env, root / "prefect.log", f"http://127.0.0.1:{prefect_port}/api/health"
        ),
        _server(mlflow_cmd, base, root / "mlflow.log", f"http://127.0.0.1:{mlflow_port}/health"),
    ):
        yield base | {
            "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
            "PREFECT_HOME": str(root / "prefect-client"),
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
            "PERFSPEC_PATHS__DATA_DIR": str(root / "data"),
            "PERFSPEC_PREFECT__WORK_POOL": "perfspec-test",
            "PERFSPEC_PREFECT__TIMEZONE": "Europe/Paris",
        }


def _client(env: dict[str, str]):
    import prefect.settings
    from prefect.client.orchestration import get_client

    stack = contextlib.ExitStack()
    stack.enter_context(
        prefect.settings.temporary_settings(
            updates={prefect.settings.PREFECT_API_URL: env["PREFECT_API_URL"]}
        )
    )
    return stack, get_client(sync_client=True)


def test_deploy_creates_the_deployments_with_their_schedule(servers: dict[str, str]) -> None:
    done = subprocess.run(
        [str(BIN / "perfspec"), "deploy"], env=servers, cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    stack, client = _client(servers)
    with stack, client:
        nightly = client.read_deployment_by_name("pipeline/nightly-retrain")
        [schedule] = nightly.schedules
        assert schedule.schedule.cron == "0 2 * * *" and schedule.schedule.timezone == "Europe/Paris"
        assert schedule.active and nightly.work_pool_name == "perfspec-test"
        assert nightly.global_concurrency_limit is not None and nightly.global_concurrency_limit.limit == 1
        assert nightly.concurrency_options.collision_strategy == "ENQUEUE"
        collect = client.read_deployment_by_name("collect/on-demand")
        assert collect.schedules == [] and collect.work_pool_name == "perfspec-test"
        pool = client.read_work_pool("perfspec-test")
        assert pool.type == "process"
        # the server's scheduler turns the cron into runs at 02:00 Paris time
        deadline = time.monotonic() + 30
        scheduled = []
        while not scheduled and time.monotonic() < deadline:
            scheduled = client.get_scheduled_flow_runs_for_deployments([nightly.id])
            time.sleep(1)
        if (
            scheduled
        ):  # the scheduler loop may not have run yet on a busy machine; the schedule is asserted above
            from zoneinfo import ZoneInfo

            local = scheduled[0].expected_start_time.astimezone(ZoneInfo("Europe/Paris"))
            assert (local.hour, local.minute) == (2, 0)


def test_a_run_triggered_through_the_api_completes_on_a_worker(servers: dict[str, str]) -> None:
    from prefect.client.schemas.filters import FlowRunFilter  # noqa: F401 (import check for the client)

    stack, client = _client(servers)
    with stack, client:
        deployment = client.read_deployment_by_name("healthcheck/check")
        run = client.create_flow_run_from_deployment(deployment.id)
    worker = subprocess.run(
        [
            str(BIN / "prefect"),
            "worker",
            "start",
            "--pool",
            "perfspec-test",
            "--type",
            "process",
            "--run-once",
        ],
        env=servers,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    stack, client = _client(servers)
    with stack, client:
        deadline = time.monotonic() + 60
        state = client.read_flow_run(run.id).state
        while not state.is_final() and time.monotonic() < deadline:
            time.sleep(1)
            state = client.read_flow_run(run.id).state
    assert state.is_completed(), f"{state!r}\n{worker.stdout[-3000:]}\n{worker.stderr[-3000:]}"

    # the flow ran in the worker's subprocess with the servers' environment
    assert (Path(servers["PERFSPEC_PATHS__DATA_DIR"]) / "healthcheck.json").is_file()
    from mlflow import MlflowClient

    mlflow = MlflowClient(servers["MLFLOW_TRACKING_URI"])
    experiment = mlflow.get_experiment_by_name("perfspec-healthcheck")
    assert experiment is not None
    assert len(mlflow.search_runs([experiment.experiment_id])) == 1
