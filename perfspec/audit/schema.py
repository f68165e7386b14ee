"""The ``events.parquet`` schema (ARCHITECTURE.md, "Data contracts") and the stage order used to merge
the several records the API server writes for one request."""

from __future__ import annotations

import pyarrow as pa

UTC_US = pa.timestamp("us", tz="UTC")

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("audit_id", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("request_received_at", UTC_US),
        pa.field("stage_at", UTC_US),
        pa.field("verb", pa.string()),
        pa.field("username", pa.string()),
        pa.field("user_agent", pa.string()),
        pa.field("source_ip", pa.string()),
        pa.field("namespace", pa.string()),
        pa.field("resource", pa.string()),
        pa.field("subresource", pa.string()),
        pa.field("name", pa.string()),
        pa.field("api_group", pa.string()),
        pa.field("api_version", pa.string()),
        pa.field("response_code", pa.int32()),
        pa.field("request_uri", pa.string()),
        pa.field("level", pa.string()),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_line", pa.int64(), nullable=False),
    ]
)

#: Columns filled from each event, in schema order (everything except source_file/source_line).
EVENT_COLUMNS: tuple[str, ...] = tuple(EVENTS_SCHEMA.names[:-2])
TIMESTAMP_COLUMNS = ("request_received_at", "stage_at")

#: A request's records in the order the API server emits them; the highest one seen is kept.
STAGE_RANK: dict[str, int] = {
    "RequestReceived": 0,
    "ResponseStarted": 1,
    "ResponseComplete": 2,
    "Panic": 3,
}

#: Audit IDs longer than this are rejected (real ones are 36-character UUIDs).
MAX_AUDIT_ID_CHARS = 256
