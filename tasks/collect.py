"""Collection task: one Helm campaign on a test cluster (resumable, so a retry continues it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perfspec.settings import CollectSettings
from tasks.policy import perfspec_task
from tasks.records import CampaignOutput


@perfspec_task("run-campaign", timeout="collect", transient=True)
def run_campaign_task(
    campaign_file: str,
    out_dir: str,
    settings: CollectSettings,
    receiver_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
    check_cluster: bool = True,
) -> CampaignOutput:
    """Install/uninstall the campaign's charts; the manifest in ``out_dir`` lets a retry skip done steps."""
    from perfspec.collect.campaign import run_campaign
    from perfspec.collect.cluster import make_cluster_client
    from perfspec.collect.helm import make_helm_driver
    from perfspec.collect.spec import load_campaign

    spec = load_campaign(Path(campaign_file), settings, **(overrides or {}))
    helm = make_helm_driver(settings.helm, settings.kubeconfig, settings.helm_grace_seconds)
    cluster = (
        make_cluster_client(settings.kubeconfig, settings.cluster_request_timeout_seconds)
        if check_cluster
        else None
    )
    result = run_campaign(spec, Path(out_dir), helm, cluster, Path(receiver_dir) if receiver_dir else None)
    return CampaignOutput(
        name=result.name,
        manifest=str(result.manifest_path),
        status=result.status,
        ok=result.ok,
        steps_run=result.steps_run,
        steps_skipped=result.steps_skipped,
        installs_ok=result.installs_ok,
        installs_failed=result.installs_failed,
        uninstalls_ok=result.uninstalls_ok,
        uninstalls_failed=result.uninstalls_failed,
        labelled_events=result.labelled_events,
    )
