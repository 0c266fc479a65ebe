"""ListOffsets v1 over the Kafka protocol itself (``sources/kafka/admin/listoffsets.py``): the
request and the answer against an independent reading of the protocol's layout, and
brokers that cannot be read (real sockets; the real broker's answers are in
``test_kafka_ticks.py``)."""

from __future__ import annotations

import struct
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fake_kafka import FakeKafka, read_request_head
from kafka_broker import free_port
from takhin_ws.sources.kafka.admin.framing import ProtocolError
from takhin_ws.sources.kafka.admin.listoffsets import (
    API_KEY,
    LATEST,
    VERSION,
    DirectOffsets,
    decode_response,
    encode_request,
)

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20)
partitions = st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=8, unique=True)
topics = st.dictionaries(names, partitions, max_size=6)
int64 = st.integers(-(2**63), 2**63 - 1)


def read_request(data: bytes) -> tuple[int, int, int, str, int, dict[str, list[int]], list[int]]:
    """The fields of a ListOffsets v1 request, read field by field."""
    key, version, correlation, client, at = read_request_head(data)
    replica, count = struct.unpack_from(">ii", data, at)
    at += 8
    asked: dict[str, list[int]] = {}
    stamps: list[int] = []
    for _ in range(count):
        (name_size,) = struct.unpack_from(">h", data, at)
        name = data[at + 2 : at + 2 + name_size].decode()
        (many,) = struct.unpack_from(">i", data, at + 2 + name_size)
        at += 6 + name_size
        for _ in range(many):
            partition, stamp = struct.unpack_from(">iq", data, at)
            at += 12
            asked.setdefault(name, []).append(partition)
            stamps.append(stamp)
    assert at == len(data)
    return key, version, correlation, client, replica, asked, stamps


def answer(correlation: int, parts: dict[str, list[tuple[int, int, int]]]) -> bytes:
    """A ListOffsets v1 answer body: (partition, error, offset) by topic."""
    out = struct.pack(">ii", correlation, len(parts))
    for name, rows in parts.items():
        raw = name.encode()
        out += struct.pack(">h", len(raw)) + raw + struct.pack(">i", len(rows))
        for partition, error, offset in rows:
            out += struct.pack(">ihqq", partition, error, -1, offset)
    return out


@given(topics, st.integers(0, 2**31 - 1), st.sampled_from([-1, -2]))
def test_the_request_asks_every_partition_of_every_topic(
    asked: dict[str, list[int]], correlation: int, stamp: int
) -> None:
    data = encode_request(correlation, b"takhin-ws", asked, stamp)
    key, version, got_correlation, client, replica, got, stamps = read_request(data)
    assert (key, version, got_correlation, client, replica) == (
        API_KEY,
        VERSION,
        correlation,
        "takhin-ws",
        -1,
    )
    assert got == asked
    assert stamps == [stamp] * sum(len(ids) for ids in asked.values())


@given(
    st.dictionaries(
        names,
        st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 100), int64), max_size=6),
        max_size=6,
    ),
    st.integers(0, 2**31 - 1),
)
def test_the_answer_gives_each_partition_its_offset_or_its_error(
    parts: dict[str, list[tuple[int, int, int]]], correlation: int
) -> None:
    found, errors = decode_response(answer(correlation, parts), correlation)
    expected_found = {}
    expected_errors = {}
    for name, rows in parts.items():
        for partition, error, offset in rows:
            if error:
                expected_errors[name, partition] = error
            else:
                expected_found[name, partition] = offset
    assert found == expected_found
    assert errors == expected_errors


@given(st.data())
def test_an_answer_cut_anywhere_does_not_read(data: st.DataObject) -> None:
    body = answer(7, {"orders": [(0, 0, 5), (1, 0, 9)], "audit": [(0, 6, -1)]})
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(ProtocolError):
        decode_response(body[:cut], 7)


def test_an_answer_to_another_request_or_with_bytes_after_it_does_not_read() -> None:
    body = answer(7, {"orders": [(0, 0, 5)]})
    with pytest.raises(ProtocolError, match="answer to request 7, not to 8"):
        decode_response(body, 8)
    with pytest.raises(ProtocolError, match="1 bytes after the answer"):
        decode_response(body + b"\x00", 7)


@pytest.mark.parametrize("mode", ["close", "protocol"])
def test_a_broker_that_cannot_be_read_is_named_with_why(mode: str) -> None:
    direct = DirectOffsets()
    nobody = ("127.0.0.1", free_port())
    try:
        with FakeKafka(mode) as fake:
            found, errors, failed = direct.read(
                {("127.0.0.1", fake.port): {"orders": [0, 1]}, nobody: {"audit": [0]}},
                LATEST,
                time.monotonic() + 5,
            )
    finally:
        direct.close()
    assert (found, errors) == ({}, {})
    assert set(failed) == {("127.0.0.1", fake.port), nobody}
    assert "refused" in failed[nobody].lower()
    if mode == "close":
        assert failed["127.0.0.1", fake.port] == "the broker closed the connection"
    else:  # its answer is one byte after the correlation id
        assert "does not read" in failed["127.0.0.1", fake.port]
