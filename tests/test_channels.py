"""The channel grammar: valid names, refused names, the stream of each channel."""

from __future__ import annotations

import orjson
import pytest

from takhin_ws._exceptions import RemoteProtocolError
from takhin_ws.wire.channels import (
    MAX_OFFSET,
    MAX_OFFSET_DIGITS,
    parse_channel,
    parse_offset,
    stream_of,
)
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


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("7", 7), ("0042", 42), (str(MAX_OFFSET), MAX_OFFSET), ("0" * 19, 0)],
)
def test_an_offset_in_ascii_digits_is_read(text: str, value: int) -> None:
    assert parse_offset(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-1",
        "+1",
        " 1",
        "1 ",
        "12a",
        "a12",
        "1_000",
        "\u0663",  # an Arabic-Indic 3: str.isdigit and int accept it
        "\u00b3",  # a superscript 3: str.isdigit accepts it
        str(MAX_OFFSET + 1),  # as many digits as the largest, one more in value
        "0" * (MAX_OFFSET_DIGITS + 1),  # a small value in too many digits
    ],
)
def test_anything_else_is_not_an_offset(text: str) -> None:
    with pytest.raises(ValueError, match=rf"^an offset is 0 to {MAX_OFFSET} in ASCII digits$"):
        parse_offset(text)
