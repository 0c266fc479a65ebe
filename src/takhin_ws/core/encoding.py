"""What a publish is encoded into, once per publish (sans-IO).

The hub gives each published message its envelope (timestamp, stream, offset, epoch,
``stale``) and turns it into one :class:`Outbound` here, before recording it and
offering it to every subscriber. A snapshot (``metrics``) takes the fast path: its
envelope is built as plain dicts (:func:`~takhin_ws.core.metrics.views.metrics_data`,
the codec's bytes), which the hub keeps for the tick so the views and the filtered
snapshots never parse it again; an event goes through the codec. A per-client reply
(``welcome``, ``error``...) carries no offset and is encoded here too."""

from __future__ import annotations

from ..wire.codec import encode
from ..wire.messages import Envelope, MonitoringMetrics, Payload
from ..wire.websocket.frames import Outbound
from .metrics.views import JSON, dumps, metrics_data, metrics_envelope

__all__ = ["encode_published", "encode_reply"]


def encode_published(
    payload: Payload,
    channel: str,
    *,
    stream: str,
    offset: int,
    timestamp: int,
    epoch: str,
    stale: bool | None,
) -> tuple[Outbound, JSON | None]:
    """*payload* published on *channel* (of *stream*) at *offset*, as one message, and
    for a snapshot its decoded envelope (``None`` for an event)."""
    if isinstance(payload, MonitoringMetrics):  # big: the fast path, same bytes
        decoded = metrics_envelope(
            metrics_data(payload),
            timestamp=timestamp,
            channel=stream,
            offset=offset,
            epoch=epoch,
            stale=stale,
        )
        return Outbound.of(dumps(decoded), stream, offset, channel), decoded
    envelope = Envelope(
        payload=payload,
        timestamp=timestamp,
        channel=stream,
        offset=offset,
        epoch=epoch,
        stale=stale,
    )
    return Outbound.of(encode(envelope), stream, offset, channel), None


def encode_reply(payload: Payload, timestamp: int) -> Outbound:
    """A message for one client (``welcome``, ``error``...): no offset, no channel."""
    return Outbound.of(encode(Envelope(payload=payload, timestamp=timestamp)))
