"""events.parquet -> actions: the tokens (``verb_resource``) the model learns, in log order.

Writes ``actions.txt`` (one token a line, the seed corpus format, so files move both ways) and
``actions.parquet`` (the same sequence with timestamps and provenance, for time-based splits).
Filtering and token building are vectorised in Arrow, one Parquet row group at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from perfspec.actions.presets import SUBRESOURCE_SEPARATOR, VERB_SEPARATOR, ActionRule, resolve, split
from perfspec.errors import InputError
from perfspec.fileio import atomic_open, atomic_path
from perfspec.settings import ActionsSettings

__all__ = ["ACTIONS_SCHEMA", "ActionsSummary", "build_actions", "count_with_username"]

ACTIONS_SCHEMA = pa.schema(
    [
        pa.field("position", pa.int64(), nullable=False),
        pa.field("action", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("verb", pa.string()),
        pa.field("resource", pa.string()),
        pa.field("subresource", pa.string()),
        pa.field("namespace", pa.string()),
        pa.field("name", pa.string()),
        pa.field("username", pa.string()),
        pa.field("audit_id", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("source_line", pa.int64()),
    ]
)
_NEEDED = ("request_received_at", "verb", "resource", "subresource", "namespace", "name", "username",
           "audit_id", "source_file", "source_line")  # fmt: skip


@dataclass
class ActionsSummary:
    """What ``build_actions`` did: how many events went in, why some were dropped, what came out."""

    preset: str
    events: int = 0
    actions: int = 0
    distinct_actions: int = 0
    dropped_by_verb: int = 0
    dropped_by_resource: int = 0
    dropped_no_verb: int = 0
    drop_verbs: list[str] = field(default_factory=list)
    drop_resources: list[str] = field(default_factory=list)
    include_subresource: bool = False
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_actions(events_parquet: Path, out_txt: Path, settings: ActionsSettings) -> ActionsSummary:
    """Write ``out_txt`` and ``out_txt.with_suffix('.parquet')`` from a cleaned ``events.parquet``.

    A ``.txt`` input (a seed corpus, one ``verb_resource`` a line) is accepted too: the same drop
    rule is applied to its tokens, and timestamps are null. Raises ``InputError`` for a missing or
    unreadable input.
    """
    rule = resolve(settings)
    events_parquet, out_txt = Path(events_parquet), Path(out_txt)
    if out_txt.suffix != ".txt":
        # The .parquet twin and the report are named from --out: anything but FILE.txt would collide.
        raise InputError(
            f"--out {out_txt} must name a .txt file (actions.parquet and the report go beside it)",
            hint=f"e.g. --out {out_txt.with_suffix('') / 'actions.txt'}",
        )
    out_parquet = out_txt.with_suffix(".parquet")
    if out_parquet == events_parquet or out_txt == events_parquet:
        raise InputError(f"{out_txt}: would overwrite the input", hint="choose another --out")
    summary = ActionsSummary(
        preset=rule.name,
        drop_verbs=list(rule.drop_verbs),
        drop_resources=list(rule.drop_resources),
        include_subresource=rule.include_subresource,
    )
    distinct: set[str] = set()
    position = 0
    with atomic_open(out_txt) as txt, atomic_path(out_parquet) as parquet_tmp:
        writer = pq.ParquetWriter(parquet_tmp, ACTIONS_SCHEMA, compression="zstd")
        try:
            for batch in _event_batches(events_parquet):
                table = _actions_of(batch, rule, summary, position)
                if table.num_rows == 0:
                    continue
                tokens = table.column("action").to_pylist()
                txt.write(("\n".join(tokens) + "\n").encode())
                distinct.update(tokens)
                writer.write_table(table, row_group_size=table.num_rows)
                position += table.num_rows
        finally:
            writer.close()
    summary.actions = position
    summary.distinct_actions = len(distinct)
    summary.outputs = [str(out_txt), str(out_parquet)]
    return summary


def _actions_of(batch: pa.Table, rule: ActionRule, summary: ActionsSummary, position: int) -> pa.Table:
    """Filter one batch of events by the rule and spell its tokens (vectorised)."""
    verb, resource = batch["verb"], batch["resource"]
    no_verb = pc.is_null(verb)
    verb_dropped = pc.is_in(verb, value_set=pa.array(rule.drop_verbs, pa.string()))
    resource_dropped = pc.is_in(resource, value_set=pa.array(rule.drop_resources, pa.string()))
    verb_ok = pc.invert(pc.or_(no_verb, verb_dropped))
    keep = pc.and_(verb_ok, pc.invert(resource_dropped))
    summary.events += batch.num_rows
    summary.dropped_no_verb += _count(no_verb)
    summary.dropped_by_verb += _count(verb_dropped)
    summary.dropped_by_resource += _count(pc.and_(verb_ok, resource_dropped))
    kept = batch.filter(keep)
    token = pc.binary_join_element_wise(kept["verb"], pc.fill_null(kept["resource"], ""), VERB_SEPARATOR)
    if rule.include_subresource:
        sub = kept["subresource"]
        has_sub = pc.fill_null(pc.not_equal(sub, ""), False)
        token = pc.if_else(has_sub, pc.binary_join_element_wise(token, sub, SUBRESOURCE_SEPARATOR), token)
    count = kept.num_rows
    columns = ["verb", "resource", "subresource", "namespace", "name", "username", "audit_id", "source_file"]
    return pa.Table.from_arrays(
        [
            pa.array(range(position, position + count), pa.int64()),
            token,
            kept["request_received_at"],
            *(kept[c] for c in columns),
            kept["source_line"],
        ],
        schema=ACTIONS_SCHEMA,
    )


def _count(mask: pa.ChunkedArray) -> int:
    return int(pc.sum(pc.cast(pc.fill_null(mask, False), pa.int64())).as_py() or 0)


def _event_batches(path: Path) -> Iterator[pa.Table]:
    """Row groups of the needed columns of ``events.parquet``, or of a ``.txt`` token file."""
    if not path.is_file():
        raise InputError(f"{path}: no such file", hint="run `perfspec clean` first, or check the path")
    if path.suffix == ".txt":
        yield _txt_table(path)
        return
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(
            f"{path}: not a Parquet file ({exc})", hint="pass the events.parquet written by `perfspec clean`"
        ) from exc
    missing = [c for c in _NEEDED if c not in parquet.schema_arrow.names]
    if missing:
        raise InputError(
            f"{path}: not an events.parquet (missing columns {', '.join(missing)})",
            hint="pass the events.parquet written by `perfspec clean`",
        )
    with parquet:
        for group in range(parquet.num_row_groups):
            yield parquet.read_row_group(group, columns=list(_NEEDED))


def _txt_table(path: Path) -> pa.Table:
    """A seed-style token file as an events-like table: ``verb_resource`` split at the first ``_``."""
    try:
        tokens = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text file of actions ({exc})") from exc
    verbs, resources, subresources = [], [], []
    for token in tokens:
        verb, resource, sub = split(token)
        verbs.append(verb)
        resources.append(resource)
        subresources.append(sub)
    count = len(tokens)
    nulls = pa.nulls(count, pa.string())
    return pa.table(
        {
            "request_received_at": pa.nulls(count, pa.timestamp("us", tz="UTC")),
            "verb": pa.array(verbs, pa.string()),
            "resource": pa.array(resources, pa.string()),
            "subresource": pa.array(subresources, pa.string()),
            "namespace": nulls,
            "name": nulls,
            "username": nulls,
            "audit_id": nulls,
            "source_file": pa.array([str(path)] * count, pa.string()),
            "source_line": pa.array(range(1, count + 1), pa.int64()),
        }
    )


def count_with_username(actions_parquet: Path) -> int:
    """Actions whose requester is known (a non-empty username): what actor streams need."""
    usernames = pq.read_table(actions_parquet, columns=["username"]).column("username")
    return int(pc.sum(pc.fill_null(pc.greater(pc.utf8_length(usernames), 0), False)).as_py() or 0)
