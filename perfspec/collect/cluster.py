"""Cluster checks with the official ``kubernetes`` client, behind one narrow Protocol.

Why: before a campaign we want to know the cluster answers (and record its version in the manifest),
and remove namespaces an earlier, crashed campaign left behind (only ours: they carry the campaign's
namespace prefix), so that leftovers do not change what the new campaign's installs do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from perfspec.errors import EnvironmentProblem


class ClusterClient(Protocol):
    """What the campaign runner needs from the cluster. Unreachable -> :class:`EnvironmentProblem`."""

    def server_version(self) -> str: ...

    def server_host(self) -> str: ...

    def list_namespaces(self) -> list[str]: ...

    def delete_namespace(self, name: str) -> None: ...


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

    def list_namespaces(self) -> list[str]:
        result = self._call(
            "list namespaces", lambda: self._core.list_namespace(_request_timeout=self._timeout)
        )
        return [ns.metadata.name for ns in result.items]  # type: ignore[attr-defined]

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
    """Namespaces a campaign with this prefix created (``<prefix>-<rep>-<pos>-<chart>``)."""
    return sorted(
        n
        for n in cluster.list_namespaces()
        if n.startswith(f"{prefix}-") and n[len(prefix) + 1 :][:1].isdigit()
    )


def remove_leftover_namespaces(
    cluster: ClusterClient,
    prefix: str,
    timeout_seconds: float = 180.0,
    poll_seconds: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Delete our leftover namespaces and wait until they are gone (or raise after the timeout)."""
    names = leftover_namespaces(cluster, prefix)
    for name in names:
        cluster.delete_namespace(name)
    deadline = time.monotonic() + timeout_seconds
    while names:
        remaining = set(names) & set(cluster.list_namespaces())
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
