"""The version of the rules each cached stage applies: a digest of the source that implements them.

Why a digest and not a hand-bumped constant: the nightly pipeline reuses ``events.parquet``,
``actions.txt`` and datasets from the Prefect cache when their inputs are unchanged. If a rule changes
(a reject reason, the paper filter, the repeat cut) and nobody bumps a number, the cache silently
serves outputs of the old rules. Hashing the modules that implement a stage cannot be forgotten; a
cosmetic edit only costs one recomputation.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

#: The modules (or packages: every module under them) whose code decides each cached stage's output.
STAGE_RULES: dict[str, tuple[str, ...]] = {
    "clean": ("perfspec.audit",),
    "actions": ("perfspec.actions",),
    "dataset": ("perfspec.learn.dataset", "perfspec.learn.repeats", "perfspec.learn.vocab"),
}


def _sources(name: str) -> list[Path]:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"no module named {name!r}", name=name)
    if spec.submodule_search_locations:  # a package: all of its modules
        return sorted(p for folder in spec.submodule_search_locations for p in Path(folder).rglob("*.py"))
    return [Path(spec.origin)]


@functools.cache
def rules_version(stage: str) -> str:
    """12 hex digits that change whenever the source of ``STAGE_RULES[stage]`` changes."""
    digest = hashlib.sha256()
    for name in STAGE_RULES[stage]:
        for path in _sources(name):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]
