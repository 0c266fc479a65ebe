"""Committed offsets of many groups over the Kafka protocol itself
(``sources/kafka/admin/groupoffsets.py``): against the real brokers (4.x and 3.x),
what independent consumers committed comes back as librdkafka reads it; brokers that
cannot be read leave every group to librdkafka, with why; a coordinator that moved,
went away or is loading is found and asked again within the read, and a group whose
coordinator is still loading at its end fails the tick without librdkafka."""

from __future__ import annotations

import concurrent.futures
import socket
import time
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions

from fake_kafka import FakeKafka, reason_of_mode
from kafka_broker import KafkaBroker, admin_client, commit, create_topic, free_port, unique
from takhin_ws.sources.kafka.admin import groupoffsets
from takhin_ws.sources.kafka.admin.groupoffsets import DirectGroupOffsets
from takhin_ws.sources.kafka.admin.groupwire import (
    FIND_COORDINATOR,
    Committed,
    decode_find_coordinator,
    decode_offset_fetch,
)
from takhin_ws.sources.kafka.admin.metadata import parse_bootstrap
from takhin_ws.sources.kafka.collector import KafkaCollector
from takhin_ws.sources.kafka.errors import KafkaSourceError

#: Groups committed for the comparison: enough that one request carries many.
GROUPS = 24
#: Seconds a test gives a read (the broker is shared and the machine loaded).
TIMEOUT = 20.0
#: The deadline given a broker that never answers, and the share of it the test lets
#: the read take (~0.6 s: it must give up long before the deadline).
SILENT_DEADLINE = 60.0
SILENT_SHARE = 0.01


def librdkafka_offsets(bootstrap: str, groups: list[str]) -> dict[str, Committed]:
    """What librdkafka's AdminClient reads, one group a request."""
    admin = admin_client(bootstrap)
    out: dict[str, Committed] = {}
    for group in groups:
        futures = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=10
        )
        answer = futures[group].result(timeout=TIMEOUT)
        committed: Committed = {}
        for tp in answer.topic_partitions:
            assert tp.error is None
            committed.setdefault(tp.topic, {})[tp.partition] = tp.offset
        out[group] = committed
    return out


def commit_groups(bootstrap: str, count: int) -> dict[str, Committed]:
    """*count* groups, each committed by a consumer of its own on two topics (other
    offsets a group); returns what each committed."""
    topics = [unique("committed"), unique("committed")]
    for topic in topics:
        create_topic(bootstrap, topic, 3)
    wanted: dict[str, Committed] = {}
    for index in range(count):
        group = unique(f"many{index}")
        wanted[group] = {
            topics[0]: {0: index, 1: index * 7 + 1, 2: 2**40 + index},
            topics[1]: {index % 3: 5},
        }
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for future in [
            pool.submit(commit, bootstrap, group, topic, offsets)
            for group, by_topic in wanted.items()
            for topic, offsets in by_topic.items()
        ]:
            future.result()
    return wanted


def read(direct: DirectGroupOffsets, groups: list[str]) -> tuple[dict[str, Committed], Any]:
    """What was read and what was left to librdkafka (nothing may be still settling)."""
    found, left, waiting = direct.read(groups, time.monotonic() + TIMEOUT)
    assert waiting == {}
    return found, left


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["kafka", "kafka3"])
def test_many_groups_come_back_as_librdkafka_reads_them(
    broker: str, request: pytest.FixtureRequest
) -> None:
    cluster: KafkaBroker = request.getfixturevalue(broker)
    wanted = commit_groups(cluster.bootstrap, GROUPS)
    groups = [*wanted, unique("never-committed")]
    direct = DirectGroupOffsets(parse_bootstrap(cluster.bootstrap))
    try:
        found, left = read(direct, groups)
        found_again, left_again = read(direct, groups)  # coordinators known now
        assert set(direct.coordinators) == set(groups)
        read(direct, groups[:2])  # the others gone: their coordinators forgotten
        assert set(direct.coordinators) == set(groups[:2])
    finally:
        direct.close()
    assert left == left_again == {}
    assert found == found_again == {**wanted, groups[-1]: {}}
    assert found == librdkafka_offsets(cluster.bootstrap, groups)


def offsets_asked_of_librdkafka(admin: Any, monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """The groups whose offsets *admin* asks librdkafka for, one list a request that
    asks for any (a request that only describes groups, say a group of the new
    consumer protocol another test left on the broker, is not one)."""
    asked: list[list[Any]] = []
    original = admin._request_groups

    def request(keys: list[Any], timeout: float) -> Any:
        offsets = [g for kind, g in keys if kind == "offsets"]
        if offsets:
            asked.append(offsets)
        return original(keys, timeout)

    monkeypatch.setattr(admin, "_request_groups", request)
    return asked


@pytest.mark.slow
def test_the_collector_reads_the_same_offsets_either_way(
    kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = commit_groups(kafka.bootstrap, 3)
    collector = KafkaCollector(kafka.bootstrap)
    admin = collector.admin
    asked = offsets_asked_of_librdkafka(admin, monkeypatch)
    try:
        _infos, direct = admin.groups(time.monotonic() + TIMEOUT)
        assert asked == []  # no offsets asked of librdkafka
        assert admin.group_direct is not None
        admin.group_direct.close()
        admin.group_direct = None
        _infos, librdkafka = admin.groups(time.monotonic() + TIMEOUT)
        assert set(librdkafka) <= set(asked[0])  # every group through librdkafka
    finally:
        collector.close()
    assert direct.keys() == librdkafka.keys()
    assert {g: direct[g] for g in wanted} == {g: librdkafka[g] for g in wanted} == wanted


def settling(codes: dict[str, list[int]]) -> Any:
    """decode_offset_fetch, answering each group of *codes* with its next error code
    (one answer each) instead of its offsets, while it has codes left."""
    decode = decode_offset_fetch

    def answer(body: bytearray, correlation: int) -> Any:
        found, errors = decode(body, correlation)
        for group, left in codes.items():
            if group in found and left:
                del found[group]
                errors[group] = left.pop(0)
        return found, errors

    return answer


@pytest.mark.slow
def test_a_coordinator_gone_moved_or_loading_is_found_and_asked_again_in_the_same_read(
    kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a broker answers for a while after it restarts: the read asks again
    (finding the coordinator again when it moved or is gone) and reads every group
    whole at once, nothing left to librdkafka."""
    wanted = commit_groups(kafka.bootstrap, 4)
    gone, moved, loading, _kept = wanted
    direct = DirectGroupOffsets(parse_bootstrap(kafka.bootstrap))
    finds: list[int] = []
    find = decode_find_coordinator

    def counted(body: bytearray, correlation: int) -> Any:
        finds.append(correlation)
        return find(body, correlation)

    try:
        read(direct, [*wanted])
        direct.coordinators[gone] = ("127.0.0.1", free_port())  # not there any more
        monkeypatch.setattr(groupoffsets, "decode_find_coordinator", counted)
        monkeypatch.setattr(
            groupoffsets,
            "decode_offset_fetch",
            settling({moved: [16, 15], loading: [14, 14, 14]}),  # (ATTEMPTS: 4)
        )
        found, left, waiting = direct.read([*wanted], time.monotonic() + TIMEOUT)
        coordinators = dict(direct.coordinators)
    finally:
        direct.close()
    assert (found, left, waiting) == (wanted, {}, {})
    assert set(coordinators) == set(wanted)
    assert len(finds) == 2  # gone and moved; moved again (loading kept its coordinator)


@pytest.mark.slow
def test_a_coordinator_still_loading_at_the_end_of_the_read_is_not_left_to_librdkafka(
    kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = commit_groups(kafka.bootstrap, 2)
    loading, kept = wanted
    direct = DirectGroupOffsets(parse_bootstrap(kafka.bootstrap))
    codes = {loading: [14] * (groupoffsets.ATTEMPTS + 1)}
    try:
        monkeypatch.setattr(groupoffsets, "decode_offset_fetch", settling(codes))
        found, left, waiting = direct.read([*wanted], time.monotonic() + TIMEOUT)
    finally:
        direct.close()
    assert codes == {loading: [14]}  # asked ATTEMPTS times
    assert (found, left) == ({kept: wanted[kept]}, {})
    assert waiting == {loading: "error 14 (COORDINATOR_LOAD_IN_PROGRESS)"}


@pytest.mark.slow
def test_a_group_still_settling_fails_the_tick_without_librdkafka(
    kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not whole, so not a snapshot: the collector's tick fails, saying why, and
    librdkafka is not asked for the group's offsets."""
    wanted = commit_groups(kafka.bootstrap, 2)
    moved, _kept = wanted
    collector = KafkaCollector(kafka.bootstrap)
    admin = collector.admin
    asked = offsets_asked_of_librdkafka(admin, monkeypatch)
    codes = {moved: [16] * groupoffsets.ATTEMPTS}
    monkeypatch.setattr(groupoffsets, "decode_offset_fetch", settling(codes))
    try:
        with pytest.raises(KafkaSourceError) as failed:
            admin.groups(time.monotonic() + TIMEOUT)
    finally:
        collector.close()
    assert codes == {moved: []}
    assert asked == []  # its offsets not read through librdkafka
    message = str(failed.value)
    assert f"kafka {kafka.bootstrap}: committed offsets of group {moved} not read" in message
    assert "error 16 (NOT_COORDINATOR)" in message


@pytest.mark.parametrize("mode", ["close", "protocol", "lacking"])
def test_a_broker_that_cannot_be_read_leaves_every_group_with_why(mode: str) -> None:
    with FakeKafka(mode) as fake:
        direct = DirectGroupOffsets([("127.0.0.1", free_port()), ("127.0.0.1", fake.port)])
        try:
            found, left, waiting = direct.read(["a", "b"], time.monotonic() + TIMEOUT)
        finally:
            direct.close()
    assert found == {}
    assert waiting == {}
    assert set(left) == {"a", "b"}
    why = left["a"]
    # a "lacking" one offers ApiVersions and Metadata only
    assert reason_of_mode(mode, f"no version 4-6 of API {FIND_COORDINATOR}") in why


def test_a_broker_that_never_answers_leaves_every_group_by_its_share_of_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A listener that accepts and never answers: the read gives up once its share of
    the time is over (the rest is librdkafka's), every group left with why."""
    monkeypatch.setattr(groupoffsets, "DIRECT_SHARE", SILENT_SHARE)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # (the backlog accepts)
        direct = DirectGroupOffsets([silent.getsockname()])
        deadline = time.monotonic() + SILENT_DEADLINE
        try:
            found, left, waiting = direct.read(["a", "b"], deadline)
        finally:
            direct.close()
        assert time.monotonic() < deadline  # long before: its share was over
    assert found == {}
    assert waiting == {}
    assert set(left) == {"a", "b"}
    assert "timed out" in left["a"] or "deadline passed" in left["a"]


@pytest.mark.parametrize("size", [0, 2**31 - 1])
def test_an_answer_of_an_impossible_size_leaves_every_group_with_why(size: int) -> None:
    """A listener that answers every request with a size prefix no answer can have (too
    small for a correlation id, or past the largest answer read): every group is left
    to librdkafka with why, the read raises nothing."""
    with socket.create_server(("127.0.0.1", 0)) as server:

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(size.to_bytes(4, "big"))
                conn.recv(65536)  # until the client closes

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(answer)
            direct = DirectGroupOffsets([server.getsockname()])
            try:
                found, left, waiting = direct.read(["a", "b"], time.monotonic() + TIMEOUT)
            finally:
                direct.close()
    assert (found, waiting) == ({}, {})
    assert set(left) == {"a", "b"}
    assert f"an answer of {size} bytes" in left["a"]
