"""The stream entry codec (``cluster/entries.py``) and the Lua scripts as package data,
without Redis: an entry read back is byte for byte what a single node's hub publishes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import group_events, metrics, topic_events
from takhin_ws._exceptions import LocalProtocolError
from takhin_ws.cluster import scripts
from takhin_ws.cluster.entries import (
    EntryError,
    Fields,
    decode_entry_steps,
    encode_entry,
    entry_epoch,
    entry_id,
)
from takhin_ws.core.hub import Hub, channel_of
from takhin_ws.wire.codec import encode
from takhin_ws.wire.messages import (
    Envelope,
    GroupCreated,
    MonitoringMetrics,
    Payload,
    Pong,
    TopicCreated,
)
from takhin_ws.wire.websocket.frames import Outbound
from test_encoding import run

EPOCH = "5f2c9a7e1b3d4c60"
NOW = 1_767_225_600


def decode_entry(
    stream: str, ident: bytes | str, fields: Fields, epoch: str
) -> tuple[str, Outbound]:
    """What a node's reader makes of an entry: decoded in steps, then prepared by its
    hub with the entry's offset and timestamp."""
    got, _ = run(decode_entry_steps(stream, ident, fields, epoch))
    return got.route, got.prepare(Hub(epoch=epoch)).item


def stored(fields: list[str | bytes], epoch: str = EPOCH) -> dict[bytes, bytes]:
    """The entry as coredis reads it back: bytes keys and values, ``epoch`` first."""
    raw = [b"epoch", epoch.encode()]
    raw += [v if isinstance(v, bytes) else v.encode() for v in fields]
    return dict(zip(raw[::2], raw[1::2], strict=True))


@given(
    st.one_of(topic_events, group_events, metrics),
    st.integers(min_value=1, max_value=2**40),
    st.none() | st.booleans(),
)
def test_an_entry_decodes_to_what_the_hub_publishes(
    payload: Payload, offset: int, stale: bool | None
) -> None:
    channel = channel_of(payload)
    try:
        encode(Envelope(payload=payload, timestamp=0))
    except LocalProtocolError:
        return  # a payload no node could send at all (an int beyond 64 bits)
    stream, fields = encode_entry(channel, payload, timestamp=NOW, stale=stale)
    route, item = decode_entry(stream, entry_id(offset).encode(), stored(fields), EPOCH)
    hub = Hub(epoch=EPOCH, wall_clock=lambda: NOW + 0.9)
    if offset > 1:  # the single node's stream stands just before that offset
        hub.remember(stream, Outbound.of(b"{}", stream, offset - 1))
    expected = hub.publish(channel, payload, stale=stale)
    assert route == channel
    assert item == expected  # payload and frame byte for byte, channel, offset, route


def test_fields_hold_the_route_and_the_message_without_offsets() -> None:
    stream, fields = encode_entry(
        "topic:orders", TopicCreated(name="orders", partitions=1), timestamp=NOW
    )
    assert stream == "topics"
    assert fields == [
        "route",
        "topic:orders",
        "msg",
        b'{"type":"topic_created","data":{"name":"orders","partitions":1},"timestamp":1767225600}',
    ]
    stream, fields = encode_entry("metrics", MonitoringMetrics(), timestamp=NOW, stale=True)
    assert stream == "metrics"
    message = fields[3]
    assert isinstance(message, bytes)
    assert message.endswith(b',"stale":true}')


@pytest.mark.parametrize(
    ("channel", "payload", "message"),
    [
        ("orders", TopicCreated(name="orders", partitions=1), "unknown channel"),
        ("topics", MonitoringMetrics(), "a metrics message is not published on topics"),
        (
            "metrics",
            TopicCreated(name="x", partitions=1),
            "a topic_created message is not published on metrics",
        ),
        ("group:billing", TopicCreated(name="x", partitions=1), "not published on groups"),
    ],
)
def test_encode_refuses_a_message_its_stream_does_not_carry(
    channel: str, payload: Payload, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode_entry(channel, payload, timestamp=NOW)


def good() -> dict[bytes, bytes]:
    return stored(
        encode_entry(
            "group:billing",
            GroupCreated(group_id="billing", state="Empty", members=0),
            timestamp=NOW,
        )[1]
    )


def test_a_good_entry_decodes() -> None:
    route, item = decode_entry("groups", "0-7", good(), EPOCH)
    assert (route, item.channel, item.offset) == ("group:billing", "groups", 7)
    assert b'"epoch":"5f2c9a7e1b3d4c60"' in item.payload
    assert decode_entry("groups", b"0-7", {k.decode(): v for k, v in good().items()}, EPOCH)


@pytest.mark.parametrize(
    ("stream", "ident", "change", "message"),
    [
        ("groups", "0-1", {b"epoch": b"0123456789abcdef"}, r"another epoch \(0123456789abcdef\)"),
        ("groups", "0-1", {b"epoch": None}, r"another epoch \(none\)"),
        ("groups", "0-1", {b"route": None}, "no 'route' field"),
        ("groups", "0-1", {b"msg": None}, "no 'msg' field"),
        ("topics", "0-1", {}, "route 'group:billing' is not a channel of topics"),
        ("groups", "0-1", {b"route": b"orders"}, "unknown channel"),
        ("metrics", "0-1", {b"route": b"metrics:lean"}, "route 'metrics:lean' is a view"),
        ("groups", "1-1", {}, "id '1-1' is not an offset"),
        ("groups", "0-x", {}, "id '0-x' is not an offset"),
        ("groups", "0-0", {}, "id '0-0' is not an offset"),
        ("groups", "0--3", {}, "id '0--3' is not an offset"),
        ("groups", "17", {}, "id '17' is not an offset"),
        ("groups", "0-1", {b"msg": b"{nope"}, "not valid JSON"),
        ("groups", "0-1", {b"msg": b'{"type":"group_created","data":{},"timestamp":1}'}, "groupId"),
        ("groups", "0-1", {b"msg": b'{"type":"ping","timestamp":1}'}, "unknown message type"),
    ],
)
def test_an_unusable_entry_says_why(
    stream: str, ident: str, change: dict[bytes, Any], message: str
) -> None:
    fields = good()
    for key, value in change.items():
        if value is None:
            del fields[key]
        else:
            fields[key] = value
    with pytest.raises(EntryError, match=message):
        decode_entry(stream, ident, fields, EPOCH)


def test_a_reply_is_not_a_stream_message() -> None:
    fields = good()
    fields[b"msg"] = encode(Envelope(payload=Pong(), timestamp=NOW))
    with pytest.raises(EntryError, match="unknown message type 'pong'"):
        decode_entry("groups", "0-1", fields, EPOCH)


def test_entry_epoch() -> None:
    assert entry_epoch(good()) == EPOCH
    assert entry_epoch({}) == ""


def test_the_lua_scripts_are_package_data() -> None:
    for name in ("ensure_epoch", "current_epoch", "publish", "lease_hold", "lease_release"):
        assert "redis.call" in scripts.read_script(name) or name == "current_epoch"
    assert scripts.CURRENT_EPOCH.startswith(scripts.read_script("ensure_epoch"))
    assert scripts.PUBLISH.startswith(scripts.read_script("ensure_epoch"))
    assert scripts.CURRENT_EPOCH.rstrip().endswith("return epoch")
    assert "XADD" in scripts.PUBLISH
    with pytest.raises(FileNotFoundError):
        scripts.read_script("missing")
