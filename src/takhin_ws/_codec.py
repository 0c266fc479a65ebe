"""The codec: one strict cattrs converter on orjson, ``encode`` and ``decode`` (sans-IO).

Inbound decoding is strict: no coercion (``"5"`` is not an int, a string is not a
list), unknown keys and unknown types are rejected, change events must pass
:func:`~takhin_ws._validate.check_event` (Kafka's naming rules, counts in range),
and every failure is a :class:`~takhin_ws.RemoteProtocolError` with a code and the
field path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, NewType, TypeVar, get_args, get_origin

import attrs
import cattrs
import orjson
from attrs import frozen
from cattrs.errors import AttributeValidationNote, ForbiddenExtraKeysError, IterableValidationNote
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.orjson import make_converter

from ._exceptions import LocalProtocolError, RemoteProtocolError
from ._messages import (
    ALL_TYPES,
    NO_DATA_TYPES,
    PAYLOAD_CLASSES,
    Envelope,
    Error,
    Payload,
    Subscribe,
    Unsubscribe,
)
from ._validate import EVENT_CLASSES, EventError, check_event

__all__ = [
    "INVALID_FIELD",
    "INVALID_JSON",
    "TOO_LARGE",
    "UNKNOWN_TYPE",
    "converter",
    "decode",
    "encode",
    "explain",
    "payload_to_data",
]

#: Error codes a peer can see in an ``error`` message.
INVALID_JSON: Final = "invalid_json"
UNKNOWN_TYPE: Final = "unknown_type"
INVALID_FIELD: Final = "invalid_field"
TOO_LARGE: Final = "too_large"

_T = TypeVar("_T")

#: Unix seconds on an inbound envelope: an integer, or any number (the 2.9 docs'
#: heartbeat sends ``Date.now() / 1000``), truncated to whole seconds.
_Seconds = NewType("_Seconds", int)
#: Timestamps are signed 64-bit integers on the wire.
_SECONDS_LIMIT: Final = 2**63


# --- the converter ---


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _strict_int(value: object, _: object) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {_describe(value)}")
    return value


def _strict_float(value: object, _: object) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise TypeError(f"expected a number, got {_describe(value)}")


def _strict_str(value: object, _: object) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {_describe(value)}")
    return value


def _strict_bool(value: object, _: object) -> bool:
    if type(value) is not bool:
        raise TypeError(f"expected true or false, got {_describe(value)}")
    return value


def _strict_seconds(value: object, _: object) -> int:
    if type(value) is int:
        return value
    if type(value) is float:
        if abs(value) < _SECONDS_LIMIT:
            return int(value)
        raise ValueError("expected a number of seconds, got one out of range")
    raise TypeError(f"expected a number, got {_describe(value)}")


def _describe(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if type(value) in (int, float):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _make_converter() -> cattrs.Converter:
    conv = make_converter(forbid_extra_keys=True)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(_Seconds, _strict_seconds)

    def literal_factory(tp: Any) -> Callable[[Any, Any], Any]:
        allowed = get_args(tp)
        expected = "expected one of " + ", ".join(map(str, allowed))

        def structure(value: Any, _: Any) -> Any:
            if type(value) is not str or value not in allowed:
                raise ValueError(expected)
            return value

        return structure

    def is_literal(tp: Any) -> bool:
        return get_origin(tp) is Literal

    conv.register_structure_hook_factory(is_literal, literal_factory)

    def is_sequence(tp: Any) -> bool:
        return get_origin(tp) in (tuple, list)

    def sequence_factory(tp: Any) -> Callable[[Any, Any], Any]:
        (item,) = [a for a in get_args(tp) if a is not Ellipsis][:1] or [Any]
        item_hook = conv.get_structure_hook(item)
        origin = get_origin(tp)

        def structure(value: Any, _: Any) -> Any:
            if type(value) is not list:
                raise TypeError(f"expected an array, got {_describe(value)}")
            errors: list[Exception] = []
            out = []
            for index, element in enumerate(value):
                try:
                    out.append(item_hook(element, item))
                except Exception as exc:  # regrouped below with its index
                    exc.__notes__ = [
                        *getattr(exc, "__notes__", []),
                        IterableValidationNote(f"structuring item @ index {index}", index, item),
                    ]
                    errors.append(exc)
            if errors:
                raise cattrs.IterableValidationError(
                    "while structuring an array",
                    errors,
                    tp,
                )
            return origin(out)

        return structure

    conv.register_structure_hook_factory(is_sequence, sequence_factory)

    def is_mapping(tp: Any) -> bool:
        return get_origin(tp) in (Mapping, dict)

    def mapping_factory(tp: Any) -> Callable[[Any, Any], Any]:
        key_type, value_type = get_args(tp)
        key_hook = conv.get_structure_hook(key_type)
        value_hook = conv.get_structure_hook(value_type)

        def structure(value: Any, _: Any) -> Any:
            if type(value) is not dict:
                raise TypeError(f"expected an object, got {_describe(value)}")
            return {key_hook(k, key_type): value_hook(v, value_type) for k, v in value.items()}

        return structure

    conv.register_structure_hook_factory(is_mapping, mapping_factory)

    def attrs_structure(cls: Any) -> Callable[[Any, Any], Any]:
        overrides: dict[str, Any] = {
            a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)
        }
        inner = make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True, **overrides)

        def structure(value: Any, tp: Any) -> Any:
            if type(value) is not dict:
                raise TypeError(f"expected an object, got {_describe(value)}")
            return inner(value, tp)

        return structure

    def attrs_unstructure(cls: Any) -> Callable[[Any], Any]:
        overrides: dict[str, Any] = {
            a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)
        }
        return make_dict_unstructure_fn(cls, conv, **overrides)

    conv.register_structure_hook_factory(attrs.has, attrs_structure)
    conv.register_unstructure_hook_factory(attrs.has, attrs_unstructure)
    conv.register_structure_hook(Subscribe, _structure_subscribe)
    conv.register_structure_hook(Unsubscribe, _structure_unsubscribe)
    conv.register_unstructure_hook(Subscribe, _unstructure_subscribe)
    conv.register_unstructure_hook(Unsubscribe, lambda u: list(u.channels))
    unstructure_error = make_dict_unstructure_fn(Error, conv, path=override(omit_if_default=True))
    conv.register_unstructure_hook(Error, unstructure_error)
    return conv


@frozen(kw_only=True)
class _SubscribeObject:
    channels: tuple[str, ...]
    since: dict[str, int] | None = None
    epoch: str | None = None


def _channel_list(value: object) -> tuple[str, ...]:
    if type(value) is str:
        return (value,)
    result: tuple[str, ...] = converter.structure(value, tuple[str, ...])
    return result


def _structure_subscribe(value: object, _: object) -> Subscribe:
    if type(value) is dict:
        obj = converter.structure(value, _SubscribeObject)
        return Subscribe(channels=obj.channels, since=obj.since, epoch=obj.epoch)
    if type(value) not in (str, list):
        raise TypeError(
            f"expected a channel, an array of channels or an object, got {_describe(value)}"
        )
    return Subscribe(channels=_channel_list(value))


def _structure_unsubscribe(value: object, _: object) -> Unsubscribe:
    if type(value) not in (str, list):
        raise TypeError(f"expected a channel or an array of channels, got {_describe(value)}")
    return Unsubscribe(channels=_channel_list(value))


def _unstructure_subscribe(sub: Subscribe) -> object:
    if sub.since is None and sub.epoch is None:
        return sub.channels[0] if len(sub.channels) == 1 else list(sub.channels)
    out: dict[str, object] = {"channels": list(sub.channels)}
    if sub.since is not None:
        out["since"] = dict(sub.since)
    if sub.epoch is not None:
        out["epoch"] = sub.epoch
    return out


converter: Final = _make_converter()


@frozen(kw_only=True)
class _InboundEnvelope:
    type: str
    data: Any = None
    timestamp: _Seconds | None = None
    channel: str | None = None
    offset: int | None = None
    epoch: str | None = None
    stale: bool | None = None


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
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RemoteProtocolError(INVALID_JSON, f"not valid JSON: {exc}") from None
    if type(obj) is not dict:
        raise RemoteProtocolError(
            INVALID_FIELD, f"a message must be a JSON object, got {_describe(obj)}", "$"
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
    env = _structure(obj, _InboundEnvelope, "$")
    cls = PAYLOAD_CLASSES[kind]
    if kind in NO_DATA_TYPES:
        if env.data is not None:
            raise RemoteProtocolError(INVALID_FIELD, f"a {kind} message carries no data", "$.data")
        payload = cls()
    elif "data" not in obj:
        raise RemoteProtocolError(INVALID_FIELD, "required field 'data' is missing", "$.data")
    else:
        payload = _structure(env.data, cls, "$.data")
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


def _structure(value: object, cls: type[_T], path: str) -> _T:
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
                noted.append((sub, f"{path}.{_camel(note.name)}", note.type))
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
