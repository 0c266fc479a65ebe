"""Metadata v4 over the Kafka protocol itself (``sources/kafka/admin/metadata.py``): the
request and the answer against an independent reading of the protocol's layout,
bootstrap addresses, brokers that cannot be read (real sockets), and the real brokers
(4.x and 3.x) giving what librdkafka's ``list_topics`` gives; how the source's client
uses it: ``test_kafka_metadata_client.py``."""

from __future__ import annotations

import struct
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fake_kafka import FakeKafka, read_request_head
from kafka_broker import (
    KafkaBroker,
    admin_client,
    create_topic,
    free_port,
    unique,
)
from takhin_ws.sources.kafka.admin import metadata as metadata_module
from takhin_ws.sources.kafka.admin.framing import ProtocolError
from takhin_ws.sources.kafka.admin.listoffsets import DirectOffsets
from takhin_ws.sources.kafka.admin.metadata import (
    API_KEY,
    DEFAULT_PORT,
    VERSION,
    Cluster,
    decode_response,
    encode_request,
    parse_bootstrap,
    read_metadata,
)

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20)
int32 = st.integers(-(2**31), 2**31 - 1)
ids = st.lists(st.integers(0, 2**31 - 1), max_size=4)
#: A partition: (error, id, leader, replicas, isr).
partition = st.tuples(st.integers(0, 100), st.integers(0, 2**31 - 1), int32, ids, ids)
#: A run of partitions of one shape (what most topics are), or of any shapes.
partitions = st.one_of(
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 6)).flatmap(
        lambda shape: st.lists(
            st.tuples(
                st.integers(0, 100),
                st.integers(0, 2**31 - 1),
                int32,
                st.lists(st.integers(0, 9), min_size=shape[0], max_size=shape[0]),
                st.lists(st.integers(0, 9), min_size=shape[1], max_size=shape[1]),
            ),
            min_size=shape[2],
            max_size=shape[2],
            unique_by=lambda p: p[1],
        )
    ),
    st.lists(partition, max_size=6, unique_by=lambda p: p[1]),
)
#: A topic: (error, internal, partitions).
topics = st.dictionaries(
    names, st.tuples(st.integers(0, 100), st.booleans(), partitions), max_size=5
)
brokers = st.dictionaries(
    int32, st.tuples(names, st.integers(0, 65535), st.none() | names), max_size=4
)


def read_request(data: bytes) -> tuple[int, int, int, str, list[str] | None, bool]:
    """The fields of a Metadata v4 request, read field by field."""
    key, version, correlation, client, at = read_request_head(data)
    (count,) = struct.unpack_from(">i", data, at)
    at += 4
    asked: list[str] | None = None if count == -1 else []
    for _ in range(max(count, 0)):
        (name_size,) = struct.unpack_from(">h", data, at)
        assert asked is not None
        asked.append(data[at + 2 : at + 2 + name_size].decode())
        at += 2 + name_size
    (create,) = struct.unpack_from(">?", data, at)
    assert at + 1 == len(data)
    return key, version, correlation, client, asked, create


def _string(text: str | None) -> bytes:
    if text is None:
        return struct.pack(">h", -1)
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def _array(items: list[int]) -> bytes:
    return struct.pack(f">i{len(items)}i", len(items), *items)


def answer(
    correlation: int,
    brokers: dict[int, tuple[str, int, str | None]],
    topics: dict[str, tuple[int, bool, list[tuple[int, int, int, list[int], list[int]]]]],
    cluster_id: str | None = "cluster",
) -> bytes:
    """A Metadata v4 answer body, written field by field."""
    out = struct.pack(">iii", correlation, 0, len(brokers))
    for node, (host, port, rack) in brokers.items():
        out += struct.pack(">i", node) + _string(host) + struct.pack(">i", port) + _string(rack)
    out += _string(cluster_id) + struct.pack(">ii", 1, len(topics))
    for name, (error, internal, rows) in topics.items():
        out += struct.pack(">h", error) + _string(name) + struct.pack(">?i", internal, len(rows))
        for p_error, p_id, leader, replicas, isr in rows:
            out += struct.pack(">hii", p_error, p_id, leader) + _array(replicas) + _array(isr)
    return out


@given(st.integers(0, 2**31 - 1), st.none() | st.lists(names, max_size=5))
def test_the_request_asks_every_topic_or_those_named_and_creates_none(
    correlation: int, asked: list[str] | None
) -> None:
    data = encode_request(correlation, b"takhin-ws", asked)
    assert read_request(data) == (API_KEY, VERSION, correlation, "takhin-ws", asked, False)


@given(brokers, topics, st.none() | names, st.integers(0, 2**31 - 1))
def test_the_answer_gives_the_brokers_and_each_topics_leaders_and_error(
    listed: dict[int, tuple[str, int, str | None]],
    described: dict[str, tuple[int, bool, list[tuple[int, int, int, list[int], list[int]]]]],
    cluster_id: str | None,
    correlation: int,
) -> None:
    cluster = decode_response(answer(correlation, listed, described, cluster_id), correlation)
    assert cluster == Cluster(
        brokers={node: (host, port) for node, (host, port, _rack) in listed.items()},
        leaders={name: {p[1]: p[2] for p in rows} for name, (_, _, rows) in described.items()},
        errors={name: error for name, (error, _, _) in described.items() if error},
    )


def test_partitions_of_one_shape_are_read_as_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A topic whose partitions have the same numbers of replicas and in-sync
    replicas is read as one run of records; another, partition by partition."""
    read_one_by_one: list[int] = []
    one_by_one = metadata_module._one_by_one

    def counted(view: memoryview, at: int, count: int) -> tuple[dict[int, int], int]:
        read_one_by_one.append(count)
        return one_by_one(view, at, count)

    monkeypatch.setattr(metadata_module, "_one_by_one", counted)
    same = [(0, p, p % 3, [1, 2, 3], [2, 3]) for p in range(12)]
    # (a run of one shape, then one partition short of an in-sync replica)
    mixed = [(0, p, 1, [1, 2, 3], [1, 2, 3]) for p in range(5)] + [(0, 5, 2, [1, 2, 3], [2])]
    body = answer(1, {}, {"same": (0, False, same), "mixed": (0, False, mixed)})
    assert decode_response(body, 1).leaders == {
        "same": {p: p % 3 for p in range(12)},
        "mixed": {0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 2},
    }
    assert read_one_by_one == [6]


@given(st.data())
def test_an_answer_cut_anywhere_does_not_read(data: st.DataObject) -> None:
    rows = [(0, 0, 1, [1], [1]), (5, 1, -1, [1], []), (0, 2, 1, [1], [1])]
    body = answer(7, {1: ("127.0.0.1", 9092, "r1")}, {"orders": (0, False, rows)})
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(ProtocolError):
        decode_response(body[:cut], 7)


def test_an_answer_to_another_request_or_with_bytes_after_it_does_not_read() -> None:
    body = answer(7, {1: ("h", 1, None)}, {"orders": (0, False, [(0, 0, 1, [1], [1])])})
    with pytest.raises(ProtocolError, match="answer to request 7, not to 8"):
        decode_response(body, 8)
    with pytest.raises(ProtocolError, match="1 bytes after the answer"):
        decode_response(body + b"\x00", 7)
    negative = answer(7, {}, {}).replace(struct.pack(">ii", 1, 0), struct.pack(">ii", 1, -2))
    with pytest.raises(ProtocolError, match="an array of -2 items"):
        decode_response(negative, 7)


@pytest.mark.parametrize(
    ("bootstrap", "expected"),
    [
        ("127.0.0.1:9093", [("127.0.0.1", 9093)]),
        (
            " PLAINTEXT://a:1, b ,[::1]:3,[fe80::1]",
            [("a", 1), ("b", DEFAULT_PORT), ("::1", 3), ("fe80::1", DEFAULT_PORT)],
        ),
        ("a:notaport,:5,b:0,c:70000,d:7", [("d", 7)]),
    ],
)
def test_bootstrap_addresses(bootstrap: str, expected: list[tuple[str, int]]) -> None:
    assert parse_bootstrap(bootstrap) == expected


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("close", "the broker closed the connection"),
        ("protocol", "an answer that does not read"),
        ("lacking", "an answer cut short"),
    ],
)
def test_brokers_that_cannot_be_read_are_named_with_why(mode: str, why: str) -> None:
    """Each address is tried in turn; none answering gives ``None`` and each reason
    (a broker that answers Metadata v1 only is not read as v4)."""
    direct = DirectOffsets()
    nobody = ("127.0.0.1", free_port())
    try:
        with FakeKafka(mode) as fake:
            address = ("127.0.0.1", fake.port)
            cluster, failed = read_metadata(direct, [nobody, address], time.monotonic() + 5)
    finally:
        direct.close()
    assert cluster is None
    assert list(failed) == [nobody, address]
    assert "refused" in failed[nobody].lower()
    assert failed[address].startswith(why)


def librdkafka_metadata(bootstrap: str) -> Cluster:
    metadata = admin_client(bootstrap).list_topics(timeout=30)
    return Cluster(
        brokers={b.id: (str(b.host), int(b.port)) for b in metadata.brokers.values()},
        leaders={
            name: {p: m.leader for p, m in topic.partitions.items()}
            for name, topic in metadata.topics.items()
        },
        errors={n: t.error.code() for n, t in metadata.topics.items() if t.error is not None},
    )


@pytest.mark.parametrize("broker", ["kafka", "kafka3"])
def test_a_real_broker_gives_what_librdkafka_gives(
    broker: str, request: pytest.FixtureRequest
) -> None:
    real: KafkaBroker = request.getfixturevalue(broker)
    for partition_count in (1, 3, 7):
        create_topic(real.bootstrap, unique("metadata"), partition_count)
    address = parse_bootstrap(real.bootstrap)
    direct = DirectOffsets()
    try:
        for _ in range(3):  # (a topic another test deletes may be half gone: again)
            before, failed = read_metadata(direct, address, time.monotonic() + 10)
            assert failed == {}
            expected = librdkafka_metadata(real.bootstrap)
            after, failed = read_metadata(direct, address, time.monotonic() + 10)  # kept socket
            assert failed == {}
            if before == expected == after:
                break
    finally:
        direct.close()
    assert before == expected
    assert after == expected
    assert sum(len(leaders) for leaders in expected.leaders.values()) >= 11
