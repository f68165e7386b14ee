"""Flow state hooks: a failed or crashed ``pipeline`` / ``collect`` run tells someone (perfspec.alerts)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from perfspec.alerts import alert_message, post_alert
from perfspec.settings import get_settings


def _prefect_run_url(flow_run: Any) -> str | None:
    """The flow run's page when a UI is configured (``PREFECT_UI_URL``), else None."""
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value()
    return f"{str(base).rstrip('/')}/runs/flow-run/{flow_run.id}" if base else None


def notify(flow: Any, flow_run: Any, state: Any) -> None:
    """Post one alert for this run's final state, if a webhook is configured; log if it cannot."""
    from prefect.logging.loggers import flow_run_logger

    settings = get_settings()
    url = settings.prefect.alert_webhook_url
    if not url:
        return
    message = alert_message(
        flow=flow.name,
        run_name=flow_run.name,
        state=state.name,
        error=state.message,
        prefect_run_url=_prefect_run_url(flow_run),
        mlflow=settings.mlflow_tracking_uri,
        at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    problem = post_alert(url, message, settings.prefect.alert_timeout_seconds)
    if problem is not None:
        flow_run_logger(flow_run, flow).warning(
            "alert not sent: %s (PERFSPEC_PREFECT__ALERT_WEBHOOK_URL)", problem
        )


#: What ``pipeline`` and ``collect`` pass as ``on_failure`` and ``on_crashed``.
ON_FAILURE: list[Any] = [notify]
