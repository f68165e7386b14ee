"""The typed fast path of the JSON-lines hot loop: msgspec decodes only the metadata fields, in C.

Why: ``orjson.loads`` builds a dict for every nested object and a str for every key and value
(annotations, groups, bodies...), then ``event_row`` picks 17 of them in Python. ``EVENT_DECODER``
skips unknown fields inside the parser and validates the picked ones (types, stage, auditID length,
``kind``) in C, so a decoded ``Event`` is exactly a line that ``event_row(orjson.loads(line))``
accepts, with the same values; ``event_columns`` turns a batch of them into columns at C speed.

The fast path never decides a reject: any line it does not take (a msgspec error of any kind) goes
through the orjson path, which gives the reasons and messages. Where msgspec is more lenient than
orjson it is not used at all: invalid UTF-8 inside a skipped value (callers send only ASCII lines
here) and numbers beyond the double range inside a skipped value, which orjson rejects as invalid
JSON (``may_hold_huge_number`` sends such blocks to the orjson path). Nesting too deep for orjson is
too deep for msgspec first (it stops at the interpreter's recursion limit, below orjson's 1024; where a
host raised that limit, ``pass1`` does not use the fast path: ``refuses_what_orjson_refuses``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from operator import attrgetter
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from perfspec.audit.readers import Row
from perfspec.audit.schema import MAX_AUDIT_ID_CHARS

Stage = Literal["RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"]  # schema.STAGE_RANK
AuditID = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_AUDIT_ID_CHARS)]
#: A code outside int32 goes to the orjson path (which reports it as a bad field, as before).
Code = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]


class ObjectRef(msgspec.Struct, frozen=True, gc=False):
    namespace: str | None = None
    resource: str | None = None
    subresource: str | None = None
    name: str | None = None
    apiGroup: str | None = None
    apiVersion: str | None = None


class User(msgspec.Struct, frozen=True, gc=False):
    username: str | None = None


class ResponseStatus(msgspec.Struct, frozen=True, gc=False):
    code: Code | None = None


_NO_OBJECT = ObjectRef()
_NO_USER = User()
_NO_STATUS = ResponseStatus()


class Event(msgspec.Struct, gc=False):
    """The fields of an audit Event that ``event_row`` reads (v1 and v1beta1); the rest is skipped."""

    auditID: AuditID
    stage: Stage
    requestReceivedTimestamp: str | None = None
    stageTimestamp: str | None = None
    verb: str | None = None
    user: User = _NO_USER
    userAgent: str | None = None
    sourceIPs: list[str] | None = None
    objectRef: ObjectRef = _NO_OBJECT
    responseStatus: ResponseStatus = _NO_STATUS
    requestURI: str | None = None
    level: str | None = None
    kind: Literal["Event"] | None = None  # without kind, an object with an auditID is an Event
    timestamp: str | None = None  # v1beta1: the fallback for both timestamps


EVENT_DECODER = msgspec.json.Decoder(Event)

_astuple = msgspec.structs.astuple
_username = attrgetter("username")
_code = attrgetter("code")


def event_row_of(ev: Event) -> Row:
    """The same tuple ``readers.event_row`` gives for the line ``ev`` was decoded from."""
    ts = ev.timestamp
    ips = ev.sourceIPs
    obj = ev.objectRef
    return (
        ev.auditID,
        ev.stage,
        ev.requestReceivedTimestamp or ts,
        ev.stageTimestamp or ts,
        ev.verb,
        ev.user.username,
        ev.userAgent,
        ips[0] if ips else None,
        obj.namespace,
        obj.resource,
        obj.subresource,
        obj.name,
        obj.apiGroup,
        obj.apiVersion,
        ev.responseStatus.code,
        ev.requestURI,
        ev.level,
    )


def event_columns(events: list[Event]) -> list[Sequence[Any]]:
    """The ``schema.EVENT_COLUMNS`` columns of a batch: ``zip(*map(event_row_of, events))``, faster."""
    received: Sequence[Any]  # a tuple from zip, or a list once the timestamps are filled in below
    stage_at: Sequence[Any]
    (audit_id, stage, received, stage_at, verb, user, user_agent, ips, obj, status, uri, level, _kind,
     ts) = zip(*map(_astuple, events), strict=True)  # fmt: skip
    if ts.count(None) != len(ts) or "" in received or "" in stage_at:  # `x or ts`, as event_row does
        received = [r or t for r, t in zip(received, ts, strict=True)]
        stage_at = [s or t for s, t in zip(stage_at, ts, strict=True)]
    namespace, resource, subresource, name, api_group, api_version = zip(*map(_astuple, obj), strict=True)
    return [
        audit_id,
        stage,
        received,
        stage_at,
        verb,
        list(map(_username, user)),
        user_agent,
        [i[0] if i else None for i in ips],
        namespace,
        resource,
        subresource,
        name,
        api_group,
        api_version,
        list(map(_code, status)),
        uri,
        level,
    ]


# -- numbers orjson refuses ---------------------------------------------------------------------------
_ALL_DIGITS = np.uint64(0x0101010101010101)  # eight True bytes of a bool array
_DELIMITER = np.zeros(256, dtype=bool)
_DELIMITER[list(b",}] \t\r\n")] = True
_EXPONENT_WINDOW = 16
_PLUS = ord("+")


_SCRATCH: list[np.ndarray] = []


def _scratch(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Work arrays reused from block to block (fresh 4 MB temporaries cost more in page faults)."""
    if not _SCRATCH or len(_SCRATCH[0]) < n:
        size = n + (1 << 20)  # blocks are ~4 MiB (sources.BLOCK_BYTES) plus a partial line
        _SCRATCH[:] = [np.empty(size, np.uint8), np.empty(size, bool)]
    return _SCRATCH[0][:n], _SCRATCH[1][:n]


def release_scratch() -> None:
    """Free the work arrays (end of pass 1: they would only add to pass 2's peak memory)."""
    _SCRATCH.clear()


#: orjson refuses JSON nested deeper than this; msgspec refuses it only past the interpreter's
#: recursion limit (1000 by default, so before orjson does).
ORJSON_MAX_DEPTH = 1024


def refuses_what_orjson_refuses() -> bool:
    """Whether the fast path refuses every line orjson refuses for its depth: not where the host raised
    the recursion limit (msgspec would then keep events that orjson, and so the native scanner, reject)."""
    return sys.getrecursionlimit() <= ORJSON_MAX_DEPTH


def may_hold_huge_number(data: bytes) -> bool:
    """False when no JSON number in ``data`` can exceed the double range (orjson rejects those).

    Conservative (True on any doubt), vectorised (~0.25 us per 840-byte line). Such a number needs
    either an integer part of at least 210 digits or a positive exponent of at least 3 digits
    (``d <= 209`` integer digits times ``10**99`` stays below 1.8e308). So this looks for 24 aligned
    8-byte words of digits in a row, and for ``<digit>[eE]+?<3+ digits><delimiter>`` (the delimiter
    rules out hex inside strings such as UUIDs, whose digits are followed by ``-`` or ``"``).
    """
    n = len(data)
    if n < 5:  # "1e309" is the shortest
        return False
    d = np.frombuffer(data, dtype=np.uint8)
    scratch, digit = _scratch(n)
    np.less(np.subtract(d, 48, out=scratch), 10, out=digit)  # uint8 wraps: only "0".."9" are below 10
    full = np.flatnonzero(digit[: n // 8 * 8].view(np.uint64) == _ALL_DIGITS)
    if len(full) >= 24 and (full[23:] - full[:-23] == 23).any():
        return True
    is_e = scratch.view(bool)
    np.equal(np.bitwise_or(d, 32, out=scratch), ord("e"), out=is_e)  # in place, element by element
    exponents = np.flatnonzero(np.logical_and(is_e[1:-1], digit[:-2], out=is_e[1:-1]) & digit[2:]) + 1
    plus = np.flatnonzero(d[2:-1] == _PLUS) + 2  # 1e+4..: "+" is rare, check its neighbours
    if len(plus):
        plus = plus[((d[plus - 1] | 32) == ord("e")) & digit[plus - 2] & digit[plus + 1]]
        exponents = np.concatenate([exponents, plus - 1])
    if len(exponents) == 0:
        return False
    first = exponents + 1 + (d.take(exponents + 1, mode="clip") == _PLUS)
    window = d.take(first[:, None] + np.arange(_EXPONENT_WINDOW + 1), mode="clip")
    digits = (window - 48) < 10
    run = np.where(digits.all(axis=1), _EXPONENT_WINDOW + 1, np.argmin(digits, axis=1))
    long_enough = run >= 3
    if not long_enough.any():
        return False
    ends = first + run
    ended = (ends >= n) | _DELIMITER[d.take(ends, mode="clip")]
    return bool((long_enough & ((run > _EXPONENT_WINDOW) | ended)).any())
