"""The one cattrs converter of the wire protocol, on orjson, with strict hooks (sans-IO).

Attributes travel as camelCase keys. Structuring coerces nothing (``"5"`` is not an
int, ``true`` is not a number, a string is not a list) and refuses unknown keys; a
hook's error says what it expected and what it got (``expected an integer, got a
string``), and cattrs groups those errors with notes naming the attribute or index,
which :func:`takhin_ws.wire.codec.explain` turns into a path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, NewType, get_args, get_origin

import attrs
import cattrs
from attrs import frozen
from cattrs.errors import IterableValidationNote
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.orjson import make_converter

from .messages import Error, History, HistoryPoint, Subscribe, Unsubscribe

__all__ = ["InboundEnvelope", "camel", "converter", "describe"]

#: Unix seconds on an inbound envelope: an integer, or any number (the 2.9 docs'
#: heartbeat sends ``Date.now() / 1000``), truncated to whole seconds.
_Seconds = NewType("_Seconds", int)
#: Timestamps are signed 64-bit integers on the wire.
_SECONDS_LIMIT: Final = 2**63


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _strict_int(value: object, _: object) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {describe(value)}")
    return value


def _strict_float(value: object, _: object) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise TypeError(f"expected a number, got {describe(value)}")


def _strict_str(value: object, _: object) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {describe(value)}")
    return value


def _strict_bool(value: object, _: object) -> bool:
    if type(value) is not bool:
        raise TypeError(f"expected true or false, got {describe(value)}")
    return value


def _strict_seconds(value: object, _: object) -> int:
    if type(value) is int:
        return value
    if type(value) is float:
        if abs(value) < _SECONDS_LIMIT:
            return int(value)
        raise ValueError("expected a number of seconds, got one out of range")
    raise TypeError(f"expected a number, got {describe(value)}")


def describe(value: object) -> str:
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
                raise TypeError(f"expected an array, got {describe(value)}")
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
                raise TypeError(f"expected an object, got {describe(value)}")
            return {key_hook(k, key_type): value_hook(v, value_type) for k, v in value.items()}

        return structure

    conv.register_structure_hook_factory(is_mapping, mapping_factory)

    def attrs_structure(cls: Any) -> Callable[[Any, Any], Any]:
        overrides: dict[str, Any] = {
            a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)
        }
        inner = make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True, **overrides)

        def structure(value: Any, tp: Any) -> Any:
            if type(value) is not dict:
                raise TypeError(f"expected an object, got {describe(value)}")
            return inner(value, tp)

        return structure

    def attrs_unstructure(cls: Any) -> Callable[[Any], Any]:
        overrides: dict[str, Any] = {
            a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)
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
    # a history holds hundreds of these: copy the group lags as they are (str -> int)
    unstructure_point = make_dict_unstructure_fn(
        HistoryPoint, conv, group_lags=override(rename="groupLags", unstruct_hook=dict)
    )
    conv.register_unstructure_hook(HistoryPoint, unstructure_point)
    # a group's history (channel, lags) and the cluster's (points) share the type: the
    # cluster's answer keeps its shape, a group's has channel and lags (even empty)
    history_fields = make_dict_unstructure_fn(History, conv)

    def unstructure_history(history: History) -> dict[str, Any]:
        out: dict[str, Any] = history_fields(history)
        if history.channel is None:
            del out["channel"], out["lags"]
        return out

    conv.register_unstructure_hook(History, unstructure_history)
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
            f"expected a channel, an array of channels or an object, got {describe(value)}"
        )
    return Subscribe(channels=_channel_list(value))


def _structure_unsubscribe(value: object, _: object) -> Unsubscribe:
    if type(value) not in (str, list):
        raise TypeError(f"expected a channel or an array of channels, got {describe(value)}")
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
class InboundEnvelope:
    type: str
    data: Any = None
    timestamp: _Seconds | None = None
    channel: str | None = None
    offset: int | None = None
    epoch: str | None = None
    stale: bool | None = None
