"""The worker image and the Kubernetes work pool (issue 12), checked without a Docker engine or a cluster:
the Dockerfile copies only what exists and its entry point resolves; the base job template renders through
prefect-kubernetes' own job configuration into a Job that mounts the shared data volume."""

from __future__ import annotations

import asyncio
import json
import re
import tomllib
import uuid
from pathlib import Path

import pytest
import yaml

from tests import prefect_harness

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "deployments" / "kubernetes" / "base-job-template.json"


def _instructions() -> list[tuple[str, str]]:
    lines = (REPO / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
        for parts in [line.strip().split(None, 1)]
    ]


def test_the_dockerfile_copies_what_exists_and_its_command_is_the_cli() -> None:
    steps = _instructions()
    copies = [args.split() for op, args in steps if op == "COPY"]
    assert copies, "the Dockerfile copies the project"
    for *sources, _target in copies:
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    copied = {source for *sources, _ in copies for source in sources}
    # what `uv sync --frozen --no-dev` needs to install the project: its metadata, lock and packages
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert {"pyproject.toml", "uv.lock", "README.md"} <= copied
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert {Path(p).parts[0] for p in packages} <= copied
    assert any(op == "RUN" and "uv sync --frozen --no-dev" in args for op, args in steps)
    command = json.loads(next(args for op, args in steps if op == "CMD"))
    assert command[0] in project["project"]["scripts"]
    ignored = (REPO / ".dockerignore").read_text().split()
    assert not copied & set(ignored)


def test_compose_builds_the_same_image() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    build = compose["services"]["worker"]["build"]
    assert build["context"] == "." and build["dockerfile"] == "Dockerfile"


def test_every_placeholder_of_the_template_is_a_declared_variable() -> None:
    template = json.loads(TEMPLATE.read_text())
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(template["job_configuration"])))
    assert used <= set(template["variables"]["properties"])


def test_the_template_renders_a_job_that_mounts_the_data_volume(request: pytest.FixtureRequest) -> None:
    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

    prefect_harness.start(request)  # rendering resolves block references through a Prefect API

    template = json.loads(TEMPLATE.read_text())
    default = KubernetesWorker.get_default_base_job_template()
    assert set(default["variables"]["properties"]) <= set(template["variables"]["properties"])
    values = {"image": "registry.example/perfspec:1.2", "namespace": "perfspec", "data_claim": "perfspec-nfs"}
    config = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(template, values))
    config.prepare_for_flow_run(FlowRun(id=uuid.uuid4(), name="nightly", flow_id=uuid.uuid4()))
    job = config.job_manifest
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "registry.example/perfspec:1.2"
    assert job["metadata"]["namespace"] == "perfspec"
    assert container["volumeMounts"] == [{"name": "perfspec-data", "mountPath": "/data"}]
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "perfspec-nfs"}
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["PERFSPEC_PATHS__DATA_DIR"] == "/data" and env["DO_NOT_TRACK"] == "true"
    assert "PREFECT__FLOW_RUN_ID" in env  # the worker's own variables are added beside ours
