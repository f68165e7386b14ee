"""docker-compose.yml validates against the Compose Specification and wires the servers together.

No Docker engine runs here, so the file is checked statically: the vendored JSON schema of the
Compose Specification (tests/data/compose-spec.json), plus the wiring the flows rely on.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "tests" / "data" / "compose-spec.json").read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_file_validates_against_the_compose_spec(compose: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert _errors(compose) == []


def test_the_schema_check_rejects_a_broken_file(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["mlflow"]["healthcheck"]["retrys"] = 3  # typo'd key
    broken["services"]["worker"]["depends_on"]["mlflow"]["condition"] = "service_ready"  # not an enum value
    errors = _errors(broken)
    assert any("retrys" in e for e in errors)
    assert any("service_ready" in e or "depends_on" in e for e in errors)


def test_services_the_flows_need_are_there_with_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "prefect-server", "mlflow", "worker"):
        assert name in services, name
        assert "healthcheck" in services[name], f"{name} has no health check"
    # every depends_on points at a real service, and servers are awaited until healthy
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if dep in ("postgres", "prefect-server", "mlflow"):
                assert spec["condition"] == "service_healthy", (name, dep)


def test_flows_are_pointed_at_the_servers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = services["worker"]["environment"]
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert "prefect" in " ".join(services["worker"]["command"]) and "--pool" in services["worker"]["command"]
    # the servers keep their state in Postgres, MLflow artifacts in a named volume
    assert (
        "postgresql+asyncpg://"
        in services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    )
    mlflow_cmd = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri=postgresql://" in mlflow_cmd
    artifacts_volume = services["mlflow"]["volumes"][0].split(":")[0]
    assert artifacts_volume in compose["volumes"]
    assert "--artifacts-destination=/mlflow/artifacts" in mlflow_cmd
    # the mlflow database is created next to prefect's on first start
    assert "CREATE DATABASE mlflow" in compose["configs"]["create-mlflow-db"]["content"]
