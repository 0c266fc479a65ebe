"""Stream entries <-> hub items: what a Redis stream entry holds (sans-IO).

An entry carries what every node needs to build a byte-identical envelope:

- its id ``0-<offset>``: the stream ids *are* the offsets;
- ``epoch``: the epoch of that offset (added by the publish script, inside Redis);
- ``route``: the channel it was published on (``topic:orders``, or the stream);
- ``msg``: the envelope without its offset fields (type, data, timestamp, stale).

:func:`encode_entry` builds the fields a publish appends (all but ``epoch``);
:func:`decode_entry` turns an entry read back into the hub's :class:`Outbound`, the
same bytes :meth:`Hub.publish` would have built for that message on a single node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from .._exceptions import LocalProtocolError, RemoteProtocolError
from ..wire.channels import EVENT_STREAMS, parse_channel, stream_of
from ..wire.codec import decode, encode
from ..wire.events import EVENT_CLASSES
from ..wire.messages import Envelope, MonitoringMetrics, Payload
from ..wire.websocket.frames import Outbound

__all__ = [
    "EPOCH_FIELD",
    "MESSAGE_FIELD",
    "ROUTE_FIELD",
    "START_ID",
    "STREAM_TYPES",
    "EntryError",
    "decode_entry",
    "encode_entry",
    "entry_epoch",
    "entry_id",
    "text",
]

EPOCH_FIELD: Final = "epoch"
ROUTE_FIELD: Final = "route"
MESSAGE_FIELD: Final = "msg"
#: The first id of every stream: "read from the start".
START_ID: Final = "0-0"

#: The message types each stream carries (each event class names its stream).
STREAM_TYPES: Final[Mapping[str, frozenset[str]]] = {
    "metrics": frozenset({MonitoringMetrics.TYPE}),
    **{s: frozenset(c.TYPE for c in EVENT_CLASSES if s == c.STREAM) for s in EVENT_STREAMS},
}

#: An entry's field/value pairs, as coredis returns them (bytes) or as text.
Fields = Mapping[Any, str | bytes]


class EntryError(ValueError):
    """An entry this node cannot use (another epoch, or unreadable); skip it."""


def text(value: object) -> str:
    """A Redis reply value (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def entry_id(offset: int) -> str:
    """The stream id of *offset* (``0-<offset>``)."""
    return f"0-{offset}"


def encode_entry(
    channel: str, payload: Payload, *, timestamp: int, stale: bool | None = None
) -> tuple[str, list[str | bytes]]:
    """The stream of *channel* and the field/value pairs of its entry (all but
    ``epoch``, which the publish script adds). Raises ``ValueError`` for an unknown
    channel or a message its stream does not carry, :class:`LocalProtocolError` for a
    payload that cannot be encoded."""
    route = parse_channel(channel)
    stream = stream_of(route)
    if payload.TYPE not in STREAM_TYPES[stream]:
        raise ValueError(f"a {payload.TYPE} message is not published on {stream}")
    message = encode(Envelope(payload=payload, timestamp=timestamp, stale=stale))
    return stream, [ROUTE_FIELD, route, MESSAGE_FIELD, message]


def entry_epoch(fields: Fields) -> str:
    """The ``epoch`` field of an entry ("" if it has none)."""
    values = {text(k): v for k, v in fields.items()}
    return text(values.get(EPOCH_FIELD, b""))


def decode_entry(
    stream: str, ident: bytes | str, fields: Fields, epoch: str
) -> tuple[str, Outbound]:
    """The route and hub item of entry *ident* of *stream*, for a hub in *epoch*.

    Raises :class:`EntryError` if the entry belongs to another epoch or cannot be
    read (missing field, route of another stream, id that is not an offset, message
    that does not decode)."""
    values = {text(k): v for k, v in fields.items()}
    ident = text(ident)
    found = text(values.get(EPOCH_FIELD, b""))
    if found != epoch:
        raise EntryError(f"from another epoch ({found or 'none'})")
    try:
        route = parse_channel(text(values[ROUTE_FIELD]))
        if stream_of(route) != stream:
            raise ValueError(f"route {route!r} is not a channel of {stream}")
        major, _, minor = ident.partition("-")
        if major != "0" or not (minor.isascii() and minor.isdigit()) or int(minor) < 1:
            raise ValueError(f"id {ident!r} is not an offset (0-<offset>)")
        offset = int(minor)
        envelope = decode(values[MESSAGE_FIELD], accept=STREAM_TYPES[stream])
        envelope = attrs.evolve(envelope, channel=stream, offset=offset, epoch=epoch)
        payload = encode(envelope)
    except KeyError as exc:
        raise EntryError(f"unreadable: no {exc.args[0]!r} field") from None
    except (ValueError, RemoteProtocolError, LocalProtocolError) as exc:
        raise EntryError(f"unreadable: {exc}") from None
    return route, Outbound.of(payload, stream, offset, route)
