"""A campaign's ``manifest.json``: reading, writing, and the facts other layers ask of it.

Why its own module: the runner writes the manifest, the labeller reads its steps, and source
ordering reads its status and start time; each used to parse it its own way. Here: what is completed,
what an earlier run may have left installed, when the campaign started, whether it finished.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from perfspec.errors import InputError
from perfspec.fileio import write_json_atomic

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1


def utc_now() -> str:
    """The manifest's time stamps: RFC 3339 UTC with microseconds and ``Z``."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def load_manifest(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read campaign manifest {path}: {error}") from error


def save_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Atomically: a crash leaves the previous complete manifest, never a torn one."""
    write_json_atomic(Path(path), manifest)


def completed_units(manifest: dict[str, Any]) -> set[str]:
    """Units whose install ran and whose planned uninstall succeeded (nothing of them is left)."""
    installed = {
        r["unit"]
        for r in manifest.get("steps", [])
        if r["action"] == "install" and r["kind"] == "planned" and r["result"] in ("ok", "failed")
    }
    removed = {
        r["unit"]
        for r in manifest.get("steps", [])
        if r["action"] == "uninstall" and r["kind"] == "planned" and r["result"] == "ok"
    }
    return installed & removed


def left_installed(manifest: dict[str, Any]) -> list[str]:
    """Releases an earlier run may have left installed (install attempted, no successful uninstall after)."""
    present: dict[str, None] = {}
    for record in manifest.get("steps", []):
        if record["action"] == "install":
            present[record["release"]] = None
        elif record["result"] == "ok":
            present.pop(record["release"], None)
    return list(present)


def is_completed(manifest: dict[str, Any]) -> bool:
    """True once the campaign finished (a running or failed one is still being written or partial)."""
    return manifest.get("status") == "completed"


def started_at(manifest: dict[str, Any]) -> dt.datetime | None:
    """When the campaign's first run started (its events begin then)."""
    runs = manifest.get("runs") or []
    first = runs[0].get("started_at") if runs else None
    return dt.datetime.fromisoformat(first) if first else None
