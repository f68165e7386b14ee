"""Cluster checks with the official ``kubernetes`` client, behind one narrow Protocol.

Why: before a campaign we want to know the cluster answers (and record its version in the manifest),
and remove what an earlier, crashed campaign left behind, so that leftovers do not change what the new
campaign's installs do. "Ours" is decided by label, never by name alone: the runner creates each
release namespace itself, labelled ``app.kubernetes.io/managed-by=perfspec`` and
``perfspec/campaign=<campaign>`` (helm's ``--create-namespace`` cannot label), and a leftover must
carry that label *and* be named exactly like a plan's namespace (``<prefix>-<rep>-<pos>-<chart>``).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from perfspec.errors import EnvironmentProblem


class ClusterClient(Protocol):
    """What the campaign runner needs from the cluster. Unreachable -> :class:`EnvironmentProblem`."""

    def server_version(self) -> str: ...

    def server_host(self) -> str: ...

    def list_namespaces(self, label_selector: str | None = None) -> list[str]: ...

    def create_namespace(self, name: str, labels: dict[str, str]) -> bool:
        """Create a labelled namespace; ``False`` when it already existed (then it is left unchanged)."""
        ...

    def delete_namespace(self, name: str) -> None: ...


MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "perfspec"
CAMPAIGN_LABEL = "perfspec/campaign"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def namespace_labels(campaign: str) -> dict[str, str]:
    """The labels of a namespace the runner creates (a campaign name too long or odd for a label value
    is shortened and suffixed with a hash of the full name)."""
    value = campaign
    if not _LABEL_VALUE.match(value):
        digest = hashlib.sha256(campaign.encode()).hexdigest()[:8]
        head = re.sub(r"[^-A-Za-z0-9_.]", "-", campaign)[:54].strip("-_.")
        value = f"{head}-{digest}" if head else digest
    return {MANAGED_BY_LABEL: MANAGED_BY, CAMPAIGN_LABEL: value}


def campaign_name_pattern(prefix: str) -> re.Pattern[str]:
    """Names ``plan.release_name`` builds for ``prefix``: ``<prefix>-<rep>-<pos, 2+ digits>-<chart>``."""
    return re.compile(rf"^{re.escape(prefix)}-[0-9]+-[0-9]{{2,}}-[a-z0-9]")


@dataclass(frozen=True)
class ClusterInfo:
    host: str
    server_version: str


class KubeClusterClient:
    """:class:`ClusterClient` over ``kubernetes.client`` with a per-request timeout."""

    def __init__(self, kubeconfig: Path | None = None, request_timeout: float = 10.0) -> None:
        from kubernetes import client, config

        try:
            self._api = config.new_client_from_config(config_file=str(kubeconfig) if kubeconfig else None)
        except (config.ConfigException, OSError, TypeError, ValueError) as error:
            where = kubeconfig or "$KUBECONFIG / ~/.kube/config"
            raise EnvironmentProblem(
                f"cannot load kubeconfig {where}: {error}", hint="pass --kubeconfig or set KUBECONFIG"
            ) from error
        self._timeout = request_timeout
        self._core = client.CoreV1Api(self._api)
        self._version = client.VersionApi(self._api)

    def _call(self, what: str, func: Callable[[], object]) -> object:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return func()
        except ApiException as error:
            raise EnvironmentProblem(f"cluster refused {what}: {error.status} {error.reason}") from error
        except (HTTPError, OSError) as error:
            raise EnvironmentProblem(
                f"cluster at {self.server_host()} unreachable ({what}): {error}",
                hint="is the cluster running? (kind get clusters) or pass --skip-cluster-check",
            ) from error

    def server_host(self) -> str:
        return str(self._api.configuration.host)

    def server_version(self) -> str:
        info = self._call("GET /version", lambda: self._version.get_code(_request_timeout=self._timeout))
        return str(info.git_version)  # type: ignore[attr-defined]

    def list_namespaces(self, label_selector: str | None = None) -> list[str]:
        result = self._call(
            "list namespaces",
            lambda: self._core.list_namespace(
                label_selector=label_selector or "", _request_timeout=self._timeout
            ),
        )
        return [ns.metadata.name for ns in result.items]  # type: ignore[attr-defined]

    def create_namespace(self, name: str, labels: dict[str, str]) -> bool:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
        try:
            self._call(
                f"create namespace {name}",
                lambda: self._core.create_namespace(body, _request_timeout=self._timeout),
            )
        except EnvironmentProblem as error:
            if isinstance(error.__cause__, ApiException) and error.__cause__.status == 409:
                return False
            raise
        return True

    def delete_namespace(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._core.delete_namespace(name, _request_timeout=self._timeout)
        except ApiException as error:
            if error.status != 404:
                raise EnvironmentProblem(
                    f"cannot delete namespace {name}: {error.status} {error.reason}"
                ) from error


def make_cluster_client(kubeconfig: Path | None = None, request_timeout: float = 10.0) -> ClusterClient:
    """The real client for ``kubeconfig`` (``None``: ``$KUBECONFIG`` or ``~/.kube/config``)."""
    return KubeClusterClient(kubeconfig, request_timeout)


def check_cluster(cluster: ClusterClient) -> ClusterInfo:
    """Fail early (EnvironmentProblem) if the API server does not answer; record what it is."""
    return ClusterInfo(host=cluster.server_host(), server_version=cluster.server_version())


def leftover_namespaces(cluster: ClusterClient, prefix: str) -> list[str]:
    """Namespaces a campaign with this prefix created: labelled by perfspec and named like a plan's."""
    pattern = campaign_name_pattern(prefix)
    return sorted(n for n in cluster.list_namespaces(MANAGED_SELECTOR) if pattern.match(n))


def unmanaged_lookalikes(cluster: ClusterClient, prefix: str) -> list[str]:
    """Namespaces named like a plan's but without perfspec's label (older versions, --skip-cluster-check,
    someone else's): reported, never touched."""
    pattern = campaign_name_pattern(prefix)
    managed = set(cluster.list_namespaces(MANAGED_SELECTOR))
    return sorted(n for n in cluster.list_namespaces() if pattern.match(n) and n not in managed)


def remove_leftover_namespaces(
    cluster: ClusterClient,
    prefix: str,
    timeout_seconds: float = 180.0,
    poll_seconds: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    keep: Collection[str] = (),
) -> list[str]:
    """Delete our leftover namespaces and wait until they are gone (or raise after the timeout).
    Uninstall the releases in them first (see ``campaign``): Helm's records live in the namespace."""
    names = [n for n in leftover_namespaces(cluster, prefix) if n not in keep]
    for name in names:
        cluster.delete_namespace(name)
    deadline = time.monotonic() + timeout_seconds
    while names:
        remaining = set(names) & set(cluster.list_namespaces(MANAGED_SELECTOR))
        if not remaining:
            break
        if time.monotonic() > deadline:
            raise EnvironmentProblem(
                f"leftover namespaces still terminating after {timeout_seconds:.0f}s: "
                + ", ".join(sorted(remaining)),
                hint="check finalizers (kubectl get ns -o yaml) or pass --keep-leftover-namespaces",
            )
        sleep(poll_seconds)
    return names
