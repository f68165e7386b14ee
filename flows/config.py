"""Flow parameters -> Settings, and the bundled sample's location (no Prefect here)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from perfspec.settings import Settings, get_settings

__all__ = ["dataset_name", "flow_settings"]

#: The pipeline's default input when no source is given (file name inside the bundled sample).
SAMPLE_LOG_NAME = "audit-logs.csv.gz"


def flow_settings(data_dir: Path | None = None, epochs: int | None = None) -> Settings:
    """Defaults + environment, with the flow's parameters on top (like CLI flags)."""
    settings = get_settings()
    if data_dir is not None:
        settings = settings.with_section("paths", data_dir=Path(data_dir))
    if epochs is not None:
        settings = settings.with_section("train", epochs=epochs)
    return settings


def dataset_name(sources: list[Path]) -> str:
    """Directory name for clean/ and actions/: the file's stem, or a short hash of several names."""
    if len(sources) == 1:
        stem = re.sub(r"(\.(gz|csv|jsonl?|log|txt))+$", "", sources[0].name)
        return re.sub(r"[^A-Za-z0-9._-]+", "-", stem) or "source"
    digest = hashlib.sha256("\n".join(str(p) for p in sources).encode()).hexdigest()[:10]
    return f"combined-{digest}"
