"""Which audit files a pipeline run reads, in the order their events happened.

Why order matters: the dataset's split is chronological, so files must be read in event order, not
by name. Glob matches are grouped by folder; a campaign folder (with a ``manifest.json``) counts from
its first run's start and only once it completed (a running or failed one is still being written or
is partial); a folder without a manifest from its oldest file's modification time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

from perfspec.collect.manifest import MANIFEST_NAME, is_completed, load_manifest, started_at
from perfspec.errors import InputError

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def check_files(paths: Iterable[Path]) -> list[Path]:
    """Existing files, resolved, in the given order; a missing one is bad input (no retry finds it)."""
    paths = list(paths)
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise InputError(f"audit log not found: {', '.join(missing)}", hint="pass existing files to --source")
    return [Path(p).resolve() for p in paths]


def resolve_sources(items: Iterable[str], data_dir: Path) -> list[Path]:
    """Files and folders as given; an item with ``*``/``?``/``[`` is a glob (relative ones under
    ``data_dir``) whose matches come in event order (module docstring)."""
    resolved: list[Path] = []
    for item in items:
        if any(ch in item for ch in "*?["):
            pattern = Path(item)
            if pattern.is_absolute():
                base, relative = Path(pattern.anchor), str(pattern.relative_to(pattern.anchor))
            else:
                base, relative = Path(data_dir), item
            matches = in_event_order(p for p in base.glob(relative) if p.is_file())
            if not matches:
                raise InputError(
                    f"no audit logs match {item!r} (under {base}) in completed campaigns",
                    hint="collect first, or pass --source",
                )
            resolved += matches
        elif Path(item).is_dir():
            resolved.append(Path(item).resolve())  # the cleaner reads a folder's files itself
        else:
            resolved.append(Path(item))
    check_files(p for p in resolved if not p.is_dir())
    return [p.resolve() for p in resolved]


def in_event_order(files: Iterable[Path]) -> list[Path]:
    """``files`` grouped by folder, folders by when their events began; unfinished campaigns left out."""
    by_folder: dict[Path, list[Path]] = {}
    for path in files:
        by_folder.setdefault(path.parent, []).append(path)
    ordered: list[tuple[dt.datetime, Path]] = []
    for folder, members in by_folder.items():
        manifest_path = folder / MANIFEST_NAME
        if manifest_path.is_file():
            manifest = load_manifest(manifest_path)
            if not is_completed(manifest):
                continue
            began = started_at(manifest) or _EPOCH
        else:
            began = dt.datetime.fromtimestamp(min(p.stat().st_mtime for p in members), tz=dt.UTC)
        ordered.append((began, folder))
    return [p for _, folder in sorted(ordered) for p in sorted(by_folder[folder])]
