"""The codec: ``encode`` and ``decode`` through one strict converter (sans-IO).

Inbound decoding is strict: JSON nested deeper than :data:`MAX_JSON_DEPTH` is
refused before anything else looks at it (orjson parses 1,024 levels but encodes only
254, so a deep value could otherwise be decoded and fail when encoded again), no
coercion (``"5"`` is not an int, a string is not a list), unknown keys and unknown
types are rejected, change events must pass
:func:`~takhin_ws.wire.events.check_event` (Kafka's naming rules, counts in range),
and every failure is a :class:`~takhin_ws.RemoteProtocolError` with a code and the
field path. The converter and its hooks live in :mod:`takhin_ws.wire.converter`.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import cattrs
import orjson
from cattrs.errors import AttributeValidationNote, ForbiddenExtraKeysError, IterableValidationNote

from .._exceptions import LocalProtocolError, RemoteProtocolError
from .converter import InboundEnvelope, camel, converter, describe
from .events import EVENT_CLASSES, EventError, check_event
from .messages import (
    ALL_TYPES,
    NO_DATA_TYPES,
    OPTIONAL_DATA_TYPES,
    PAYLOAD_CLASSES,
    Envelope,
    Payload,
)

__all__ = [
    "INVALID_FIELD",
    "INVALID_JSON",
    "MAX_JSON_DEPTH",
    "TOO_LARGE",
    "UNKNOWN_TYPE",
    "check_depth",
    "converter",
    "decode",
    "decode_value",
    "encode",
    "explain",
    "parse",
    "payload_to_data",
    "structure_at",
]

#: Error codes a peer can see in an ``error`` message.
INVALID_JSON: Final = "invalid_json"
UNKNOWN_TYPE: Final = "unknown_type"
INVALID_FIELD: Final = "invalid_field"
TOO_LARGE: Final = "too_large"

#: Deepest nesting of arrays and objects in an inbound message (the deepest a valid
#: message needs is 4: a batch of events, an event, its data, a field).
MAX_JSON_DEPTH: Final = 32

_T = TypeVar("_T")

# --- encode / decode ---


def payload_to_data(payload: Payload) -> Any:
    """The ``data`` value of *payload* (camelCase, plain JSON types)."""
    if payload.TYPE in NO_DATA_TYPES:
        return None
    return converter.unstructure(payload)


def encode(envelope: Envelope) -> bytes:
    """Serialize *envelope* to JSON bytes (one text frame's payload)."""
    out: dict[str, Any] = {"type": envelope.payload.TYPE}
    if envelope.payload.TYPE not in NO_DATA_TYPES:
        out["data"] = converter.unstructure(envelope.payload)
    out["timestamp"] = envelope.timestamp
    for key in ("channel", "offset", "epoch", "stale"):
        value = getattr(envelope, key)
        if value is not None:
            out[key] = value
    try:
        return orjson.dumps(out)
    except TypeError as exc:  # e.g. an int beyond 64 bits put in by our own code
        raise LocalProtocolError(INVALID_FIELD, f"cannot encode {envelope.type}: {exc}") from exc


def decode(
    raw: bytes | str,
    *,
    accept: frozenset[str] = ALL_TYPES,
    max_size: int | None = None,
) -> Envelope:
    """Parse one message strictly; raise :class:`RemoteProtocolError` on any defect."""
    # The limit is in bytes; a text frame's str is measured in UTF-8 (at most 4 per
    # character), encoding it only when its length alone cannot settle the question.
    if max_size is not None and len(raw) * (1 if isinstance(raw, bytes) else 4) > max_size:
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
        if size > max_size:
            raise RemoteProtocolError(
                TOO_LARGE, f"message of {size} bytes exceeds the limit of {max_size} bytes"
            )
    return decode_value(parse(raw), accept=accept)


def parse(raw: bytes | str) -> Any:
    """The JSON value of *raw*, checked with :func:`check_depth` (the first half of
    :func:`decode`; :func:`decode_value` is the second)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RemoteProtocolError(INVALID_JSON, f"not valid JSON: {exc}") from None
    check_depth(obj)
    return obj


def check_depth(value: object, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`RemoteProtocolError` (``too_large``) if *value* (parsed JSON) nests
    arrays and objects more than *limit* levels deep. Iterative, level by level: the
    cost is one look at each element, and no recursion."""
    level: list[Any] = [value] if type(value) is dict or type(value) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            raise RemoteProtocolError(
                TOO_LARGE, f"JSON nests deeper than the limit of {limit} levels", "$"
            )
        inner: list[Any] = []
        for container in level:
            items = container.values() if type(container) is dict else container
            inner += [v for v in items if type(v) is dict or type(v) is list]
        level = inner


def decode_value(obj: object, *, accept: frozenset[str] = ALL_TYPES) -> Envelope:
    """:func:`decode` of a value already parsed (and checked with :func:`check_depth`)."""
    if type(obj) is not dict:
        raise RemoteProtocolError(
            INVALID_FIELD, f"a message must be a JSON object, got {describe(obj)}", "$"
        )
    kind = obj.get("type")
    if type(kind) is not str:
        raise RemoteProtocolError(
            INVALID_FIELD if "type" in obj else UNKNOWN_TYPE,
            "'type' must be a string naming the message type",
            "$.type",
        )
    if kind not in accept:
        known = ", ".join(sorted(accept))
        raise RemoteProtocolError(
            UNKNOWN_TYPE, f"unknown message type {kind!r} (accepted: {known})", "$.type"
        )
    env = structure_at(obj, InboundEnvelope, "$")
    cls = PAYLOAD_CLASSES[kind]
    if kind in NO_DATA_TYPES:
        if env.data is not None:
            raise RemoteProtocolError(INVALID_FIELD, f"a {kind} message carries no data", "$.data")
        payload = cls()
    elif "data" not in obj and kind in OPTIONAL_DATA_TYPES:
        payload = cls()
    elif "data" not in obj:
        raise RemoteProtocolError(INVALID_FIELD, "required field 'data' is missing", "$.data")
    else:
        payload = structure_at(env.data, cls, "$.data")
        if isinstance(payload, EVENT_CLASSES):
            try:
                check_event(payload)
            except EventError as exc:
                message = f"data.{exc.field}: {exc.message}"
                raise RemoteProtocolError(INVALID_FIELD, message, exc.path) from None
    return Envelope(
        payload=payload,
        timestamp=env.timestamp if env.timestamp is not None else 0,
        channel=env.channel,
        offset=env.offset,
        epoch=env.epoch,
        stale=env.stale,
    )


# --- decoding errors: cattrs' structured exceptions to one (message, path) ---

#: What structuring raises: cattrs' grouped errors and our hooks' leaves.
_STRUCTURE_ERRORS: Final = (cattrs.BaseValidationError, TypeError, ValueError, KeyError)


def structure_at(value: object, cls: type[_T], path: str) -> _T:
    """*value* structured as *cls*; a defect raised as :class:`RemoteProtocolError`
    with its path below *path* (``$.data.topicStats[3]``)."""
    try:
        return converter.structure(value, cls)
    except _STRUCTURE_ERRORS as exc:
        message, where = explain(exc, path)
        raise RemoteProtocolError(INVALID_FIELD, message, where) from None


def explain(exc: BaseException, path: str = "$") -> tuple[str, str]:
    """The message and path of the first defect in *exc* (raised structuring at *path*).

    Walks cattrs' exception groups by their notes (an attribute, an array index) to
    the first leaf; the path uses the wire (camelCase) names.
    """
    leaf, leaf_path, type_ = _first_leaf(exc, path, None)
    if isinstance(leaf, ForbiddenExtraKeysError):
        names = ", ".join(repr(name) for name in sorted(leaf.extra_fields))
        return f"{leaf_path}: unknown field(s) {names}", leaf_path
    if leaf is exc:  # a hook's own error at the top: its text says it all
        return str(leaf), leaf_path
    return f"{leaf_path.removeprefix('$.')}: {_describe_leaf(leaf, type_)}", leaf_path


def _first_leaf(exc: BaseException, path: str, type_: Any) -> tuple[BaseException, str, Any]:
    if isinstance(exc, (cattrs.ClassValidationError, cattrs.IterableValidationError)):
        noted: list[tuple[BaseException, str, Any]] = []
        bare: list[BaseException] = []
        for sub in exc.exceptions:
            note = _note_of(sub)
            if isinstance(note, AttributeValidationNote):
                noted.append((sub, f"{path}.{camel(note.name)}", note.type))
            elif isinstance(note, IterableValidationNote):
                noted.append((sub, f"{path}[{note.index}]", note.type))
            else:
                bare.append(sub)
        if noted:  # field errors first, as they name the most precise place
            return _first_leaf(*noted[0])
        if bare:
            return _first_leaf(bare[0], path, None)
    return exc, path, type_


def _note_of(exc: BaseException) -> object:
    notes = [n for n in getattr(exc, "__notes__", ()) if isinstance(n, _NOTE_TYPES)]
    return notes[-1] if notes else None


_NOTE_TYPES: Final = (AttributeValidationNote, IterableValidationNote)


def _describe_leaf(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, (TypeError, ValueError)) and str(exc).startswith(("expected", "unknown")):
        return str(exc)
    if type_ is not None:
        name = getattr(type_, "__name__", None) or str(type_)
        return f"invalid value, expected {name}"
    return str(exc)
