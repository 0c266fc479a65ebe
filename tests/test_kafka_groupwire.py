"""ApiVersions v0, ListGroups v4-v5, FindCoordinator v4-v6, DescribeGroups v5 and
OffsetFetch v8-v9 as bytes
(``sources/kafka/admin/groupwire.py``): each request read back and each answer written
by an independent reading of the protocol's layout (Kafka's message definitions:
flexible versions, compact strings and arrays, tagged fields), field by field."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from takhin_ws.sources.kafka.admin.groupwire import (
    API_VERSIONS,
    DESCRIBE_GROUPS,
    FIND_COORDINATOR,
    LIST_GROUPS,
    OFFSET_FETCH,
    Described,
    Listed,
    ProtocolError,
    choose,
    decode_api_versions,
    decode_describe_groups,
    decode_find_coordinator,
    decode_list_groups,
    decode_offset_fetch,
    encode_api_versions,
    encode_describe_groups,
    encode_find_coordinator,
    encode_list_groups,
    encode_offset_fetch,
)

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20)
groups = st.lists(names, max_size=8, unique=True)
correlations = st.integers(0, 2**31 - 1)
int16 = st.integers(-(2**15), 2**15 - 1)
int32 = st.integers(-(2**31), 2**31 - 1)
#: Tagged fields an answer may carry (a newer broker's): (tag, bytes).
tags = st.lists(st.tuples(st.integers(0, 300), st.binary(max_size=140)), max_size=2)
Tags = list[tuple[int, bytes]]


class Reader:
    """Reads a request the way a broker would, one field at a time."""

    def __init__(self, data: bytes) -> None:
        (size,) = struct.unpack_from(">i", data)
        assert size == len(data) - 4
        self.data, self.at = data, 4

    def fixed(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return int(value)

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self.data[self.at]
            self.at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    def compact_string(self) -> str | None:
        size = self.uvarint() - 1
        if size < 0:
            return None
        text = self.data[self.at : self.at + size].decode()
        self.at += size
        return text

    def header(self, flexible: bool) -> tuple[int, int, int, str]:
        key, version, correlation = self.fixed(">h"), self.fixed(">h"), self.fixed(">i")
        size = self.fixed(">h")
        client = self.data[self.at : self.at + size].decode()
        self.at += size
        if flexible:
            assert self.uvarint() == 0  # no tagged field
        return key, version, correlation, client

    def done(self) -> None:
        assert self.at == len(self.data)


def uvarint(value: int) -> bytes:
    out = b""
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out += bytes([low | 0x80])
        else:
            return out + bytes([low])


def compact(text: str | None) -> bytes:
    if text is None:
        return b"\x00"
    raw = text.encode()
    return uvarint(len(raw) + 1) + raw


def tagged(fields: list[tuple[int, bytes]]) -> bytes:
    unique = dict(fields)
    out = uvarint(len(unique))
    for tag in sorted(unique):
        out += uvarint(tag) + uvarint(len(unique[tag])) + unique[tag]
    return out


def head(correlation: int, extra: list[tuple[int, bytes]]) -> bytes:
    """Response header v1, then a throttle time."""
    return struct.pack(">i", correlation) + tagged(extra) + struct.pack(">i", 0)


@given(correlations)
def test_the_api_versions_request_is_a_bare_v0_header(correlation: int) -> None:
    reader = Reader(encode_api_versions(correlation, b"takhin-ws"))
    assert reader.header(flexible=False) == (API_VERSIONS, 0, correlation, "takhin-ws")
    reader.done()


@given(st.dictionaries(st.integers(0, 80), st.tuples(int16, int16), max_size=30), correlations)
def test_the_api_versions_answer_gives_every_range(
    apis: dict[int, tuple[int, int]], correlation: int
) -> None:
    body = struct.pack(">ihi", correlation, 0, len(apis))
    body += b"".join(struct.pack(">hhh", key, low, high) for key, (low, high) in apis.items())
    assert decode_api_versions(body, correlation) == apis
    with pytest.raises(ProtocolError, match="error 35"):
        decode_api_versions(struct.pack(">ihi", correlation, 35, 0), correlation)


@given(st.sampled_from([4, 5, 6]), correlations, groups)
def test_the_find_coordinator_request_asks_every_group(
    version: int, correlation: int, asked: list[str]
) -> None:
    reader = Reader(encode_find_coordinator(version, correlation, b"me", asked))
    assert reader.header(flexible=True) == (FIND_COORDINATOR, version, correlation, "me")
    assert reader.fixed(">b") == 0  # key type: group
    count = reader.uvarint() - 1
    assert [reader.compact_string() for _ in range(count)] == asked
    assert reader.uvarint() == 0
    reader.done()


@given(st.sampled_from([8, 9]), correlations, groups)
def test_the_offset_fetch_request_asks_every_topic_of_every_group(
    version: int, correlation: int, asked: list[str]
) -> None:
    reader = Reader(encode_offset_fetch(version, correlation, b"me", asked))
    assert reader.header(flexible=True) == (OFFSET_FETCH, version, correlation, "me")
    got = []
    for _ in range(reader.uvarint() - 1):
        got.append(reader.compact_string())
        if version >= 9:
            assert reader.compact_string() is None  # member id
            assert reader.fixed(">i") == -1  # member epoch
        assert reader.uvarint() == 0  # topics: null (all of them)
        assert reader.uvarint() == 0  # tagged fields
    assert got == asked
    assert reader.fixed(">b") == 0  # require stable: false
    assert reader.uvarint() == 0
    reader.done()


@given(st.sampled_from([4, 5]), correlations)
def test_the_list_groups_request_filters_nothing(version: int, correlation: int) -> None:
    reader = Reader(encode_list_groups(version, correlation, b"me"))
    assert reader.header(flexible=True) == (LIST_GROUPS, version, correlation, "me")
    assert reader.uvarint() == 1  # states filter: empty
    if version >= 5:
        assert reader.uvarint() == 1  # types filter: empty
    assert reader.uvarint() == 0
    reader.done()


@given(st.sampled_from([5]), correlations, groups)
def test_the_describe_groups_request_asks_every_group(
    version: int, correlation: int, asked: list[str]
) -> None:
    reader = Reader(encode_describe_groups(version, correlation, b"me", asked))
    assert reader.header(flexible=True) == (DESCRIBE_GROUPS, version, correlation, "me")
    assert [reader.compact_string() for _ in range(reader.uvarint() - 1)] == asked
    assert reader.fixed(">b") == 0  # include authorized operations: false
    assert reader.uvarint() == 0
    reader.done()


listed = st.lists(
    st.tuples(names, st.sampled_from(["consumer", "", "connect"]), names, names, tags)
)


@given(st.sampled_from([4, 5]), listed, int16, correlations, tags)
def test_the_list_groups_answer_gives_every_group_and_the_error(
    version: int,
    rows: list[tuple[str, str, str, str, Tags]],
    error: int,
    correlation: int,
    extra: Tags,
) -> None:
    body = head(correlation, extra) + struct.pack(">h", error) + uvarint(len(rows) + 1)
    for group, protocol, state, kind, more in rows:
        body += compact(group) + compact(protocol) + compact(state)
        body += (compact(kind) if version >= 5 else b"") + tagged(more)
    body += tagged(extra)
    got = decode_list_groups(body, correlation, version)
    wanted = [Listed(g, p, s, k if version >= 5 else "") for g, p, s, k, _ in rows]
    assert got == (error, wanted)


#: A member of a DescribeGroups answer: member id, instance id, client id, host,
#: metadata, assignment, tags.
members = st.lists(
    st.tuples(names, st.none() | names, names, names, st.binary(max_size=300), st.binary(), tags),
    max_size=4,
)
described = st.dictionaries(
    names,
    st.tuples(st.sampled_from([0, 0, 15, 69]), names, names, names, members, tags),
    max_size=5,
)


def describe_answer(correlation: int, rows: dict[str, Any], extra: Tags) -> bytes:
    body = head(correlation, extra) + uvarint(len(rows) + 1)
    for group, (error, state, protocol_type, data, people, more) in rows.items():
        body += struct.pack(">h", error) + compact(group) + compact(state) + compact(protocol_type)
        body += compact(data) + uvarint(len(people) + 1)
        for member, instance, client, host, meta, assignment, own in people:
            body += compact(member) + compact(instance) + compact(client) + compact(host)
            body += uvarint(len(meta) + 1) + meta + uvarint(len(assignment) + 1) + assignment
            body += tagged(own)
        body += struct.pack(">i", -(2**31)) + tagged(more)
    return body + tagged(extra)


@given(described, correlations, tags)
def test_the_describe_groups_answer_gives_each_group_its_state_and_members(
    rows: dict[str, Any], correlation: int, extra: Tags
) -> None:
    got = decode_describe_groups(describe_answer(correlation, rows, extra), correlation)
    assert got == {g: Described(r[0], r[1], r[2], len(r[4])) for g, r in rows.items()}


@given(st.data())
def test_a_describe_answer_cut_anywhere_does_not_read(data: st.DataObject) -> None:
    people: list[tuple[str, str | None, str, str, bytes, bytes, Tags]]
    people = [("m-1", None, "c", "/h", b"meta", b"assignment", [])]
    body = describe_answer(3, {"g": (0, "Stable", "consumer", "range", people, [])}, [])
    assert decode_describe_groups(body, 3) == {"g": Described(0, "Stable", "consumer", 1)}
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(ProtocolError):
        decode_describe_groups(body[:cut], 3)


coordinators = st.dictionaries(
    names,
    st.tuples(int32, names, st.integers(0, 65535), st.integers(0, 100), st.none() | names, tags),
    max_size=6,
)


@given(coordinators, correlations, tags)
def test_the_find_coordinator_answer_gives_each_group_its_node_or_its_error(
    rows: dict[str, tuple[int, str, int, int, str | None, list[tuple[int, bytes]]]],
    correlation: int,
    extra: list[tuple[int, bytes]],
) -> None:
    body = head(correlation, extra) + uvarint(len(rows) + 1)
    for key, (node, host, port, error, message, more) in rows.items():
        body += compact(key) + struct.pack(">i", node) + compact(host)
        body += struct.pack(">ih", port, error) + compact(message) + tagged(more)
    body += tagged(extra)
    found, errors = decode_find_coordinator(body, correlation)
    assert found == {k: (r[0], r[1], r[2]) for k, r in rows.items() if not r[3]}
    assert errors == {k: r[3] for k, r in rows.items() if r[3]}


offsets = st.integers(-1, 2**63 - 1)
#: metadata: null and empty take the one-struct path, any other text the other
metadata = st.none() | st.just("") | names
partition_rows = st.lists(
    st.tuples(st.integers(0, 5000), offsets, int32, metadata, st.sampled_from([0, 0, 0, 88]), tags),
    max_size=5,
    unique_by=lambda row: row[0],
)
answer_groups = st.dictionaries(
    names,
    st.tuples(
        st.dictionaries(names, partition_rows, max_size=3), st.sampled_from([0, 0, 14, 16]), tags
    ),
    max_size=5,
)

#: An OffsetFetch answer: by group, (by topic, partitions: (partition, offset, leader
#: epoch, metadata, error, tags)), the group's error, its tags.
Rows = dict[str, tuple[dict[str, list[tuple[int, int, int, str | None, int, Tags]]], int, Tags]]


def fetch_answer(correlation: int, rows: Rows, extra: Tags) -> bytes:
    body = head(correlation, extra) + uvarint(len(rows) + 1)
    for group, (topics, error, more) in rows.items():
        body += compact(group) + uvarint(len(topics) + 1)
        for topic, parts in topics.items():
            body += compact(topic) + uvarint(len(parts) + 1)
            for partition, offset, epoch, meta, code, own in parts:
                body += struct.pack(">iqi", partition, offset, epoch) + compact(meta)
                body += struct.pack(">h", code) + tagged(own)
            body += tagged(more)
        body += struct.pack(">h", error) + tagged(more)
    return body + tagged(extra)


@given(answer_groups, correlations, tags)
def test_the_offset_fetch_answer_gives_each_group_its_offsets_or_its_error(
    rows: Rows, correlation: int, extra: Tags
) -> None:
    found, errors = decode_offset_fetch(fetch_answer(correlation, rows, extra), correlation)
    expected_found: dict[str, dict[str, dict[int, int]]] = {}
    expected_errors: dict[str, int] = {}
    for group, (topics, error, _more) in rows.items():
        codes = [row[4] for parts in topics.values() for row in parts if row[4]]
        if error or codes:
            expected_errors[group] = error or codes[0]
            continue
        committed = {
            topic: {row[0]: row[1] for row in parts if row[1] >= 0}
            for topic, parts in topics.items()
        }
        expected_found[group] = {topic: ids for topic, ids in committed.items() if ids}
    assert found == expected_found
    assert errors == expected_errors


def sample_answer() -> bytes:
    topics: dict[str, list[tuple[int, int, int, str | None, int, Tags]]] = {
        "orders": [(0, 5, 1, "", 0, []), (1, 9, 1, None, 0, [])],
        "audit": [],
    }
    return fetch_answer(7, {"g1": (topics, 0, []), "g2": ({}, 16, [])}, [])


@given(st.data())
def test_an_answer_cut_anywhere_does_not_read(data: st.DataObject) -> None:
    body = sample_answer()
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(ProtocolError):
        decode_offset_fetch(body[:cut], 7)


def test_an_answer_to_another_request_or_with_bytes_after_it_does_not_read() -> None:
    body = sample_answer()
    assert decode_offset_fetch(body, 7) == ({"g1": {"orders": {0: 5, 1: 9}}}, {"g2": 16})
    with pytest.raises(ProtocolError, match="answer to request 7, not to 8"):
        decode_offset_fetch(body, 8)
    with pytest.raises(ProtocolError, match="1 bytes after the answer"):
        decode_offset_fetch(body + b"\x00", 7)
    # a partition count far past the end (no record of that many is built)
    lying = head(7, []) + uvarint(2) + compact("g") + uvarint(2) + compact("t")
    lying += uvarint(10**9) + bytes(40)
    with pytest.raises(ProtocolError, match="cut short"):
        decode_offset_fetch(lying, 7)


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [((0, 4), None), ((0, 8), 8), ((8, 10), 9), ((9, 9), 9), ((10, 11), None), (None, None)],
)
def test_the_highest_version_both_sides_speak_is_chosen(
    offered: tuple[int, int] | None, chosen: int | None
) -> None:
    assert choose((8, 9), offered) == chosen
