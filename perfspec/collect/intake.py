"""What the webhook receiver makes of one request body: the events to store, as one buffer of JSON
lines, and the items it sets aside, decided by the cleaner's own rule.

Why it is built this way:
- Memory stays near the body's size whatever its shape. The body is split into items as
  ``msgspec.Raw`` slices (no Python objects for their contents), metadata is decoded by the cleaner's
  typed fast path (``audit.fastpath``), and a stored line is the item's top-level fields copied
  verbatim. Parsing 16 MiB of ``[[],[],…]`` into Python objects took ~1.3 GB; this takes ~0.1 GB.
- Nothing acknowledged is rejected later: an item is kept only when ``clean`` would keep the line
  written for it (``readers.event_row`` + ``accept.accept_rows``, and the same JSON checks: valid
  UTF-8, numbers within the double range). Copying raw fields also means an item nested too deep
  for ``orjson.dumps`` (255 levels) is stored like any other.
- A rejected item's or body's sample is redacted as ``clean`` redacts its rejects, parsing at most
  ``PARSE_LIMIT`` bytes (beyond, a prefix cut before its first body or secret key).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import orjson

from perfspec.audit.accept import accept_rows
from perfspec.audit.fastpath import EVENT_DECODER, event_row_of, may_hold_huge_number
from perfspec.audit.readers import NotAnEvent, Row, event_row, shown
from perfspec.audit.redaction import EVENT_BODY_FIELDS, redact_raw

AUDIT_API_VERSIONS = ("audit.k8s.io/v1", "audit.k8s.io/v1beta1")
REJECT_RAW_CHARS = 2048
#: Items, fields and bodies up to this size may be parsed into Python objects (for reasons and samples).
PARSE_LIMIT = 1 << 20
#: Item lists longer than this (bytes) are counted before they are split.
COUNT_ITEMS_ABOVE = 2 << 20
#: A rejected item's sample is parsed (for a thorough redaction) only up to this size: redacting costs
#: ~0.3 s per MiB, and only 2 KiB of it is kept.
SAMPLE_PARSE_LIMIT = 64 << 10
#: The top-level fields ``readers.event_row`` reads: all the slow path decodes of a refused item.
ROW_FIELDS = (
    "kind", "auditID", "stage", "requestReceivedTimestamp", "stageTimestamp", "timestamp", "verb", "user",
    "userAgent", "sourceIPs", "objectRef", "responseStatus", "requestURI", "level",
)  # fmt: skip
_SHALLOW = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
_ANY_JSON = msgspec.json.Decoder(msgspec.Raw)
_EVENT_KIND = msgspec.Raw(b'"Event"')
_JSON_WHITESPACE = np.frombuffer(b" \t\r\n", np.uint8)
_NESTING = (msgspec.DecodeError, RecursionError)


class BadBatch(ValueError):
    """The body is not an audit EventList/Event. ``sample`` is its redacted text when it is JSON."""

    def __init__(self, message: str, sample: str | None = None) -> None:
        super().__init__(message)
        self.sample = sample


class TooManyItems(ValueError):
    """More items in one body than ``max_items``: refused whole (413), before any per-item work."""


@dataclass
class Intake:
    """One body's outcome: ``data`` (JSON lines) holds ``accepted`` events, ``rows`` their rows (what
    ``clean`` makes of them; the receiver hands them to its ``on_accepted`` hook); ``rejects`` the first
    ``max_rejects`` of the ``rejected`` items as reject records (``reason``, redacted ``raw``)."""

    data: bytearray = field(default_factory=bytearray)
    accepted: int = 0
    rejected: int = 0
    bodies_dropped: int = 0
    rejects: list[dict[str, Any]] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)


def redact_sample(raw: bytes | msgspec.Raw) -> str:
    """``redact_raw`` for input of any size: parsed and redacted up to ``SAMPLE_PARSE_LIMIT`` bytes; beyond,
    a prefix cut before its first body or secret key (unparsable text is cut the same way)."""
    data = bytes(raw) if len(raw) <= SAMPLE_PARSE_LIMIT else bytes(memoryview(raw)[: REJECT_RAW_CHARS * 4])
    return redact_raw(data, REJECT_RAW_CHARS)


def _decode_text(raw: msgspec.Raw, limit: int = 256) -> Any:
    """A small JSON value (kind, apiVersion); ``None`` when it is larger than ``limit`` bytes."""
    return msgspec.json.decode(raw) if len(raw) <= limit else None


def count_items(array: bytes | msgspec.Raw) -> int:
    """The number of elements of a JSON array, from its text (already known to be valid JSON) without
    building them: commas at depth 1 outside strings, vectorised. Why: a 16 MiB body of ``0,0,0,…`` is
    5.6 M items, and even as raw slices they take ~360 MB before the item limit could refuse them."""
    data = np.frombuffer(memoryview(array), np.uint8)
    quote = data == ord('"')
    for position in np.flatnonzero(quote[1:] & (data[:-1] == ord("\\"))) + 1:  # rare: escaped quotes
        run = 0
        while position - run - 1 >= 0 and data[position - run - 1] == ord("\\"):
            run += 1
        quote[position] = run % 2 == 0
    outside = (np.cumsum(quote, dtype=np.uint8) & 1) == 0  # wraps at 256: the parity is what counts
    step = (((data == ord("[")) | (data == ord("{"))) & outside).astype(np.int16)
    step -= (((data == ord("]")) | (data == ord("}"))) & outside).astype(np.int16)
    depth = np.cumsum(step, dtype=np.int16)  # nesting deeper than the parser's ~1000 never gets here
    commas = int(np.count_nonzero((data == ord(",")) & outside & (depth == 1)))
    if commas:
        return commas + 1
    return int(np.count_nonzero(~np.isin(data, _JSON_WHITESPACE)) > 2)  # "[]" or "[ x ]"


def _require_json(body: bytes) -> None:
    """BadBatch unless ``body`` is JSON at all (a type error is reported before a syntax error)."""
    try:
        _ANY_JSON.decode(body)
    except RecursionError as error:
        raise BadBatch("not JSON this parser can read: nested deeper than about 1000 levels") from error
    except msgspec.DecodeError as error:
        raise BadBatch(f"not JSON: {error}") from error


def split_body(body: bytes, max_items: int) -> tuple[str, list[msgspec.Raw]]:
    """(apiVersion, items as raw slices) of an EventList or a single Event. Raises BadBatch/TooManyItems."""
    try:  # one pass: splitting into top-level fields validates the whole body's syntax too
        top = _SHALLOW.decode(body)
    except RecursionError as error:
        raise BadBatch("not JSON this parser can read: nested deeper than about 1000 levels") from error
    except msgspec.ValidationError as error:  # not an object, or malformed after its first byte
        _require_json(body)
        raise BadBatch("not a JSON object", redact_sample(body)) from error
    except msgspec.DecodeError as error:  # the message holds a position, never the body's text
        raise BadBatch(f"not JSON: {error}") from error
    api_version = _decode_text(top["apiVersion"]) if "apiVersion" in top else None
    if api_version not in AUDIT_API_VERSIONS:
        raise BadBatch(
            f"apiVersion {shown(api_version)} is not one of {', '.join(AUDIT_API_VERSIONS)}",
            redact_sample(body),
        )
    kind = _decode_text(top["kind"]) if "kind" in top else None
    if kind == "EventList":
        raw_items = top.get("items")
        if raw_items is None or bytes(raw_items) == b"null":
            return str(api_version), []
        if bytes(memoryview(raw_items)[:1]) != b"[":
            raise BadBatch("EventList.items is not a list", redact_sample(body))
        # A large body that could hold too many items is counted before its items are split (~14 ms a
        # MiB); a small one is split at once (its item list takes at most ~20x its size).
        if len(raw_items) > COUNT_ITEMS_ABOVE and body.count(b",") >= max_items:
            count = count_items(raw_items)
            items = None
        else:
            items = _ITEMS.decode(raw_items)
            count = len(items)
        if count > max_items:
            raise TooManyItems(
                f"{count} items in one body, over {max_items} (receiver.max_batch_items); "
                "the API server sends at most --audit-webhook-batch-max-size (400 by default)"
            )
        return str(api_version), items if items is not None else _ITEMS.decode(raw_items)
    if kind == "Event":
        return str(api_version), [msgspec.Raw(body)]
    raise BadBatch(f"kind {shown(kind)} is not EventList or Event", redact_sample(body))


def _is_utf8(raw: msgspec.Raw) -> bool:
    try:
        str(memoryview(raw), "utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _json_problem(raw: msgspec.Raw, ascii_body: bool, huge_numbers_possible: bool) -> str | None:
    """Why ``clean`` would refuse the line as JSON (orjson's rules, stricter than msgspec's skipping)."""
    if not ascii_body and not _is_utf8(raw):
        return "not valid UTF-8"
    if huge_numbers_possible and may_hold_huge_number(bytes(raw)):
        if len(raw) > PARSE_LIMIT:
            return (
                f"may hold a number beyond the double range (an item over {PARSE_LIMIT} bytes: not checked)"
            )
        try:
            orjson.loads(bytes(raw))
        except orjson.JSONDecodeError as error:
            return str(error)
    return None


def _slow_row(raw: msgspec.Raw) -> Row:
    """The row of an item the fast path refused, or NotAnEvent with the cleaner's reason.

    Only the fields ``event_row`` reads are parsed into Python objects, ``PARSE_LIMIT`` bytes in all.
    """
    try:
        top = _SHALLOW.decode(raw)
    except msgspec.ValidationError as error:
        raise NotAnEvent("not-an-event", "not a JSON object") from error
    except _NESTING as error:
        raise NotAnEvent("invalid-json", str(error)) from error
    size = sum(len(top[key]) for key in ROW_FIELDS if key in top)
    if size > PARSE_LIMIT:
        raise NotAnEvent("malformed-event", f"its metadata fields take {size} bytes, over {PARSE_LIMIT}")
    picked: dict[str, Any] = {}
    for key in ROW_FIELDS:
        if key in top:
            try:
                picked[key] = orjson.loads(bytes(top[key]))
            except orjson.JSONDecodeError as error:
                raise NotAnEvent("invalid-json", f"{key}: {error}") from error
    return event_row(picked)


def _event_line(raw: msgspec.Raw, api_version: msgspec.Raw, drop_bodies: bool) -> tuple[bytes, int]:
    """The line stored for a kept item, as the log backend writes it (``kind``/``apiVersion`` first,
    fields copied verbatim, bodies dropped); and how many body fields were dropped."""
    top = _SHALLOW.decode(raw)
    version = top.get("apiVersion")
    event: dict[str, msgspec.Raw] = {
        "kind": _EVENT_KIND,
        "apiVersion": version
        if version is not None and bytes(version) not in (b"null", b'""')
        else api_version,
    }
    dropped = 0
    for key, value in top.items():
        if key in ("kind", "apiVersion"):
            continue
        if drop_bodies and key in EVENT_BODY_FIELDS:
            dropped += 1
            continue
        event[key] = value
    line = msgspec.json.encode(event)
    if b"\n" in line or b"\r" in line:  # JSON whitespace inside a copied value would split the line
        line = msgspec.json.format(line, indent=0)
    return line, dropped


def take_batch(
    body: bytes, *, drop_bodies: bool, max_items: int, max_rejects: int, max_line_bytes: int
) -> Intake:
    """Split a webhook body into the events to store and the items set aside (raises BadBatch,
    TooManyItems for the whole body). A stored line longer than ``max_line_bytes`` (clean's limit) is
    set aside too: clean would reject it."""
    api_version, items = split_body(body, max_items)
    version_raw = msgspec.Raw(orjson.dumps(api_version))
    huge_numbers_possible = may_hold_huge_number(body)
    ascii_body = body.isascii()
    intake = Intake()

    def reject(raw: msgspec.Raw, reason: str) -> None:
        intake.rejected += 1
        if len(intake.rejects) < max_rejects:
            intake.rejects.append({"reason": reason, "raw": redact_sample(raw)})

    rows: list[Row] = []
    candidates: list[msgspec.Raw] = []
    for raw in items:
        problem = _json_problem(raw, ascii_body, huge_numbers_possible)
        if problem is not None:
            reject(raw, f"invalid-json: {problem}")
            continue
        try:
            row = event_row_of(EVENT_DECODER.decode(raw))
        except _NESTING:
            try:
                row = _slow_row(raw)
            except NotAnEvent as error:
                reject(raw, f"{error.reason}: {error.detail}")
                continue
        rows.append(row)
        candidates.append(raw)
    accepted = accept_rows(rows)
    refused = {index: f"{reason}: {detail}" for index, reason, detail in accepted.refused}
    for index, raw in enumerate(candidates):
        if index in refused:
            reject(raw, refused[index])
            continue
        line, dropped = _event_line(raw, version_raw, drop_bodies)
        if len(line) > max_line_bytes:
            reject(raw, f"line-too-long: {len(line)} bytes, over clean's max_line_bytes={max_line_bytes}")
            continue
        intake.data += line
        intake.data += b"\n"
        intake.rows.append(rows[index])
        intake.accepted += 1
        intake.bodies_dropped += dropped
    return intake


def body_digest(body: bytes) -> str:
    """SHA-256 of a rejected body (kept instead of its bytes when it is not JSON)."""
    return hashlib.sha256(body).hexdigest()


def warm_up() -> None:
    """Run the acceptance rule once (its first call imports what pyarrow needs, about a second)."""
    accept_rows([("warm-up", "Panic", "2024-01-01T00:00:00Z", *[None] * 14)])
