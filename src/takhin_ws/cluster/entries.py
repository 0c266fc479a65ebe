"""Stream entries <-> hub items: what a Redis stream entry holds (sans-IO).

An entry carries what every node needs to build a byte-identical envelope:

- its id ``0-<offset>``: the stream ids *are* the offsets;
- ``epoch``: the epoch of that offset (added by the publish script, inside Redis);
- ``route``: the channel it was published on (``topic:orders``, or the stream);
- ``msg``: the envelope without its offset fields (type, data, timestamp, stale).

:func:`encode_entry` builds the fields a publish appends (all but ``epoch``);
:func:`decode_entry_steps` reads an entry back, in steps short enough for an event
loop that serves WebSockets (a big snapshot costs ~30 ms to decode and encode again),
into what ``Hub.prepare`` takes with the entry's offset and timestamp: the same bytes
:meth:`Hub.publish` would have built for that message on a single node.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any, Final

import attrs

from .._exceptions import RemoteProtocolError
from ..core.encoding import (
    Prepared,
    SnapshotData,
    decode_steps,
    encode_snapshot,
    metrics_data_steps,
)
from ..core.hub import Hub
from ..core.metrics.views import is_view, metrics_envelope
from ..wire.channels import EVENT_STREAMS, parse_channel, stream_of
from ..wire.codec import encode
from ..wire.events import EVENT_CLASSES
from ..wire.messages import Envelope, MonitoringMetrics, Payload

__all__ = [
    "EPOCH_FIELD",
    "MESSAGE_FIELD",
    "ROUTE_FIELD",
    "START_ID",
    "STREAM_TYPES",
    "EntryError",
    "Received",
    "decode_entry_steps",
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


@attrs.frozen
class Received:
    """An entry decoded: where it was published, its offset, its envelope (without
    channel, offset and epoch), and a snapshot's ``data`` (``None`` for an event)."""

    route: str
    offset: int
    envelope: Envelope
    data: SnapshotData | None

    def prepare(self, hub: Hub) -> Prepared:
        """What *hub* delivers of it (:meth:`Hub.prepare <takhin_ws.core.hub.Hub.prepare>`
        with the entry's offset and timestamp): the bytes a single node publishes."""
        envelope = self.envelope
        return hub.prepare(
            self.route,
            envelope.payload,
            stale=envelope.stale,
            data=self.data,
            offset=self.offset,
            timestamp=envelope.timestamp,
        )


class EntryError(ValueError):
    """An entry this node cannot use (another epoch, or unreadable); skip it."""


def text(value: object) -> str:
    """A Redis reply value (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def entry_id(offset: int) -> str:
    """The stream id of *offset* (``0-<offset>``)."""
    return f"0-{offset}"


def encode_entry(
    channel: str,
    payload: Payload,
    *,
    timestamp: int,
    stale: bool | None = None,
    data: SnapshotData | None = None,
) -> tuple[str, list[str | bytes]]:
    """The stream of *channel* and the field/value pairs of its entry (all but
    ``epoch``, which the publish script adds); *data*: a snapshot's ``data`` built
    already (:func:`~takhin_ws.core.encoding.metrics_data_steps`). Raises
    ``ValueError`` for an unknown channel or a message its stream does not carry,
    :class:`LocalProtocolError` for a payload that cannot be encoded."""
    route = parse_channel(channel)
    stream = stream_of(route)
    if payload.TYPE not in STREAM_TYPES[stream]:
        raise ValueError(f"a {payload.TYPE} message is not published on {stream}")
    if data is not None and isinstance(payload, MonitoringMetrics):
        envelope = metrics_envelope(data.data, timestamp=timestamp, stale=stale)
        message = encode_snapshot(envelope, data.lists)
    else:
        message = encode(Envelope(payload=payload, timestamp=timestamp, stale=stale))
    return stream, [ROUTE_FIELD, route, MESSAGE_FIELD, message]


def entry_epoch(fields: Fields) -> str:
    """The ``epoch`` field of an entry ("" if it has none)."""
    values = {text(k): v for k, v in fields.items()}
    return text(values.get(EPOCH_FIELD, b""))


def decode_entry_steps(
    stream: str, ident: bytes | str, fields: Fields, epoch: str
) -> Generator[None, None, Received]:
    """What entry *ident* of *stream* holds, for a hub in *epoch*, decoded in steps
    (:func:`~takhin_ws.core.encoding.decode_steps`, then a snapshot's ``data`` in
    pieces): for a hub's ``prepare`` with its offset and timestamp, then ``deliver``.
    Raises :class:`EntryError` if the entry belongs to another epoch or cannot be read
    (missing field, route of another stream, id that is not an offset, message that
    does not decode)."""
    route, offset, raw = _read(stream, ident, fields, epoch)
    try:
        envelope = yield from decode_steps(raw, accept=STREAM_TYPES[stream])
    except RemoteProtocolError as exc:
        raise EntryError(f"unreadable: {exc}") from None
    data = None
    if isinstance(envelope.payload, MonitoringMetrics):
        data = yield from metrics_data_steps(envelope.payload)
    return Received(route, offset, envelope, data)


def _read(stream: str, ident: bytes | str, fields: Fields, epoch: str) -> tuple[str, int, bytes]:
    """The route, offset and message of an entry of *stream* in *epoch* (not decoded)."""
    values = {text(k): v for k, v in fields.items()}
    ident = text(ident)
    found = text(values.get(EPOCH_FIELD, b""))
    if found != epoch:
        raise EntryError(f"from another epoch ({found or 'none'})")
    try:
        route = parse_channel(text(values[ROUTE_FIELD]))
        if stream_of(route) != stream:
            raise ValueError(f"route {route!r} is not a channel of {stream}")
        if is_view(route):
            raise ValueError(f"route {route!r} is a view: nothing is published on it")
        major, _, minor = ident.partition("-")
        if major != "0" or not (minor.isascii() and minor.isdigit()) or int(minor) < 1:
            raise ValueError(f"id {ident!r} is not an offset (0-<offset>)")
        raw = values[MESSAGE_FIELD]
    except KeyError as exc:
        raise EntryError(f"unreadable: no {exc.args[0]!r} field") from None
    except ValueError as exc:
        raise EntryError(f"unreadable: {exc}") from None
    return route, int(minor), raw if isinstance(raw, bytes) else raw.encode()
