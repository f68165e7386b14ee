"""The typed fast path (msgspec) takes a line only when the orjson path gives the very same row."""

from __future__ import annotations

import orjson
import pytest

from perfspec.audit.fastpath import EVENT_DECODER, event_row_of, may_hold_huge_number
from perfspec.audit.readers import NotAnEvent, event_row

BASE = (
    b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a6a3a450-6513",'
    b'"stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{"username":"u",'
    b'"groups":["g"]},"sourceIPs":["10.0.0.4"],"userAgent":"kubelet","objectRef":{"resource":"pods",'
    b'"namespace":"ns","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},'
    b'"requestReceivedTimestamp":"2024-05-01T00:00:00.001376Z","stageTimestamp":"2024-05-01T00:00:00.002Z"'
)
TAILS = [
    b"}", b',"kind":null}', b',"kind":"EventList"}', b',"kind":5}', b',"auditID":""}', b',"auditID":7}',
    b',"stage":"Bogus"}', b',"timestamp":"2024-05-01T00:00:01Z","requestReceivedTimestamp":""}',
    b',"requestReceivedTimestamp":null}', b',"requestReceivedTimestamp":12}', b',"verb":5}',
    b',"user":null}', b',"user":[]}', b',"sourceIPs":[]}', b',"sourceIPs":"1.2.3.4"}', b',"sourceIPs":[5]}',
    b',"sourceIPs":["1.1.1.1",5]}', b',"objectRef":{}}', b',"objectRef":[1]}', b',"objectRef":0}',
    b',"responseStatus":{"code":200.0}}', b',"responseStatus":{"code":true}}',
    b',"responseStatus":{"code":2147483648}}', b',"responseStatus":{"code":123456789012345678901234567890}}',
    b',"verb":"get","verb":"watch"}', b',"verb":5,"verb":"get"}', b',"x":"caf\xc3\xa9"}', b',"x":"\xff"}',
    b',"x":"\xed\xa0\x80"}', b',"x":"\\ud800"}', b',"x":1e400}', b',"x":1E+400}',
    b',"x":[1' + b"0" * 400 + b"]}",
    b',"x":' + b"[" * 1100 + b"]" * 1100 + b"}", b"} x", b"", b',"x":1e-400}',
]  # fmt: skip


@pytest.mark.parametrize("tail", TAILS)
def test_a_line_the_fast_path_takes_gives_the_orjson_row(tail: bytes) -> None:
    line = BASE + tail
    try:
        event = EVENT_DECODER.decode(line)
    except Exception:
        return  # the orjson path decides
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return  # the hot loop sends only valid UTF-8 here
    if may_hold_huge_number(line):
        return  # the hot loop sends such blocks to the orjson path
    try:
        expected = event_row(orjson.loads(line))
    except (orjson.JSONDecodeError, NotAnEvent) as exc:
        pytest.fail(f"fast path took a line the orjson path rejects: {exc}")
    assert event_row_of(event) == expected


@pytest.mark.parametrize(
    "text", [b'{"x":1e400}', b'{"x":1E+309}', b"[2e308]", b"2" * 309, b'{"x":0.1e310}', b'{"x":1e0309 }']
)
def test_numbers_orjson_refuses_are_flagged(text: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text)
    assert may_hold_huge_number(text)
    assert may_hold_huge_number(BASE + b',"y":' + text + b"}")


def test_ordinary_events_and_uuids_are_not_flagged() -> None:
    assert not may_hold_huge_number(BASE + b',"id":"4e301234-5e12-4e30-8e94-1e3456789012","n":1e-400}')
    assert not may_hold_huge_number(b'{"a":123e45,"b":1e+99}')
