"""The campaign runner: execute the plan's helm steps, record each in ``manifest.json``, always clean up.

Why it is built this way:
- ``manifest.json`` is rewritten atomically after every step, so a crash or a kill leaves an exact
  record of what ran, when (UTC start/end, used to label audit events), with which result.
- A failing install is retried as configured (clearing a release stuck in a pending state first),
  then recorded as failed; the campaign goes on. A release counts as installed from its first install
  attempt (a failed install can leave resources behind), so it is always uninstalled.
- SIGINT/SIGTERM (main thread only) interrupt the current step (pyhelm3 terminates the helm process);
  everything installed is then uninstalled, with further signals deferred until that is done.
- Running again on the same ``out_dir`` with the same spec resumes: (repetition, chart) units whose
  install and planned uninstall both ran are skipped, the others are redone.
- With a cluster client, each release namespace is created by the runner with perfspec's labels
  (``cluster.namespace_labels``) before helm installs into it. Before the first step, leftovers are
  removed in this order: releases this campaign's manifest left installed, then Helm releases of
  other (crashed) campaigns found by ``helm list -A`` (plan-shaped name, in a labelled namespace of
  the same name), and only then the labelled namespaces: Helm's release records live in the
  namespace, so deleting it first would orphan cluster-scoped objects (CRDs, ClusterRoles, webhooks).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfspec.collect.cluster import (
    MANAGED_SELECTOR,
    ClusterClient,
    campaign_name_pattern,
    check_cluster,
    namespace_labels,
    remove_leftover_namespaces,
    unmanaged_lookalikes,
)
from perfspec.collect.helm import HelmDriver, HelmError
from perfspec.collect.labels import record_labels
from perfspec.collect.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    completed_units,
    left_installed,
    load_manifest,
    save_manifest,
    utc_now,
)
from perfspec.collect.plan import Step, plan_steps
from perfspec.collect.spec import CampaignSpec
from perfspec.errors import EnvironmentProblem, InputError, PerfspecError
from perfspec.signals import on_stop_signals

Progress = Callable[[str, dict[str, Any]], None]


class CampaignInterrupted(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM while a campaign runs."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


@dataclass(frozen=True)
class CampaignResult:
    name: str
    manifest_path: Path
    status: str  # completed | interrupted | failed
    steps_run: int
    steps_skipped: int
    installs_ok: int
    installs_failed: int
    uninstalls_ok: int
    uninstalls_failed: int
    cleanup_uninstalls: int
    labelled_events: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "completed" and self.installs_failed == 0 and self.uninstalls_failed == 0


def _interrupt(state: dict[str, Any]) -> Callable[[str], None]:
    """The campaign's stop-signal handler: raise CampaignInterrupted, or only note the signal while
    ``state['defer']`` (the final cleanup must not be cut short)."""

    def handler(name: str) -> None:
        state.setdefault("signals", []).append(name)
        if not state.get("defer"):
            raise CampaignInterrupted(name)

    return handler


def _step_record(step: Step, run: int, kind: str) -> dict[str, Any]:
    return {
        "step": step.index,
        "run": run,
        "kind": kind,
        "action": step.action,
        "unit": step.unit,
        "repetition": step.repetition,
        "chart": step.chart.name,
        "chart_key": step.chart.key,
        "repo": step.chart.repo,
        "version": step.chart.version,
        "release": step.release,
        "namespace": step.namespace,
        "started_at": utc_now(),
        "ended_at": None,
        "result": "running",
        "error": None,
        "attempts": [],
    }


class _Runner:
    def __init__(
        self,
        spec: CampaignSpec,
        out_dir: Path,
        helm: HelmDriver,
        cluster: ClusterClient | None,
        progress: Progress | None,
        sleep: Callable[[float], None],
    ) -> None:
        self.spec, self.out_dir, self.helm, self.cluster = spec, out_dir, helm, cluster
        self.progress = progress or (lambda _kind, _record: None)
        self.sleep = sleep
        self.path = out_dir / MANIFEST_NAME
        self.plan: list[Step] = []
        self.installed: dict[str, Step] = {}  # release -> install step, from the first attempt on
        self.signal_state: dict[str, Any] = {}

    def save(self) -> None:
        save_manifest(self.path, self.manifest)

    def open_manifest(self, plan: list[Step]) -> None:
        self.plan = plan
        fingerprint = self.spec.fingerprint()
        if self.path.exists():
            manifest = load_manifest(self.path)
            if manifest.get("fingerprint") != fingerprint:
                raise InputError(
                    f"{self.out_dir} holds another campaign (different charts or settings)",
                    hint="use another campaign name (--name) or the same spec to resume",
                )
            self.manifest = manifest
        else:
            self.manifest = {
                "format": MANIFEST_FORMAT,
                "campaign": self.spec.name,
                "fingerprint": fingerprint,
                "spec": self.spec.model_dump(mode="json"),
                "plan": [s.model_dump(mode="json") for s in plan],
                "runs": [],
                "steps": [],
                "status": "new",
            }
        self.run_no = len(self.manifest["runs"]) + 1
        for stale in self.manifest["runs"]:  # a run killed without cleanup (SIGKILL, power loss)
            if stale["status"] == "running":
                stale["status"] = "crashed"
        for record in self.manifest["steps"]:
            if record["result"] == "running":
                record["result"] = "crashed"
        self.run_record: dict[str, Any] = {
            "run": self.run_no,
            "started_at": utc_now(),
            "ended_at": None,
            "status": "running",
            "pid": os.getpid(),
        }
        self.manifest["runs"].append(self.run_record)
        self.manifest["status"] = "running"
        self.save()

    def prepare(self) -> None:
        self.run_record["helm_version"] = self.helm.version()
        if self.cluster is not None:
            info = check_cluster(self.cluster)
            self.run_record["cluster"] = {"host": info.host, "server_version": info.server_version}
        else:
            self.run_record["cluster"] = None
        self.save()
        by_release = {s.release: s for s in self.plan if s.action == "install"}
        for release in left_installed(self.manifest):  # before any namespace goes (helm's records)
            uninstall = by_release[release].model_copy(update={"action": "uninstall"})
            self.installed[release] = by_release[release]  # retried by the final cleanup if this fails
            self.uninstall(uninstall, "resume-cleanup")
        if self.cluster is not None and self.spec.delete_leftover_namespaces:
            self.remove_leftovers(self.cluster)

    def remove_leftovers(self, cluster: ClusterClient) -> None:
        """Uninstall other campaigns' leftover releases, then delete the labelled namespaces."""
        prefix = self.spec.namespace_prefix
        pattern = campaign_name_pattern(prefix)
        managed = set(cluster.list_namespaces(MANAGED_SELECTOR))
        done: list[dict[str, Any]] = []
        failed: set[str] = set()
        try:
            releases = self.helm.list_releases()
        except HelmError as failure:
            raise EnvironmentProblem(
                f"cannot list helm releases to find leftovers: {failure}",
                hint="check helm's access to the cluster, or pass --keep-leftover-namespaces",
            ) from failure
        for release in releases:
            if not (pattern.match(release.name) and release.namespace == release.name):
                continue
            entry: dict[str, Any] = {
                "release": release.name,
                "namespace": release.namespace,
                "status": release.status,
                "started_at": utc_now(),
            }
            if release.namespace not in managed:
                entry["result"] = "kept: namespace not labelled by perfspec"
            else:
                try:
                    self.helm.uninstall(
                        release.name, release.namespace, self.spec.uninstall_timeout_seconds, self.spec.wait
                    )
                    entry["result"] = "ok"
                except HelmError as failure:
                    entry.update(result="failed", error=str(failure))
                    failed.add(release.namespace)  # keep its namespace: helm's record stays for a retry
            entry["ended_at"] = utc_now()
            done.append(entry)
            self.run_record["leftover_releases"] = done
            self.save()
        self.run_record["leftover_namespaces_removed"] = remove_leftover_namespaces(
            cluster, prefix, sleep=self.sleep, keep=failed
        )
        lookalikes = unmanaged_lookalikes(cluster, prefix)
        if lookalikes:
            self.run_record["unmanaged_namespaces_kept"] = lookalikes
        self.save()

    def ensure_namespace(self, step: Step, record: dict[str, Any]) -> None:
        """Create the release namespace with perfspec's labels (helm then installs into it)."""
        if self.cluster is None:
            return  # helm --create-namespace makes it, unlabelled: never cleaned up automatically
        try:
            created = self.cluster.create_namespace(step.namespace, namespace_labels(self.spec.name))
            record["namespace_created"] = created  # False: it existed (left as it was)
        except PerfspecError as failure:
            record["namespace_created"] = str(failure)  # helm --create-namespace still makes it

    def begin(self, step: Step, kind: str) -> dict[str, Any]:
        record = _step_record(step, self.run_no, kind)
        self.manifest["steps"].append(record)
        self.progress("start", record)
        return record

    def end(self, record: dict[str, Any], result: str, error: str | None = None) -> None:
        record.update(result=result, error=error, ended_at=utc_now())
        self.save()
        self.progress("end", record)

    def install(self, step: Step) -> None:
        record = self.begin(step, "planned")
        self.installed[step.release] = step
        self.ensure_namespace(step, record)
        error: HelmError | None = None
        for attempt in range(self.spec.install_retries + 1):
            if attempt:
                self.sleep(self.spec.retry_delay_seconds)
                with contextlib.suppress(HelmError):
                    if done := self.helm.clear_pending(step.release, step.namespace, step.timeout_seconds):
                        record["attempts"][-1]["cleared"] = done
            entry: dict[str, Any] = {"started_at": utc_now(), "ended_at": None, "error": None}
            record["attempts"].append(entry)
            self.save()
            try:
                outcome = self.helm.install(
                    step.release, step.namespace, step.chart, step.timeout_seconds, self.spec.wait
                )
            except HelmError as failure:
                error = failure
                entry.update(ended_at=utc_now(), error=str(failure), error_kind=failure.kind)
                continue
            entry["ended_at"] = utc_now()
            record["outcome"] = {
                "status": outcome.status,
                "revision": outcome.revision,
                "chart_version": outcome.chart_version,
                "app_version": outcome.app_version,
            }
            self.end(record, "ok")
            return
        self.end(record, "failed", str(error))

    def uninstall(self, step: Step, kind: str) -> None:
        record = self.begin(step, kind)
        try:
            removed = self.helm.uninstall(
                step.release, step.namespace, self.spec.uninstall_timeout_seconds, self.spec.wait
            )
        except HelmError as failure:
            record["error_kind"] = failure.kind
            self.end(record, "failed", str(failure))
            return
        record["removed"] = removed
        self.installed.pop(step.release, None)
        if self.spec.delete_namespaces_after_uninstall and self.cluster is not None:
            try:
                if step.namespace in self.cluster.list_namespaces(MANAGED_SELECTOR):
                    self.cluster.delete_namespace(step.namespace)
                    record["namespace_deleted"] = True
                else:
                    record["namespace_deleted"] = "kept: not labelled by perfspec"
            except PerfspecError as failure:
                record["namespace_deleted"] = str(failure)
        self.end(record, "ok")

    def cleanup(self) -> None:
        """Uninstall everything still (possibly) installed, newest first; signals wait until done."""
        self.signal_state["defer"] = True
        for release in reversed(list(self.installed)):
            step = self.installed[release]
            uninstall = step.model_copy(
                update={"action": "uninstall", "timeout_seconds": self.spec.uninstall_timeout_seconds}
            )
            self.uninstall(uninstall, "cleanup")


def run_campaign(
    spec: CampaignSpec,
    out_dir: Path,
    helm: HelmDriver,
    cluster: ClusterClient | None,
    receiver_dir: Path | None = None,
    *,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> CampaignResult:
    """Run (or resume) the campaign into ``out_dir`` (``manifest.json``; ``labels.jsonl`` when
    ``receiver_dir`` holds the audit events received meanwhile). ``cluster=None`` skips cluster checks.
    ``progress(kind, step_record)`` is called at each step's ``start`` and ``end``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_steps(spec)
    runner = _Runner(spec, out_dir, helm, cluster, progress, sleep)
    runner.open_manifest(plan)
    done = completed_units(runner.manifest)
    todo = [s for s in plan if s.unit not in done]
    runner.run_record["steps_skipped"] = len(plan) - len(todo)
    status = "completed"
    failure: BaseException | None = None
    with on_stop_signals(_interrupt(runner.signal_state)):
        try:
            runner.prepare()
            for step in todo:
                if step.action == "install":
                    runner.install(step)
                else:
                    runner.uninstall(step, "planned")
                if step.pause_after_seconds:
                    runner.sleep(step.pause_after_seconds)
        except CampaignInterrupted as interruption:
            status = "interrupted"
            runner.run_record["interrupted_by"] = interruption.signal_name
        except BaseException as error:  # cleanup must run whatever happened; re-raised below
            status = "failed"
            failure = error
            runner.run_record["error"] = f"{type(error).__name__}: {error}"
        finally:
            for record in runner.manifest["steps"]:
                if record["result"] == "running":
                    record.update(result="interrupted", ended_at=utc_now())
            runner.cleanup()
            runner.run_record.update(status=status, ended_at=utc_now())
            runner.manifest["status"] = status
            runner.save()
    labelled = None
    if receiver_dir is not None and failure is None:
        labelled = record_labels(runner.path, Path(receiver_dir))["events"]
    if failure is not None:
        raise failure
    this_run = [r for r in runner.manifest["steps"] if r["run"] == runner.run_no]

    def count(action: str, result: str, kind: str = "planned") -> int:
        return sum(
            1 for r in this_run if r["action"] == action and r["result"] == result and r["kind"] == kind
        )

    return CampaignResult(
        name=spec.name,
        manifest_path=runner.path,
        status=status,
        steps_run=sum(1 for r in this_run if r["kind"] == "planned"),
        steps_skipped=len(plan) - len(todo),
        installs_ok=count("install", "ok"),
        installs_failed=count("install", "failed"),
        uninstalls_ok=count("uninstall", "ok"),
        uninstalls_failed=count("uninstall", "failed") + count("uninstall", "failed", "cleanup"),
        cleanup_uninstalls=sum(1 for r in this_run if r["kind"] == "cleanup"),
        labelled_events=labelled,
    )
