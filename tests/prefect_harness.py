"""One Prefect test server for the whole pytest session, shared by the orchestration test modules.

Why not a fixture in conftest.py: that file is shared by every layer; this helper starts
``prefect_test_harness`` (a real ephemeral Prefect server on a temporary SQLite database, ~11 s cold start
here) the first time a module asks, and stops it when the session ends. Task results and cache records go
to a temporary directory, never to ~/.prefect.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

_STACK: contextlib.ExitStack | None = None
STORAGE = Path(tempfile.mkdtemp(prefix="perfspec-prefect-results-"))


def start(request: pytest.FixtureRequest) -> Path:
    """Start the shared harness once; returns the result-storage dir (where cache records live)."""
    global _STACK
    if _STACK is None:
        import prefect.settings
        from prefect.testing.utilities import prefect_test_harness

        stack = contextlib.ExitStack()
        stack.enter_context(
            prefect.settings.temporary_settings(
                updates={prefect.settings.PREFECT_LOCAL_STORAGE_PATH: str(STORAGE)}
            )
        )
        stack.enter_context(prefect_test_harness(server_startup_timeout=90))
        _STACK = stack
        request.session.addfinalizer(_stop)
    return STORAGE


def _stop() -> None:
    global _STACK
    if _STACK is not None:
        _STACK.close()
        _STACK = None


@contextlib.contextmanager
def settings_env(values: dict[str, str]) -> Iterator[None]:
    """The flows read settings from the environment (like a deployment): ``values`` set, MLflow on the
    embedded SQLite store under the data dir; all restored afterwards."""
    from perfspec.settings import get_settings

    saved = {key: os.environ.get(key) for key in [*values, "MLFLOW_TRACKING_URI"]}
    os.environ.update(values)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
