"""The hub's internals, for code that drives a :class:`~takhin_ws.Hub` itself.

``from takhin_ws.lowlevel import ...``, as ``trio.lowlevel``: what a program needs to
register its own receiving ends with a hub and read what it is handed, without a
server (an in-process fan-out, a server-sent-events endpoint, a test):

- :class:`Subscriber`, the receiving end the hub offers each message to (``offer``
  must neither block nor raise), and :class:`QueueSubscriber`, one that only queues,
  in a :class:`DropOldestQueue` (bounded; an overflow drops the oldest message and
  records a :class:`Drop` for the ``gap`` message);
- :class:`Client`, the hub's record of one registered subscriber
  (``Hub.add_client`` returns it);
- :class:`Outbound`, one published message as it is handed out (its JSON, its
  WebSocket frame, its channel and offset), in a :class:`Variant` (``PLAIN``,
  ``BARE``, or compressed), fixed per client;
- :class:`Permissions`, a token's ``channels`` claim compiled: a client registered
  with one (``Hub.add_client(..., permissions=...)``) receives only what it grants;
- :class:`Prepared`, a publish encoded but not yet made (``Hub.prepare``, then
  ``Hub.commit``), and :func:`metrics_data_steps`, a snapshot's dicts (and its lists as
  JSON: :class:`SnapshotData`) built in pieces: how a big publish is cut into short
  steps of an event loop (``MemoryBus.publish`` does it this way).

A server builds and runs all of these itself: ``takhin_ws`` is enough to run one.
"""

from .core.access.permissions import Permissions
from .core.clients import Client, QueueSubscriber, Subscriber
from .core.encoding import Prepared, SnapshotData, metrics_data_steps
from .core.queue import Drop, DropOldestQueue, QueueStatistics
from .wire.websocket.frames import BARE, PLAIN, Outbound, Variant

__all__ = [
    "BARE",
    "PLAIN",
    "Client",
    "Drop",
    "DropOldestQueue",
    "Outbound",
    "Permissions",
    "Prepared",
    "QueueStatistics",
    "QueueSubscriber",
    "SnapshotData",
    "Subscriber",
    "Variant",
    "metrics_data_steps",
]
