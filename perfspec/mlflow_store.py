"""Point MLflow at one store (runs and registry) without leaking it into the process environment.

Why: ``mlflow.set_tracking_uri``/``set_registry_uri`` also export ``MLFLOW_TRACKING_URI``/
``MLFLOW_REGISTRY_URI`` to ``os.environ``. perfspec reads ``MLFLOW_TRACKING_URI`` as the *user's*
choice (``Settings.mlflow_tracking_uri``), so after one flow run in a long-lived process (``perfspec
serve``, a worker, a test session) every later run would silently go to the first run's store, and
child processes would resolve ``models:/`` against it. The user's environment is restored as it was.
"""

from __future__ import annotations

import os

_EXPORTED = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def use_store(uri: str) -> None:
    """Make ``uri`` the tracking and registry store of this process; leave os.environ untouched."""
    import mlflow

    saved = {key: os.environ.get(key) for key in _EXPORTED}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
