"""One process, several data dirs: each MLflow store is used, and the user's environment is kept.

MLflow exports MLFLOW_TRACKING_URI/MLFLOW_REGISTRY_URI to os.environ when told a store; perfspec reads
MLFLOW_TRACKING_URI as the user's choice, so without care the first store would win for every later run
in the same process (perfspec serve, a worker) and in its children.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from perfspec.learn.tracking import configure
from perfspec.settings import Settings


def test_each_data_dir_gets_its_own_store_and_env_is_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    first = Settings().with_section("paths", data_dir=tmp_path / "a")
    second = Settings().with_section("paths", data_dir=tmp_path / "b")
    configure(first)
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    assert second.mlflow_tracking_uri.endswith("/b/mlflow/mlflow.db")
    configure(second)
    assert mlflow.get_tracking_uri() == second.mlflow_tracking_uri
    assert mlflow.get_registry_uri() == second.mlflow_tracking_uri
    assert (tmp_path / "a" / "mlflow" / "mlflow.db").exists() and (
        tmp_path / "b" / "mlflow" / "mlflow.db"
    ).exists()


def test_a_user_choice_in_the_environment_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user_uri = f"sqlite:///{tmp_path / 'user.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", user_uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    settings = Settings().with_section("paths", data_dir=tmp_path / "c")
    assert settings.mlflow_tracking_uri == user_uri
    configure(settings)
    assert os.environ["MLFLOW_TRACKING_URI"] == user_uri
    assert "MLFLOW_REGISTRY_URI" not in os.environ
