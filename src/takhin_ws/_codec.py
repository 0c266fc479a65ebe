"""The codec: one strict cattrs converter on orjson, ``encode`` and ``decode`` (sans-IO).

Inbound decoding is strict: no coercion (``"5"`` is not an int, a string is not a
list), unknown keys and unknown types are rejected, and every failure is a
:class:`~takhin_ws.RemoteProtocolError` with a code and the field path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, get_args, get_origin

import attrs
import cattrs
import orjson
from attrs import frozen
from cattrs.errors import IterableValidationNote
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

__all__ = [
    "INVALID_FIELD",
    "INVALID_JSON",
    "TOO_LARGE",
    "UNKNOWN_TYPE",
    "converter",
    "decode",
    "encode",
    "payload_to_data",
]

#: Error codes a peer can see in an ``error`` message.
INVALID_JSON: Final = "invalid_json"
UNKNOWN_TYPE: Final = "unknown_type"
INVALID_FIELD: Final = "invalid_field"
TOO_LARGE: Final = "too_large"


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
    timestamp: int | None = None
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
    try:
        env = converter.structure(obj, _InboundEnvelope)
        cls = PAYLOAD_CLASSES[kind]
        if kind in NO_DATA_TYPES:
            if env.data is not None:
                raise TypeError(f"a {kind} message carries no data")
            payload = cls()
        else:
            if "data" not in obj:
                raise KeyError("data")
            payload = converter.structure(env.data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        message, path = _explain(exc, data_level=env_ok(obj))
        raise RemoteProtocolError(INVALID_FIELD, message, path) from None
    return Envelope(
        payload=payload,
        timestamp=env.timestamp if env.timestamp is not None else 0,
        channel=env.channel,
        offset=env.offset,
        epoch=env.epoch,
        stale=env.stale,
    )


def env_ok(obj: dict[str, Any]) -> bool:
    """True once the envelope itself structured; errors then concern ``data``."""
    try:
        converter.structure(obj, _InboundEnvelope)
    except (cattrs.BaseValidationError, TypeError, ValueError):
        return False
    return True


def _explain(exc: BaseException, *, data_level: bool) -> tuple[str, str]:
    prefix = "$.data" if data_level else "$"
    if isinstance(exc, KeyError) and not isinstance(exc, cattrs.BaseValidationError):
        key = exc.args[0]
        return f"required field {key!r} is missing", "$.data" if key == "data" else prefix
    if isinstance(exc, cattrs.BaseValidationError):
        first = cattrs.transform_error(exc, path=prefix, format_exception=_format_leaf)[0]
        text, _, path = first.rpartition(" @ ")
        path = _SNAKE_SEGMENT.sub(lambda m: "." + _camel(m.group(1)), path)
        extra = _EXTRA_FIELDS.search(text)
        if extra:
            names = ", ".join(repr(_camel(n.strip())) for n in extra.group(1).split(","))
            return f"{path}: unknown field(s) {names}", path
        return f"{path.removeprefix('$.')}: {text}", path
    return str(exc), prefix


_EXTRA_FIELDS: Final = re.compile(r"extra fields[^:]*: (.*)$", re.IGNORECASE)
_SNAKE_SEGMENT: Final = re.compile(r"\.([a-z0-9]+(?:_[a-z0-9]+)+)")


def _format_leaf(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if get_origin(type_) is Literal:
        return "expected one of " + ", ".join(map(str, get_args(type_)))
    if isinstance(exc, (TypeError, ValueError)) and str(exc).startswith(("expected", "unknown")):
        return str(exc)
    if type_ is not None:
        name = getattr(type_, "__name__", None) or str(type_)
        return f"invalid value, expected {name}"
    return str(exc)
