"""What a publish is encoded into, once per publish (sans-IO).

The hub gives each published message its envelope (timestamp, stream, offset, epoch,
``stale``) and turns it into a :class:`Prepared` here: one :class:`Outbound`, and for a
snapshot its decoded envelope, before recording it and offering it to every
subscriber. A snapshot (``metrics``) takes the fast path: its envelope is built as
plain dicts (:func:`~takhin_ws.core.metrics.views.metrics_data`, the codec's bytes),
which the hub keeps for the tick so the views and the filtered snapshots never parse
it again; an event goes through the codec. A per-client reply (``welcome``,
``error``...) carries no offset and is encoded here too.

A big snapshot costs milliseconds to encode (1,000 topics x 12 partitions: ~4 ms to
build its dicts, ~1 ms of orjson, ~10 ms to compress), too long for one step of an
event loop that serves WebSockets. So the work can be cut up, without changing a
byte of the result:

- :func:`metrics_data_steps` builds the ``data`` dict in pieces of about
  :data:`PIECE_WEIGHT` objects, yielding between two (an async caller lets other tasks
  run there);
- :meth:`Prepared.build_views` builds its ``metrics:lean`` view ahead of the commit;
- :meth:`Prepared.compress` builds the compressed variants of the message and of that
  view ahead of the fan-out: zlib only, no Python objects, so a caller may run it in
  a worker thread (zlib releases the GIL while it compresses).
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Collection, Generator, Iterator, Mapping
from typing import Any, Final, TypeVar

import attrs
import orjson

from .._exceptions import LocalProtocolError
from ..wire.channels import METRICS_LEAN
from ..wire.codec import decode_value, encode, parse, structure_at
from ..wire.converter import camel, converter
from ..wire.messages import ALL_TYPES, Envelope, MonitoringMetrics, Payload
from ..wire.websocket.frames import Outbound, Variant
from .metrics.snapshot import Snapshot
from .metrics.views import JSON, dumps, lean_view, metrics_data, metrics_envelope

__all__ = [
    "METRICS_LISTS",
    "PIECE_WEIGHT",
    "Prepared",
    "SnapshotData",
    "complete",
    "decode_steps",
    "encode_published",
    "encode_reply",
    "encode_snapshot",
    "metrics_data_steps",
    "metrics_head",
    "release_steps",
    "weight",
]

T = TypeVar("T")

#: Objects (a topic's stats, a partition's lag...) turned into dicts between two yields
#: of :func:`metrics_data_steps`: a fraction of a millisecond of CPU.
PIECE_WEIGHT: Final = 1024


def _list_fields() -> dict[str, tuple[str, Any]]:
    """The list fields of the ``metrics`` message: wire key -> (attribute, item type)."""
    hints = typing.get_type_hints(MonitoringMetrics)
    out: dict[str, tuple[str, Any]] = {}
    for field in attrs.fields(MonitoringMetrics):
        hint = hints[field.name]
        if typing.get_origin(hint) is tuple:
            out[camel(field.name)] = (field.name, typing.get_args(hint)[0])
    return out


#: The list fields of the ``metrics`` message (``topicStats``, ``consumerLags``): wire
#: key -> (attribute, item type). What a snapshot is cut into, here and on the pipe
#: from the Kafka collector.
METRICS_LISTS: Final = _list_fields()
_EMPTY_LISTS: Final[dict[str, Any]] = {name: () for name, _ in METRICS_LISTS.values()}


@functools.cache
def _nested(cls: Any) -> tuple[tuple[str, bool], ...]:
    """The tuple fields of attrs class *cls*: (attribute, whether its items hold
    tuples of their own)."""
    if not attrs.has(cls):
        return ()
    hints = typing.get_type_hints(cls)
    out = []
    for field in attrs.fields(cls):
        hint = hints[field.name]
        if typing.get_origin(hint) is tuple:
            out.append((field.name, bool(_nested(typing.get_args(hint)[0]))))
    return tuple(out)


def weight(item: Any) -> int:
    """How many objects one list item of a message holds (a consumer lag: itself, its
    topics and their partitions), as message objects or as decoded dicts."""
    if type(item) is dict:
        return 1 + sum(weight(v) for value in item.values() if type(value) is list for v in value)
    total = 1
    for name, deep in _nested(item.__class__):
        items = getattr(item, name)
        total += sum(map(weight, items)) if deep else len(items)
    return total


def metrics_head(m: MonitoringMetrics) -> JSON:
    """The ``data`` of *m* with every list of :data:`METRICS_LISTS` empty (their keys
    in place: filling them in keeps the codec's key order)."""
    return metrics_data(attrs.evolve(m, **_EMPTY_LISTS))


@attrs.frozen
class SnapshotData:
    """A snapshot's ``data`` as :func:`metrics_data_steps` builds it: the dict, and
    each of its lists (:data:`METRICS_LISTS`) already as JSON, so that the message is
    never dumped whole in one step (:func:`encode_snapshot`)."""

    #: the ``data`` dict, as :func:`~takhin_ws.core.metrics.views.metrics_data` gives it
    data: JSON
    #: wire key -> that list as orjson writes it (``[...]``)
    lists: Mapping[str, bytes]


def metrics_data_steps(
    m: MonitoringMetrics, piece: int = PIECE_WEIGHT
) -> Generator[None, None, SnapshotData]:
    """:func:`~takhin_ws.core.metrics.views.metrics_data` of *m* in pieces, and its lists
    as JSON: yields after each run of about *piece* objects (turned into dicts, then
    JSON); returns the same dict (same keys, same order) and those lists. Raises
    :class:`~takhin_ws._exceptions.LocalProtocolError` for a value JSON cannot carry."""
    data = metrics_head(m)
    lists: dict[str, bytes] = {}
    for key, (name, item_type) in METRICS_LISTS.items():
        hook = converter.get_unstructure_hook(item_type)
        out: list[Any] = []
        chunks: list[bytes] = []
        start = done = 0
        for item in getattr(m, name):
            out.append(hook(item))
            done += weight(item)
            if done >= piece:
                chunks.append(_dump_run(out[start:]))
                start = len(out)
                yield
                done = 0
        if start < len(out):
            chunks.append(_dump_run(out[start:]))
        data[key] = out
        lists[key] = b"[" + b",".join(chunks) + b"]"
    return SnapshotData(data, lists)


def _dump_run(items: list[Any]) -> bytes:
    """A run of list items as JSON, without the brackets (runs join with commas)."""
    try:
        return orjson.dumps(items)[1:-1]
    except TypeError as exc:  # e.g. an int beyond 64 bits put in by a source
        raise LocalProtocolError(
            "invalid_field", f"cannot encode {MonitoringMetrics.TYPE}: {exc}"
        ) from exc


def encode_snapshot(envelope: JSON, lists: Mapping[str, bytes]) -> bytes:
    """The JSON of a snapshot's *envelope* (its ``data`` holding the lists of *lists*,
    already as JSON): what ``orjson.dumps(envelope)`` gives, byte for byte, without
    dumping the lists again."""
    data = envelope["data"]
    raw = dumps({**envelope, "data": {**data, **{key: [] for key in lists}}})
    parts: list[bytes] = []
    pos = 0
    for key, body in lists.items():  # in the data's key order; no string comes before
        marker = b'"' + key.encode() + b'":['
        at = raw.index(marker, pos) + len(marker) - 1
        parts += (raw[pos:at], body)
        pos = at + 2  # past the empty list's "[]"
    parts.append(raw[pos:])
    return b"".join(parts)


def decode_steps(
    raw: bytes | str, *, accept: frozenset[str] = ALL_TYPES, piece: int = PIECE_WEIGHT
) -> Generator[None, None, Envelope]:
    """:func:`~takhin_ws.wire.codec.decode` of *raw* in steps: the same envelope, or a
    :class:`~takhin_ws._exceptions.RemoteProtocolError` for the same defect (of several,
    maybe another first); a ``metrics`` message's lists are structured in pieces of
    about *piece* objects, after the JSON is parsed and the rest of it checked."""
    obj = parse(raw)
    yield
    kind = obj.get("type") if type(obj) is dict else None
    data: Any = obj.get("data") if kind == MonitoringMetrics.TYPE else None
    lists = {k: data[k] for k in METRICS_LISTS if type(data) is dict and type(data.get(k)) is list}
    if not lists:
        return decode_value(obj, accept=accept)
    envelope = decode_value({**obj, "data": {**data, **{key: [] for key in lists}}}, accept=accept)
    parts: dict[str, Any] = {}
    for key, items in lists.items():
        name, item_type = METRICS_LISTS[key]
        out: list[Any] = []
        done = 0
        for index, item in enumerate(items):
            out.append(structure_at(item, item_type, f"$.data.{key}[{index}]"))
            done += weight(out[-1])
            if done >= piece:
                yield
                done = 0
        parts[name] = tuple(out)
    head = envelope.payload
    assert isinstance(head, MonitoringMetrics)  # the type was "metrics", and it decoded
    return attrs.evolve(envelope, payload=attrs.evolve(head, **parts))


def complete(steps: Generator[None, None, T]) -> T:
    """Run *steps* to their result in one go (a small message, or a caller with no
    event loop to share); ``ingest.bus.in_steps`` is the same with a checkpoint at each
    yield."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result


def release_steps(garbage: list[Any], piece: int = PIECE_WEIGHT) -> Generator[None, None, None]:
    """Let go of what *garbage* holds (snapshots, ``metrics`` messages, decoded
    envelopes), emptying it, in pieces of about *piece* objects with a yield between
    two: freeing a big snapshot is otherwise one long step. What something else still
    holds stays as it is."""
    parts: list[Any] = []
    while garbage:
        parts += _parts(garbage.pop())
    done = 0
    while parts:
        done += weight(parts[-1])
        del parts[-1]
        if done >= piece:
            yield
            done = 0


def _parts(root: Any) -> list[Any]:
    """The items of the big lists of *root*: a snapshot's or a ``metrics`` message's
    topics and consumer lags, or those of a decoded envelope's ``data``."""
    if isinstance(root, Snapshot):
        root = root.metrics
    if isinstance(root, MonitoringMetrics):
        return [item for name, _ in METRICS_LISTS.values() for item in getattr(root, name)]
    data = root.get("data") if type(root) is dict else None
    if type(data) is not dict:
        return []
    return [item for key in METRICS_LISTS for item in data.get(key) or ()]


@attrs.frozen
class Prepared:
    """A message encoded for offset *offset* of *stream* in *epoch*, not published yet:
    what :meth:`Hub.prepare <takhin_ws.core.hub.Hub.prepare>` gives and
    :meth:`Hub.commit <takhin_ws.core.hub.Hub.commit>` publishes."""

    #: what is published
    payload: Payload
    #: the channel it is published on (a stream, or a narrow channel: ``topic:orders``)
    channel: str
    #: the stream of that channel (``metrics``, ``topics``, ``groups``)
    stream: str
    #: the offset it was encoded for: the stream's next at prepare time
    offset: int
    #: the hub's epoch at prepare time
    epoch: str
    #: the envelope's ``stale`` flag (``None``: not sent)
    stale: bool | None
    #: the message as sent (its plain variant)
    item: Outbound
    #: a snapshot's envelope as plain dicts (``None`` for an event)
    decoded: JSON | None = None
    #: a snapshot's data built in steps, kept to encode it again if the offset is taken
    data: SnapshotData | None = None
    #: the variants the unrestricted subscribers receive, of the message (key ``None``)
    #: and of each view (its channel), as they were at prepare time
    variants: Mapping[str | None, Collection[Variant]] = attrs.field(factory=dict)
    #: views built ahead by :meth:`build_views`, by channel
    views: dict[str, Outbound] = attrs.field(factory=dict)
    #: what its commit replaced (the previous snapshot's decoded envelope), which
    #: nothing else holds: for the caller to let go of in steps (:func:`release_steps`)
    garbage: list[Any] = attrs.field(factory=list)

    def build_views(self) -> None:
        """Build a snapshot's ``metrics:lean`` view ahead, if it has subscribers (the
        other views are one group or topic each: small, built at the fan-out)."""
        if self.decoded is not None and METRICS_LEAN in self.variants:
            self.views[METRICS_LEAN] = lean_view(self.item, self.decoded)

    def _compressed(self) -> Iterator[tuple[Outbound, Variant]]:
        for key, item in ((None, self.item), *self.views.items()):
            for variant in self.variants.get(key, ()):
                if variant.window_bits and len(item.payload) >= variant.min_size:
                    yield item, variant

    def compress_size(self) -> int:
        """Bytes :meth:`compress` has to compress (0: nothing to do ahead)."""
        return sum(len(item.payload) for item, _ in self._compressed())

    def compress(self) -> None:
        """Build the compressed variants of :attr:`variants`, ahead of the fan-out (which
        then finds them built). Only zlib runs here, on bytes nobody else holds until
        the commit: a caller may run it in a worker thread."""
        for item, variant in self._compressed():
            item.variant(variant)


def encode_published(
    payload: Payload,
    channel: str,
    *,
    stream: str,
    offset: int,
    timestamp: int,
    epoch: str,
    stale: bool | None,
    data: SnapshotData | None = None,
    variants: Mapping[str | None, Collection[Variant]] | None = None,
) -> Prepared:
    """*payload* published on *channel* (of *stream*) at *offset*, as one message, and
    for a snapshot its decoded envelope. *data*: a snapshot's ``data`` built already
    (:func:`metrics_data_steps`); *variants*: those its subscribers receive (key
    ``None``) and those of its views (by channel)."""
    variants = variants or {}
    if isinstance(payload, MonitoringMetrics):  # big: the fast path, same bytes
        decoded = metrics_envelope(
            metrics_data(payload) if data is None else data.data,
            timestamp=timestamp,
            channel=stream,
            offset=offset,
            epoch=epoch,
            stale=stale,
        )
        raw = dumps(decoded) if data is None else encode_snapshot(decoded, data.lists)
        item = Outbound.of(raw, stream, offset, channel)
        return Prepared(
            payload, channel, stream, offset, epoch, stale, item, decoded, data, variants
        )
    envelope = Envelope(
        payload=payload,
        timestamp=timestamp,
        channel=stream,
        offset=offset,
        epoch=epoch,
        stale=stale,
    )
    item = Outbound.of(encode(envelope), stream, offset, channel)
    return Prepared(payload, channel, stream, offset, epoch, stale, item, variants=variants)


def encode_reply(payload: Payload, timestamp: int) -> Outbound:
    """A message for one client (``welcome``, ``error``...): no offset, no channel."""
    return Outbound.of(encode(Envelope(payload=payload, timestamp=timestamp)))
