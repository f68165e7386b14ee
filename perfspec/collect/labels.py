"""Link received audit events to the campaign step that caused them, by time.

Why by time: the API server stamps every event (``requestReceivedTimestamp``) and the manifest stamps
every step (UTC start/end), so an event belongs to the latest step that had started when the request
arrived: the step itself, or the pause after it (controllers keep reacting after helm returns). The
namespace match is recorded beside it as a cross-check, not used to assign. Both clocks are the same
machine's with kind; on a remote cluster they must be NTP-synchronised.

Output ``labels.jsonl``: one row per event line, ``{source_file, file, line, audit_id, stage, ts,
record, step, action, chart, release, run, phase, namespace_match}``; ``line`` is 1-based.
Joining onto ``events.parquet`` (``source_file``, ``source_line``):
- ``source_file`` is the audit file's path spelled from the audit folder as it was given here, which is
  exactly what ``perfspec clean <that folder>`` stores: after ``perfspec label raw/demo`` (or
  ``collect``, which labels ``<data_dir>/raw/<name>``), clean ``raw/demo`` (same spelling) and join on
  ``labels.source_file == events.source_file and labels.line == events.source_line``;
- ``file`` is the same file relative to the campaign folder (the folder of ``labels.jsonl``; absolute
  when the audit folder lies elsewhere): stable however the folder is spelled, e.g. join on
  ``PurePath(events.source_file).relative_to(<folder given to clean>) == PurePath(labels.file)``.
"""

from __future__ import annotations

import bisect
import datetime as dt
from pathlib import Path
from typing import Any

import orjson

from perfspec.collect.manifest import load_manifest, save_manifest
from perfspec.fileio import atomic_open

LABELS_NAME = "labels.jsonl"


def campaign_relative(path: Path, campaign_dir: Path) -> str:
    """``path`` relative to ``campaign_dir`` (POSIX), or absolute when it lies outside it."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path(campaign_dir).resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def parse_time(text: str | None) -> float | None:
    """RFC 3339 (``...Z``, micro- or nanoseconds) -> POSIX seconds, or None."""
    if not text:
        return None
    try:
        if "." in text:  # Python parses at most 6 fractional digits
            head, _, frac = text.partition(".")
            digits = "".join(ch for ch in frac if ch.isdigit())
            text = f"{head}.{digits[:6]}{frac[len(digits) :]}"
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def audit_files(audit_dir: Path) -> list[Path]:
    """The receiver's/tailer's output files in write order (``audit-000001.jsonl``, ...)."""
    return sorted(Path(audit_dir).glob("audit-*.jsonl"))


class _Timeline:
    """The manifest's executed steps in start order: which one was running at a given instant."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.records = [r for r in manifest.get("steps", []) if r.get("started_at")]
        self.order = sorted(range(len(self.records)), key=lambda i: self._start(i))
        self.starts = [self._start(i) for i in self.order]
        ends = [r.get("ended_at") for r in manifest.get("runs", [])]
        self.end = max((parse_time(e) or 0.0 for e in ends if e), default=None)
        self.counts = {i: {"events": 0, "namespace_matches": 0} for i in range(len(self.records))}

    def _start(self, index: int) -> float:
        return parse_time(self.records[index]["started_at"]) or 0.0

    def place(self, ts: float | None, namespace: str | None) -> dict[str, Any]:
        """The label fields of an event received at ``ts`` (``phase`` says before/after/which step)."""
        if ts is None:
            return {"phase": "unparsed"}
        pos = bisect.bisect_right(self.starts, ts) - 1
        if pos < 0:
            return {"phase": "before"}
        if self.end is not None and ts > self.end:
            return {"phase": "after"}
        index = self.order[pos]
        record = self.records[index]
        end = parse_time(record.get("ended_at"))
        match = namespace == record["namespace"]
        self.counts[index]["events"] += 1
        self.counts[index]["namespace_matches"] += int(match)
        return {
            "record": index,
            "step": record["step"],
            "action": record["action"],
            "chart": record["chart"],
            "release": record["release"],
            "run": record["run"],
            "phase": "during" if end is None or ts <= end else "after-step",
            "namespace_match": match,
        }

    def per_step(self) -> list[dict[str, Any]]:
        return [
            {
                "record": i,
                "step": self.records[i]["step"],
                "action": self.records[i]["action"],
                "chart": self.records[i]["chart"],
                **counts,
            }
            for i, counts in self.counts.items()
        ]


def _events(path: Path) -> Any:
    """(line number, event dict or {}, request time or None) of each non-blank line of an audit file."""
    with open(path, "rb") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                event = orjson.loads(line)
                ts = parse_time(event.get("requestReceivedTimestamp") or event.get("stageTimestamp"))
            except (orjson.JSONDecodeError, AttributeError):
                event, ts = {}, None
            yield line_no, event, ts


def label_campaign(manifest_path: Path, audit_dir: Path, out_path: Path) -> dict[str, Any]:
    """Write ``out_path`` (labels.jsonl) and return a summary (counts overall and per executed step)."""
    timeline = _Timeline(load_manifest(manifest_path))
    summary = {"events": 0, "labelled": 0, "before": 0, "after": 0, "unparsed": 0, "files": 0}
    with atomic_open(Path(out_path)) as out:
        for path in audit_files(audit_dir):
            summary["files"] += 1
            source_file, file = str(path), campaign_relative(path, Path(out_path).parent)
            for line_no, event, ts in _events(path):
                summary["events"] += 1
                namespace = (event.get("objectRef") or {}).get("namespace")
                label = timeline.place(ts, namespace)
                phase = label["phase"]
                if phase in ("before", "after", "unparsed"):
                    summary[phase] += 1
                else:
                    summary["labelled"] += 1
                row = {
                    "source_file": source_file,
                    "file": file,
                    "line": line_no,
                    "audit_id": event.get("auditID"),
                    "stage": event.get("stage"),
                    "ts": ts,
                    "record": None,
                    "step": None,
                    "phase": None,
                    **label,
                }
                out.write(orjson.dumps(row) + b"\n")
    return {**summary, "per_step": timeline.per_step()}


def record_labels(manifest_path: Path, audit_dir: Path) -> dict[str, Any]:
    """Label the campaign's events (``labels.jsonl`` beside the manifest) and store the summary in the
    manifest: the one way ``collect``, ``collect --receive`` and ``label`` record labels."""
    summary = label_campaign(manifest_path, audit_dir, Path(manifest_path).parent / LABELS_NAME)
    manifest = load_manifest(manifest_path)
    manifest["labels"] = summary
    save_manifest(manifest_path, manifest)
    return summary
