"""Environment defaults for the embedded (one machine, offline) mode, set before Prefect is imported.

Why a module of its own: Prefect reads its settings from the environment when it is first imported, so
the CLI must decide where Prefect keeps its state before any ``import prefect``. With nothing configured,
flows run against Prefect's ephemeral server on a SQLite file under ``<data_dir>/prefect`` and MLflow
writes to ``<data_dir>/mlflow/mlflow.db``; anything the user set (``PREFECT_API_URL``, ``PREFECT_HOME``,
``MLFLOW_TRACKING_URI``) wins. Nothing here touches the network. No Prefect import.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import tempfile
import threading
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from perfspec.settings import Settings

# Telemetry and update checks off; these only ever set defaults, never override the user.
QUIET_DEFAULTS = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "TF_CPP_MIN_LOG_LEVEL": "3",  # 2 still prints harmless "E0000 ... NodeDef mentions" lines per epoch
    # the logged model is a NumPy pyfunc with explicit requirements: the project's whole uv.lock (with
    # TensorFlow) would only mislead `mlflow models serve`, and it was copied only when run from a checkout
    "MLFLOW_LOG_UV_FILES": "false",
}


def apply_quiet_defaults(environ: MutableMapping[str, str] | None = None) -> None:
    """Telemetry off in this process (and its children), unless the user decided otherwise."""
    env = os.environ if environ is None else environ
    for key, value in QUIET_DEFAULTS.items():
        env.setdefault(key, value)


@dataclass(frozen=True)
class Runtime:
    """Where this process sends flow runs and MLflow runs (for the user-facing summary)."""

    prefect_api_url: str | None  # None: Prefect's ephemeral server on a local SQLite file
    prefect_home: Path
    mlflow_tracking_uri: str

    @property
    def embedded_prefect(self) -> bool:
        return self.prefect_api_url is None

    @property
    def prefect_database(self) -> Path:
        return self.prefect_home / "prefect.db"

    def ui_hints(self) -> list[str]:
        """Commands that open both UIs on what this process recorded; they work from any folder (the
        programs and paths are absolute, not ``.venv/bin/...`` relative to a checkout)."""
        hints: list[str] = []
        api_url = self.prefect_api_url
        if api_url is None:  # embedded_prefect
            home = shlex.quote(str(self.prefect_home.resolve()))
            hints.append(
                f"Prefect UI:  PREFECT_HOME={home} PREFECT_SERVER_ANALYTICS_ENABLED=false "
                f"{venv_program('prefect')} server start"
                "  (then http://127.0.0.1:4200)"
            )
        else:
            hints.append(f"Prefect UI:  {api_url.removesuffix('/api')}")
        uri = self.mlflow_tracking_uri
        if uri.startswith(("http://", "https://")):
            hints.append(f"MLflow UI:   {uri}")
        else:
            hints.append(
                f"MLflow UI:   {venv_program('mlflow')} ui --backend-store-uri {shlex.quote(uri)} "
                "--host 127.0.0.1 --port 5000 --workers 1"
                "  (then http://127.0.0.1:5000)"
            )
        return hints


def venv_program(name: str) -> str:
    """The absolute path of ``name`` installed beside this Python (the project's venv), shell-quoted;
    the bare name when it is not there (then it must be on PATH)."""
    program = Path(sys.executable).absolute().parent / name
    return shlex.quote(str(program)) if program.is_file() else name


# What TensorFlow prints to the C++ stderr while it is imported, whatever TF_CPP_MIN_LOG_LEVEL says (the
# absl notice comes before logging is initialised, so the level cannot filter it): nothing for our users.
_TF_IMPORT_NOISE = re.compile(
    r"absl::InitializeLog\(\)|oneDNN custom operations are on|cpu_feature_guard|"
    r"This TensorFlow binary is optimized|Unable to register cu(DNN|FFT|BLAS) factory|"
    r"computation placer already registered|TF-TRT Warning|Could not find cuda drivers|"
    r"cuInit: UNKNOWN ERROR|failed call to cuInit"
)


_TF_IMPORT_LOCK = threading.Lock()
_TF_IMPORTED = False


def import_tensorflow_quietly() -> None:
    """Import TensorFlow once with file descriptor 2 captured, then pass on whatever it printed that is
    not its known start-up noise (``_TF_IMPORT_NOISE``). Later ``import tensorflow``/``keras`` are
    silent (the module is loaded). Anything else written to stderr meanwhile is passed on, in order."""
    with _TF_IMPORT_LOCK:  # mapped training tasks call this from several threads at once
        if _TF_IMPORTED:
            return
        text = _capture_tensorflow_import()
    kept = [line for line in text.splitlines() if line.strip() and not _TF_IMPORT_NOISE.search(line)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")
        sys.stderr.flush()


def _capture_tensorflow_import() -> str:
    """Import TensorFlow with fd 2 captured (the caller holds ``_TF_IMPORT_LOCK``); what it printed."""
    global _TF_IMPORTED
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401 - imported for its side effect: loaded once, quietly

            _TF_IMPORTED = True
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
    return text


def configure_embedded(settings: Settings, environ: dict[str, str] | None = None) -> Runtime:
    """Set env defaults so Prefect and MLflow run locally and quietly; return where runs will go.

    Call it before the first ``import prefect`` in the process. ``environ`` defaults to ``os.environ``
    (tests pass a dict to check the decisions without touching the process).
    """
    env = os.environ if environ is None else environ
    apply_quiet_defaults(env)
    startup = str(settings.prefect.startup_timeout_seconds)
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", startup)
    api_url = env.get("PREFECT_API_URL") or None
    if not env.get("PREFECT_HOME"):
        env["PREFECT_HOME"] = str(settings.paths.prefect_home.resolve())
    prefect_home = Path(env["PREFECT_HOME"]).expanduser()
    if api_url is None:
        # Ephemeral mode: Prefect starts its own server on a SQLite file under PREFECT_HOME.
        # Its default database is PREFECT_HOME/prefect.db, which `prefect server start` then shows.
        env.setdefault("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true")
    prefect_home.mkdir(parents=True, exist_ok=True)

    tracking_uri = settings.resolve_mlflow_tracking_uri(env)
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return Runtime(prefect_api_url=api_url, prefect_home=prefect_home, mlflow_tracking_uri=tracking_uri)
