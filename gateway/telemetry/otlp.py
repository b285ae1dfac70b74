"""OTLP trace export bodies: `ExportTraceServiceRequest` as protobuf or as OTLP/JSON.

Written by hand from opentelemetry-proto's `trace/v1/trace.proto` (field numbers below), so
the gateway sends spans without the OpenTelemetry SDK or protobuf installed. The tests decode
what arrives with the official generated classes (`opentelemetry-proto`).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

AttrValue = str | bool | int | float | list[str]
SPAN_KIND_CLIENT = 3
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2


@dataclass(slots=True)
class Span:
    trace_id: bytes  # 16 bytes
    span_id: bytes  # 8 bytes
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, AttrValue] = field(default_factory=dict)
    parent_span_id: bytes = b""
    kind: int = SPAN_KIND_CLIENT
    status_code: int = STATUS_UNSET
    status_message: str = ""


@dataclass(frozen=True, slots=True)
class Scope:
    resource: dict[str, AttrValue]  # service.name, service.version, telemetry.sdk.*
    name: str  # instrumentation scope
    version: str


# --- protobuf wire format -----------------------------------------------------------------

_SMALL = [bytes([i]) for i in range(128)]  # tags and most lengths: one byte, made once


def _varint(n: int) -> bytes:
    if 0 <= n < 128:
        return _SMALL[n]
    n &= (1 << 64) - 1  # int64 as two's complement, as protobuf writes negatives
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len(field_no: int, payload: bytes) -> bytes:
    return _varint(field_no << 3 | 2) + _varint(len(payload)) + payload


def _str(field_no: int, text: str) -> bytes:
    return _len(field_no, text.encode()) if text else b""


def _fixed64(field_no: int, n: int) -> bytes:
    return _varint(field_no << 3 | 1) + struct.pack("<Q", n)


def _any_value(v: AttrValue) -> bytes:
    # AnyValue: string_value 1, bool_value 2, int_value 3, double_value 4, array_value 5
    if isinstance(v, bool):
        return _varint(2 << 3) + _varint(int(v))
    if isinstance(v, int):
        return _varint(3 << 3) + _varint(v)
    if isinstance(v, float):
        return _varint(4 << 3 | 1) + struct.pack("<d", v)
    if isinstance(v, list):  # ArrayValue: repeated AnyValue values = 1
        return _len(5, b"".join(_len(1, _any_value(x)) for x in v))
    return _len(1, v.encode())


@functools.lru_cache(maxsize=256)
def _key(key: str) -> bytes:
    return _str(1, key)  # the same few attribute names in every span


def _attributes(field_no: int, attrs: dict[str, AttrValue]) -> bytes:
    # KeyValue: key 1, value 2
    return b"".join(_len(field_no, _key(k) + _len(2, _any_value(v))) for k, v in attrs.items())


def _span(s: Span) -> bytes:
    status = _str(2, s.status_message) + (_varint(3 << 3) + _varint(s.status_code)
                                           if s.status_code else b"")
    return b"".join((
        _len(1, s.trace_id), _len(2, s.span_id),
        _len(4, s.parent_span_id) if s.parent_span_id else b"",
        _str(5, s.name), _varint(6 << 3) + _varint(s.kind),
        _fixed64(7, s.start_ns), _fixed64(8, s.end_ns),
        _attributes(9, s.attributes),
        _len(15, status) if status else b"",
    ))


def encode_protobuf(scope: Scope, spans: Sequence[Span]) -> bytes:
    """ExportTraceServiceRequest{resource_spans 1: ResourceSpans{resource 1, scope_spans 2:
    ScopeSpans{scope 1, spans 2}}}."""
    resource = _attributes(1, scope.resource)
    inst = _str(1, scope.name) + _str(2, scope.version)
    scope_spans = _len(1, inst) + b"".join(_len(2, _span(s)) for s in spans)
    return _len(1, _len(1, resource) + _len(2, scope_spans))


# --- OTLP/JSON ----------------------------------------------------------------------------

def _json_value(v: AttrValue) -> dict[str, object]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}  # int64 as a string, as the OTLP/JSON mapping writes it
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, list):
        return {"arrayValue": {"values": [_json_value(x) for x in v]}}
    return {"stringValue": v}


def _json_attrs(attrs: dict[str, AttrValue]) -> list[dict[str, object]]:
    return [{"key": k, "value": _json_value(v)} for k, v in attrs.items()]


def encode_json(scope: Scope, spans: Sequence[Span]) -> bytes:
    """The same request in OTLP/JSON: camelCase fields, ids as hex, enums as integers."""
    def one(s: Span) -> dict[str, object]:
        out: dict[str, object] = {
            "traceId": s.trace_id.hex(), "spanId": s.span_id.hex(), "name": s.name,
            "kind": s.kind, "startTimeUnixNano": str(s.start_ns),
            "endTimeUnixNano": str(s.end_ns), "attributes": _json_attrs(s.attributes),
        }
        if s.parent_span_id:
            out["parentSpanId"] = s.parent_span_id.hex()
        if s.status_code:
            out["status"] = {"code": s.status_code, "message": s.status_message}
        return out

    return orjson.dumps({"resourceSpans": [{
        "resource": {"attributes": _json_attrs(scope.resource)},
        "scopeSpans": [{"scope": {"name": scope.name, "version": scope.version},
                        "spans": [one(s) for s in spans]}],
    }]})
