"""``collect`` flow: one Helm campaign on a test cluster, at most one at a time per cluster.

Why a global concurrency limit named after the cluster: two campaigns on one cluster would interleave
their audit events and corrupt both datasets; campaigns on different clusters may run side by side.
The limit (1 slot) is created on first use, so nothing has to be set up by hand on a fresh server.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger
from prefect.concurrency.sync import concurrency

from flows.config import flow_settings
from flows.hooks import ON_FAILURE
from flows.steps import run_step
from perfspec.collect.helm import find_helm
from perfspec.errors import EnvironmentProblem, InputError
from tasks.collect import run_campaign_task
from tasks.records import CampaignOutput


def cluster_label(kubeconfig: Path | None) -> str:
    """The kubeconfig's current context (what identifies 'the cluster' for the limit), else ``default``."""
    path = kubeconfig or Path(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0])
    try:
        config = yaml.safe_load(Path(path).expanduser().read_text()) or {}
        return str(config.get("current-context") or "default")
    except (OSError, yaml.YAMLError):
        return "default"


def limit_name(cluster: str) -> str:
    return "collect-" + (re.sub(r"[^a-z0-9-]+", "-", cluster.lower()).strip("-") or "default")


def ensure_limit(name: str, slots: int = 1) -> None:
    """Create the global concurrency limit ``name`` with ``slots`` slots unless it exists."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):  # created meanwhile by a concurrent run
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))


@flow(
    name="collect",
    description="Run a Helm install/uninstall campaign while audit events are recorded.",
    on_failure=ON_FAILURE,
    on_crashed=ON_FAILURE,
)
def collect(
    campaign_file: Path,
    cluster: str | None = None,
    name: str | None = None,
    receiver_dir: Path | None = None,
    data_dir: Path | None = None,
    wait_seconds: float | None = None,
    check_cluster: bool = True,
    options: dict[str, Any] | None = None,
) -> CampaignOutput:
    """One campaign into ``raw/<name>/``; waits (up to ``wait_seconds``) while another runs on the cluster.

    ``options`` override collect settings for this run (e.g. ``{"repetitions": 3, "helm": "/opt/helm"}``);
    ``check_cluster=False`` skips the Kubernetes API checks (helm still talks to the cluster).
    """
    settings = flow_settings(data_dir).with_section("collect", **(options or {}))  # InputError if invalid
    if not Path(campaign_file).is_file():
        raise InputError(
            f"campaign file not found: {campaign_file}", hint="pass a chart list or Artifact Hub JSON"
        )
    find_helm(settings.collect.helm)  # before waiting for the cluster's slot
    label = limit_name(cluster or cluster_label(settings.collect.kubeconfig))
    campaign = name or Path(campaign_file).stem
    ensure_limit(label)
    get_run_logger().info("waiting for the %s slot (one campaign per cluster)", label)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(concurrency(label, occupy=1, strict=True, timeout_seconds=wait_seconds))
        except TimeoutError as error:
            raise EnvironmentProblem(
                f"another campaign holds the {label} slot (one per cluster); waited {wait_seconds} s",
                hint="wait for it to finish, or cancel its flow run in the Prefect UI",
            ) from error
        return run_step(
            run_campaign_task,
            campaign_file=str(Path(campaign_file).resolve()),
            out_dir=str((settings.paths.raw_dir / campaign).resolve()),
            settings=settings.collect,
            receiver_dir=str(receiver_dir) if receiver_dir else None,
            overrides={"name": campaign},
            check_cluster=check_cluster,
        )
