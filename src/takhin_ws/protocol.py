"""The wire protocol in Python: every message class, the envelope, encode and decode.

``from takhin_ws.protocol import ...`` for code that reads or writes the messages a
client sees: a test client, a bridge, a tool. Each message class's ``TYPE`` is its
wire ``type`` and its attributes are the keys of ``data`` (snake_case in Python,
camelCase on the wire); :func:`decode` returns an :class:`Envelope` around one of
them and :func:`encode` writes one. The change events also know their stream, key
and channel (:class:`ChangeEvent`).

The names an embedder needs to feed a server (the events it publishes, the metrics
classes a :class:`~takhin_ws.Snapshot` holds) are also top-level ``takhin_ws`` names;
the errors are too (:class:`~takhin_ws.RemoteProtocolError`, what a bad message
raises). See ``docs/websocket-api.md`` for what each message means.
"""

from .wire import messages as _messages
from .wire.codec import decode as decode
from .wire.codec import encode as encode
from .wire.events import ChangeEvent as ChangeEvent
from .wire.events import Event as Event
from .wire.messages import *  # noqa: F403  (every message class, Envelope, channel_of)

#: The registry's tables (upper-case names of wire.messages) stay internal.
_PUBLIC_CONSTANTS: frozenset[str] = frozenset({"PROTOCOL_VERSION"})

__all__ = sorted(
    {
        *(n for n in _messages.__all__ if not n.isupper() or n in _PUBLIC_CONSTANTS),
        "ChangeEvent",
        "Event",
        "decode",
        "encode",
    },
    key=lambda name: (not name.isupper(), name[0].islower(), name),
)
