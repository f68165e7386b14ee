"""A short JSON message to a webhook when a flow fails: someone is told, nobody has to watch the UI.

Why plain ``urllib`` and never an exception: the alert is sent from inside a failing run; a missing
or slow receiver must neither mask the run's own error nor hang it (bounded timeout, one attempt,
the failure to notify is returned for the caller to log).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

#: What a message holds (a contract for whoever consumes the webhook).
FIELDS = ("source", "flow", "run_name", "state", "error", "prefect_run_url", "mlflow", "at")


def alert_message(
    *,
    flow: str,
    run_name: str,
    state: str,
    error: str | None,
    prefect_run_url: str | None,
    mlflow: str | None,
    at: str,
) -> dict[str, Any]:
    """The message: flow, run, state, the error's first line (bounded), links to both UIs."""
    first = (error or "").strip().splitlines()[0][:500] if (error or "").strip() else None
    return {
        "source": "perfspec",
        "flow": flow,
        "run_name": run_name,
        "state": state,
        "error": first,
        "prefect_run_url": prefect_run_url,
        "mlflow": mlflow,
        "at": at,
    }


def post_alert(url: str, message: dict[str, Any], timeout: float = 5.0) -> str | None:
    """POST ``message`` as JSON to ``url``; None when delivered, else why not (one line)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(message).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "perfspec-alerts"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status >= 300:
                return f"webhook answered HTTP {response.status}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        return f"webhook not reached: {error}"
    return None
