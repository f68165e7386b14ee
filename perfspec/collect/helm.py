"""The Helm driver: the few Helm operations a campaign needs, behind one narrow Protocol.

Why a Protocol: the runner only needs install / uninstall / clear a stuck release / list / version, so a
fake (tests) or another backend can stand in. The real driver uses pyhelm3's ``Command`` layer (an
async wrapper over the ``helm`` CLI that classifies errors) rather than its pydantic models, because
real charts carry metadata those models reject (odd icon URLs, non-SemVer versions) and a campaign
must not fail on that. Every call is bounded: helm's own ``--timeout`` plus a grace period, after which
pyhelm3 terminates the helm process.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from perfspec.collect.spec import ChartRef
from perfspec.errors import EnvironmentProblem

PENDING_REMOVE = {"pending-install", "uninstalling"}
PENDING_ROLLBACK = {"pending-upgrade", "pending-rollback"}


class HelmError(Exception):
    """A helm command failed; ``kind`` is pyhelm3's classification (e.g. ``ChartNotFoundError``)."""

    def __init__(self, message: str, kind: str = "Error") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class InstallOutcome:
    """What helm reported for a successful install."""

    status: str
    revision: int
    chart_version: str | None = None
    app_version: str | None = None
    notes_chars: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReleaseInfo:
    name: str
    namespace: str
    status: str
    chart: str


class HelmDriver(Protocol):
    """What the campaign runner needs from Helm. Failures raise :class:`HelmError`."""

    def version(self) -> str: ...

    def install(
        self, release: str, namespace: str, chart: ChartRef, timeout_seconds: int, wait: bool = False
    ) -> InstallOutcome: ...

    def uninstall(self, release: str, namespace: str, timeout_seconds: int, wait: bool = False) -> bool:
        """Uninstall; ``False`` when there was no such release (nothing to do is not an error)."""
        ...

    def clear_pending(self, release: str, namespace: str, timeout_seconds: int) -> str | None:
        """Make a release stuck in a pending state proceedable; returns what was done, or None."""
        ...

    def list_releases(self) -> list[ReleaseInfo]: ...


def _short(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _exec_command_class() -> Any:
    """pyhelm3's ``Command`` whose shell line starts with ``exec``, so the shell is replaced by helm and
    pyhelm3's terminate-on-cancel reaches helm itself (otherwise only ``sh`` dies and a hung helm keeps
    the pipes, and the call, open)."""
    from pyhelm3 import Command

    class ExecCommand(Command):
        def __init__(self, helm_path: str, **kwargs: Any) -> None:
            super().__init__(executable="exec", **kwargs)
            self.helm_path = helm_path

        async def run(self, command: list[Any], input: bytes | None = None) -> bytes:
            return await super().run([self.helm_path, *command], input)

    return ExecCommand


class PyHelmDriver:
    """:class:`HelmDriver` over ``pyhelm3.Command`` (one ``helm`` subprocess per operation)."""

    def __init__(self, helm_path: str, kubeconfig: Path | None = None, grace_seconds: float = 60.0) -> None:
        self.helm_path = helm_path
        self.grace_seconds = grace_seconds
        self._command = _exec_command_class()(helm_path, kubeconfig=kubeconfig, default_timeout="5m")

    def _run(self, coro_factory: Any, timeout_seconds: float) -> Any:
        from pyhelm3 import errors

        async def bounded() -> Any:
            return await asyncio.wait_for(coro_factory(), timeout_seconds + self.grace_seconds)

        try:
            return asyncio.run(bounded())
        except errors.Error as error:
            raise HelmError(
                _short(error.stderr.decode(errors="replace")) or f"helm exited {error.returncode}",
                type(error).__name__,
            ) from error
        except TimeoutError as error:
            raise HelmError(
                f"helm did not finish within {timeout_seconds + self.grace_seconds:.0f}s; killed", "Timeout"
            ) from error
        except (ValueError, KeyError, TypeError) as error:  # unparseable output
            raise HelmError(f"unexpected helm output: {error}", "BadOutput") from error

    def version(self) -> str:
        try:
            out = subprocess.run(
                [self.helm_path, "version", "--template", "{{ .Version }}"],
                capture_output=True,
                check=True,
                timeout=60,
            )
            text = out.stdout.decode().strip().removeprefix("v")
            if not text[:1].isdigit():
                raise ValueError(f"unexpected output {text[:80]!r}")
            return text
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, ValueError) as error:
            raise EnvironmentProblem(
                f"`{self.helm_path} version` failed: {error}", hint="install Helm 3 or pass --helm PATH"
            ) from error

    def install(
        self, release: str, namespace: str, chart: ChartRef, timeout_seconds: int, wait: bool = False
    ) -> InstallOutcome:
        local_dir = chart.repo if chart.is_local else None  # a local chart: `repo` is its directory
        ref: Any = Path(local_dir) if local_dir is not None else chart.name
        repo = None if local_dir is not None else chart.repo
        result = self._run(
            lambda: self._command.install_or_upgrade(
                release,
                ref,
                None,
                namespace=namespace,
                create_namespace=True,
                repo=repo,
                version=chart.version,
                timeout=f"{timeout_seconds}s",
                wait=wait,
            ),
            timeout_seconds,
        )
        metadata = (result.get("chart") or {}).get("metadata") or {}
        info = result.get("info") or {}
        return InstallOutcome(
            status=str(info.get("status", "unknown")),
            revision=int(result.get("version", 0)),
            chart_version=metadata.get("version"),
            app_version=metadata.get("appVersion"),
            notes_chars=len(info.get("notes") or ""),
        )

    def uninstall(self, release: str, namespace: str, timeout_seconds: int, wait: bool = False) -> bool:
        try:
            self._run(
                lambda: self._command.uninstall(
                    release, namespace=namespace, timeout=f"{timeout_seconds}s", wait=wait
                ),
                timeout_seconds,
            )
        except HelmError as error:
            if error.kind == "ReleaseNotFoundError":
                return False
            raise
        return True

    def clear_pending(self, release: str, namespace: str, timeout_seconds: int) -> str | None:
        try:
            status = self._run(lambda: self._command.status(release, namespace=namespace), timeout_seconds)
        except HelmError as error:
            if error.kind == "ReleaseNotFoundError":
                return None
            raise
        state = str((status.get("info") or {}).get("status", ""))
        if state in PENDING_REMOVE:
            self.uninstall(release, namespace, timeout_seconds, wait=True)
            return f"uninstalled release stuck in {state}"
        if state in PENDING_ROLLBACK:
            self._run(
                lambda: self._command.rollback(
                    release,
                    None,
                    namespace=namespace,
                    cleanup_on_fail=True,
                    timeout=f"{timeout_seconds}s",
                    wait=True,
                ),
                timeout_seconds,
            )
            return f"rolled back release stuck in {state}"
        return None

    def list_releases(self) -> list[ReleaseInfo]:
        rows = self._run(
            lambda: self._command.list(
                all_namespaces=True,
                include_failed=True,
                include_pending=True,
                include_uninstalling=True,
                max_releases=0,  # no limit (helm's default is 256)
            ),
            60,
        )
        return [
            ReleaseInfo(
                str(r.get("name")), str(r.get("namespace")), str(r.get("status")), str(r.get("chart"))
            )
            for r in rows
        ]


def find_helm(helm_path: str | Path = "helm") -> str:
    """The helm executable's path (a name on PATH or a file); EnvironmentProblem when there is none."""
    helm = str(helm_path)
    resolved = shutil.which(helm) or (
        # os.path.isfile is False on any OSError (EACCES too); Path.is_file raises there
        helm if os.path.isfile(helm) and os.access(helm, os.X_OK) else None  # noqa: PTH113
    )
    if resolved is None:
        raise EnvironmentProblem(
            f"helm executable not found: {helm}",
            hint="install Helm 3 (https://helm.sh), or pass --helm PATH (PERFSPEC_COLLECT__HELM)",
        )
    return resolved


def make_helm_driver(
    helm_path: str | Path = "helm", kubeconfig: Path | None = None, grace_seconds: float = 60.0
) -> HelmDriver:
    """The real driver, after checking that ``helm_path`` is an executable that answers ``helm version``."""
    resolved = find_helm(helm_path)
    if kubeconfig is not None and not Path(kubeconfig).is_file():
        raise EnvironmentProblem(f"kubeconfig not found: {kubeconfig}")
    driver = PyHelmDriver(resolved, Path(kubeconfig) if kubeconfig else None, grace_seconds)
    driver.version()
    return driver
