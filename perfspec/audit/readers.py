"""Turning parsed audit records into event rows (tuples in ``schema.EVENT_COLUMNS`` order).

Why tuples: the cleaner's hot loop appends one tuple per event and transposes a whole batch at once
(``zip(*rows)``), which is far cheaper than appending to 17 lists. Only metadata fields are picked;
``requestObject``/``responseObject`` are never touched.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import reprlib
from collections.abc import Iterator
from typing import Any

from perfspec.audit.schema import MAX_AUDIT_ID_CHARS, STAGE_RANK

Row = tuple[Any, ...]
_EMPTY: dict[str, Any] = {}


class NotAnEvent(ValueError):
    """A JSON value that is not an audit Event; ``reason`` is a short code for rejects.jsonl."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def shown(value: Any) -> str:
    """A sender's value as a reject reason shows it: short, and never the inside of an object or array
    (which could hold a Secret's data, and whose repr could be megabytes)."""
    if isinstance(value, dict | list):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    return _REPR.repr(value)


def event_row(ev: Any) -> Row:
    """The row of one audit ``Event`` (v1 or v1beta1). Raises ``NotAnEvent`` when it is not one."""
    if ev.__class__ is not dict:
        raise NotAnEvent("not-an-event", f"a JSON {type(ev).__name__}, not an object")
    kind = ev.get("kind")
    if kind != "Event" and (kind is not None or "auditID" not in ev):
        raise NotAnEvent("not-an-event", f"kind is {shown(kind)}, expected 'Event'")
    audit_id = ev.get("auditID")
    stage = ev.get("stage")
    if audit_id.__class__ is not str or not 0 < len(audit_id) <= MAX_AUDIT_ID_CHARS:
        raise NotAnEvent("bad-audit-id", "auditID missing, not a string, or longer than 256 characters")
    if stage.__class__ is not str or stage not in STAGE_RANK:
        raise NotAnEvent("bad-stage", f"stage {shown(stage)} is not one of {', '.join(STAGE_RANK)}")
    try:
        obj = ev.get("objectRef") or _EMPTY
        user = ev.get("user") or _EMPTY
        status = ev.get("responseStatus") or _EMPTY
        ips = ev.get("sourceIPs")
        ts = ev.get("timestamp")
        return (
            audit_id,
            stage,
            ev.get("requestReceivedTimestamp") or ts,
            ev.get("stageTimestamp") or ts,
            ev.get("verb"),
            user.get("username"),
            ev.get("userAgent"),
            ips[0] if ips.__class__ is list and ips else None,
            obj.get("namespace"),
            obj.get("resource"),
            obj.get("subresource"),
            obj.get("name"),
            obj.get("apiGroup"),
            obj.get("apiVersion"),
            status.get("code"),
            ev.get("requestURI"),
            ev.get("level"),
        )
    except AttributeError as exc:  # objectRef/user/responseStatus not objects
        raise NotAnEvent("malformed-event", f"a nested field has the wrong type ({exc})") from exc


def expand(value: Any) -> list[Any] | None:
    """The events inside an ``EventList`` or a JSON array; ``None`` for anything else."""
    if value.__class__ is dict and value.get("kind") == "EventList":
        items = value.get("items")
        return items if items.__class__ is list else []
    if value.__class__ is list:
        return value
    return None


# --- the seed's Logstash CSV -------------------------------------------------------------------------
# host, requestReceivedTimestamp, user.username, verb, objectRef.resource, objectRef.subresource,
# objectRef.name, responseObject.metadata.name, requestURI, auditID, stage, responseStatus.code,
# responseObject.metadata.uid, responseObject.metadata.ownerReferences[0].uid, responseObject.details.uid


def csv_row(line: str) -> Row:
    """The row of one Logstash CSV line. Fields the CSV lacks are null; ``host`` is not an event field."""
    try:
        fields = next(csv.reader((line,)))
    except (csv.Error, StopIteration) as exc:
        raise NotAnEvent("bad-csv", f"not a CSV row ({exc})") from exc
    if len(fields) != 15:
        raise NotAnEvent("bad-csv", f"{len(fields)} columns, expected 15 (a partial row?)")
    (_host, received, username, verb, resource, subresource, name, response_name, uri, audit_id, stage,
     code, *_uids) = fields  # fmt: skip
    if not 0 < len(audit_id) <= MAX_AUDIT_ID_CHARS:
        raise NotAnEvent("bad-audit-id", "auditID column is empty or longer than 256 characters")
    if stage not in STAGE_RANK:
        raise NotAnEvent("bad-stage", f"stage {shown(stage)} is not one of {', '.join(STAGE_RANK)}")
    if code and not code.isdigit():
        raise NotAnEvent("bad-field", f"responseStatus.code {shown(code)} is not a number")
    return (
        audit_id,
        stage,
        received or None,
        None,
        verb or None,
        username or None,
        None,
        None,
        None,
        resource or None,
        subresource or None,
        name or response_name or None,
        None,
        None,
        int(code) if code else None,
        uri or None,
        None,
    )


# --- pretty-printed documents ------------------------------------------------------------------------
_WHITESPACE = re.compile(r"[ \t\r\n]*")
_NEXT_DOCUMENT = re.compile(r"\n(?=[{\[])")


class BadDocument:
    """A document that could not be parsed: where it starts, why, and its first characters."""

    __slots__ = ("detail", "line_no", "text")

    def __init__(self, line_no: int, detail: str, text: str) -> None:
        self.line_no = line_no
        self.detail = detail
        self.text = text


def iter_documents(blocks: Iterator[bytes], max_document_bytes: int) -> Iterator[tuple[int, Any]]:
    """Parse concatenated JSON documents (pretty-printed Events, EventLists, arrays) one at a time.

    Yields ``(line number where the document starts, value or BadDocument)``. Memory is bounded by
    the largest single document (``max_document_bytes``), never the file. The buffer grows by
    doubling, so re-parsing an incomplete document costs at most about twice its size.
    """
    decoder = json.JSONDecoder()
    text_decoder = codecs.getincrementaldecoder("utf-8")("replace")
    buf = ""
    pos = 0
    line_no = 1
    eof = False
    want = 0  # parse again only once the buffer holds at least this many characters

    def more() -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        try:
            block = next(blocks)
        except StopIteration:
            eof = True
            buf = buf[pos:] + text_decoder.decode(b"", final=True)
            pos = 0
            return True
        buf = buf[pos:] + text_decoder.decode(block)
        pos = 0
        return True

    while True:
        end_ws = _WHITESPACE.match(buf, pos).end()  # type: ignore[union-attr]
        line_no += buf.count("\n", pos, end_ws)
        pos = end_ws
        if pos >= len(buf) or len(buf) - pos < want:
            if not more():
                return
            if eof or len(buf) - pos >= want:
                want = 0
            continue
        if buf.startswith("\ufeff", pos):
            pos += 1
            continue
        try:
            value, end = decoder.raw_decode(buf, pos)
        except json.JSONDecodeError as exc:
            pending = len(buf) - pos
            if not eof and pending <= max_document_bytes:
                want = pending * 2
                more()
                continue
            reason = "document too large" if pending > max_document_bytes else f"invalid JSON ({exc.msg})"
            resync = _NEXT_DOCUMENT.search(buf, max(exc.pos, pos + 1))
            stop = resync.start() + 1 if resync else len(buf)
            yield line_no, BadDocument(line_no, reason, buf[pos : min(stop, pos + 65_536)])
            line_no += buf.count("\n", pos, stop)
            pos = stop
            want = 0
            continue
        yield line_no, value
        line_no += buf.count("\n", pos, end)
        pos = end
        want = 0
