"""The one settings object: env overrides, CLI-style overrides, and bad values as one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from perfspec.errors import InputError
from perfspec.settings import Settings, get_settings

REPO = Path(__file__).resolve().parent.parent


def test_env_overrides_nested_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERFSPEC_TRAIN__EPOCHS", "7")
    monkeypatch.setenv("PERFSPEC_PATHS__DATA_DIR", "/tmp/elsewhere")
    settings = Settings()
    assert settings.train.epochs == 7
    assert settings.paths.clean_dir == Path("/tmp/elsewhere/clean")


def test_flag_overrides_keep_other_fields_and_ignore_unset_flags() -> None:
    base = Settings()
    changed = base.with_section("dataset", window=20, min_count=None)
    assert changed.dataset.window == 20
    assert changed.dataset.min_count == base.dataset.min_count
    assert base.dataset.window != 20  # frozen: the original is untouched


def test_bad_values_name_the_flag_or_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match=r"--window \(settings dataset.window\)"):
        Settings().with_section("dataset", window=0)
    monkeypatch.setenv("PERFSPEC_TRAIN__EPOCHS", "abc")
    get_settings.cache_clear()
    try:
        with pytest.raises(InputError, match="PERFSPEC_TRAIN__EPOCHS"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_mlflow_uri_prefers_setting_then_env_then_embedded_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    embedded = Settings().with_section("paths", data_dir=Path("/tmp/d"))
    assert embedded.mlflow_tracking_uri == "sqlite:////tmp/d/mlflow/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert embedded.mlflow_tracking_uri == "http://127.0.0.1:5000"
    explicit = embedded.with_section("mlflow", tracking_uri="sqlite:///x.db")
    assert explicit.mlflow_tracking_uri == "sqlite:///x.db"


def test_cli_reports_a_bad_env_value_in_one_line_with_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "perfspec",
            "actions",
            str(tmp_path / "x.parquet"),
            "--out",
            str(tmp_path / "a.txt"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PERFSPEC_DATASET__WINDOW": "-3"},
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "PERFSPEC_DATASET__WINDOW" in done.stderr and "Traceback" not in done.stderr
