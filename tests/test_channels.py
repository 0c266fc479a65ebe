"""The channel grammar: valid names, refused names, the stream of each channel."""

from __future__ import annotations

import orjson
import pytest

from takhin_ws._exceptions import RemoteProtocolError
from takhin_ws.wire.channels import parse_channel, stream_of
from takhin_ws.wire.codec import decode


@pytest.mark.parametrize(
    "channel",
    [
        "metrics",
        "topics",
        "groups",
        "topic:orders",
        "topic:a:b",
        "group:billing",
        "group::x",
        "metrics:lean",
        "metrics:topic:orders",
        "metrics:group:billing",
        "metrics:group::x",
    ],
)
def test_valid_channels(channel: str) -> None:
    assert parse_channel(channel) == channel


@pytest.mark.parametrize(
    "channel",
    [
        "",
        "metric",
        "Metrics",
        "topic",
        "topic:",
        "topic::x",
        "topic:a b",
        "group:",
        "group:a\tb",
        "metrics\n",
        "topics\n",
        "topic:orders\n",
        " metrics",
        "topic:" + "x" * 250,
        "metrics:",
        "metrics:full",
        "metrics:lean:x",
        "metrics:topic:",
        "metrics:topic::x",
        "metrics:topic:a b",
        "metrics:group:",
        "metrics:group:a\tb",
        "metrics:lean\n",
        "metrics:topic:" + "x" * 250,
    ],
)
def test_invalid_channels(channel: str) -> None:
    with pytest.raises(ValueError, match="unknown channel"):
        parse_channel(channel)
    raw = orjson.dumps({"type": "subscribe", "data": channel, "timestamp": 1})
    with pytest.raises(RemoteProtocolError) as info:
        decode(raw)
    assert info.value.code == "invalid_field"
    assert info.value.path == "$.data"


@pytest.mark.parametrize(
    ("channel", "stream"),
    [
        ("metrics", "metrics"),
        ("topics", "topics"),
        ("groups", "groups"),
        ("topic:orders", "topics"),
        ("group:billing", "groups"),
        ("metrics:lean", "metrics"),
        ("metrics:topic:orders", "metrics"),
        ("metrics:group:billing", "metrics"),
        ("metrics:topic:topic:x", "metrics"),
    ],
)
def test_stream_of(channel: str, stream: str) -> None:
    assert stream_of(channel) == stream


def test_unknown_channel_error_lists_every_form() -> None:
    # the text a client reads in its error message: the refused name and every valid form
    with pytest.raises(ValueError, match=r"^unknown channel 'metric' ") as info:
        parse_channel("metric")
    assert str(info.value) == (
        "unknown channel 'metric' (expected metrics, topics, groups, topic:<name>, "
        "group:<id>, metrics:lean, metrics:topic:<name> or metrics:group:<id>)"
    )
