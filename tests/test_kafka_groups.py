"""Consumer groups listed and described over the Kafka protocol itself
(``sources/kafka/admin/groups.py``): against the real brokers (4.x and 3.x), every
group's state and members come back as librdkafka gives them; what cannot be read that
way (a broker that cannot list, a group that answers an error, a group of the new
consumer protocol) goes to librdkafka; and the collector's choice of which groups to
describe each tick holds on either path."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer

from fake_kafka import FakeKafka, reason_of_mode
from kafka_broker import KafkaBroker, admin_client, commit, create_topic, free_port, produce, unique
from takhin_ws.core.metrics.snapshot import GroupInfo
from takhin_ws.sources.kafka import collector as collector_module
from takhin_ws.sources.kafka.admin import groups as groups_module
from takhin_ws.sources.kafka.admin.client import DESCRIBE_ROUNDS, KafkaAdmin, _state
from takhin_ws.sources.kafka.admin.groups import DirectGroups
from takhin_ws.sources.kafka.admin.groupwire import (
    LIST_GROUPS,
    Described,
    decode_describe_groups,
    decode_list_groups,
)
from takhin_ws.sources.kafka.admin.metadata import parse_bootstrap
from takhin_ws.sources.kafka.admin.requests import Batch
from takhin_ws.sources.kafka.collector import KafkaCollector

#: Seconds a test gives a read or a tick (the broker is shared and the machine loaded).
TIMEOUT = 20.0
#: Groups that only committed offsets, described in batches of BATCH (several requests).
GROUPS = 5
BATCH = 2


@pytest.fixture
def live(request: pytest.FixtureRequest) -> Iterator[tuple[KafkaBroker, str, list[str]]]:
    """A broker (``kafka`` or ``kafka3``, the test's parameter), GROUPS groups that only
    committed offsets and one group with a member polling (Stable, 1 member)."""
    cluster: KafkaBroker = request.getfixturevalue(request.param)
    topic, joined = unique("described"), unique("live")
    create_topic(cluster.bootstrap, topic, 2)
    produce(cluster.bootstrap, topic, {0: 3, 1: 3})
    idle = [unique(f"idle{k}") for k in range(GROUPS)]
    for group in idle:
        commit(cluster.bootstrap, group, topic, {0: 1})
    consumer = Consumer(
        {"bootstrap.servers": cluster.bootstrap, "group.id": joined, "log_level": 0}
    )
    consumer.subscribe([topic])
    stop = threading.Event()
    poller = threading.Thread(target=lambda: [consumer.poll(0.1) for _ in iter(stop.is_set, True)])
    poller.start()
    try:
        admin = admin_client(cluster.bootstrap)
        wait = time.monotonic() + 60
        while time.monotonic() < wait:
            (future,) = admin.describe_consumer_groups([joined]).values()
            description = future.result(TIMEOUT)
            if len(description.members) == 1 and _state(description.state) == "Stable":
                break
            time.sleep(0.2)
        yield cluster, joined, idle
    finally:
        stop.set()
        poller.join()
        consumer.close()


def librdkafka_groups(
    bootstrap: str, groups: list[str]
) -> tuple[dict[str, Any], dict[str, GroupInfo]]:
    """librdkafka's listing (state by group) and descriptions of *groups*."""
    admin = admin_client(bootstrap)
    listed = admin.list_consumer_groups().result(TIMEOUT)
    states = {g.group_id: _state(g.state) for g in listed.valid}
    described = {
        group: future.result(TIMEOUT)
        for group, future in admin.describe_consumer_groups(groups).items()
    }
    return states, {
        g: GroupInfo(state=_state(d.state), members=len(d.members)) for g, d in described.items()
    }


@pytest.mark.slow
@pytest.mark.parametrize("live", ["kafka", "kafka3"], indirect=True)
def test_groups_are_listed_and_described_as_librdkafka_gives_them(
    live: tuple[KafkaBroker, str, list[str]],
) -> None:
    cluster, joined, idle = live
    groups = [joined, *idle]
    direct = DirectGroups(parse_bootstrap(cluster.bootstrap))
    try:
        deadline = time.monotonic() + TIMEOUT
        listing, why = direct.listing((), deadline)  # the brokers asked of the bootstrap
        direct.read(groups, deadline)  # (finds their coordinators)
        found, left = direct.describe(groups, deadline, BATCH)
    finally:
        direct.close()
    states, descriptions = librdkafka_groups(cluster.bootstrap, groups)
    assert (why, left) == ("", {})
    assert listing is not None
    assert {g: listing[g] for g in groups} == {g: (states[g], True) for g in groups}
    assert found == descriptions
    assert found[joined] == GroupInfo(state="Stable", members=1)
    assert found[idle[0]] == GroupInfo(state="Empty", members=0)


def spy(admin: KafkaAdmin, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """What *admin* asks: the groups described over the protocol (``direct``) and
    through librdkafka (``librdkafka``), one list a call, and librdkafka's listings."""
    asked: dict[str, list[Any]] = {"direct": [], "librdkafka": [], "listings": []}
    assert admin.group_direct is not None
    describe, request = admin.group_direct.describe, admin._request_groups
    listing = admin._client.list_consumer_groups

    def described(groups: list[str], deadline: float, batch: int) -> Any:
        found, left = describe(groups, deadline, batch)
        asked["direct"].append(sorted(found))
        return found, left

    def requested(keys: list[Any], timeout: float) -> list[Batch]:
        asked["librdkafka"].append(sorted(g for kind, g in keys if kind == "describe"))
        return request(keys, timeout)

    def listed(**kwargs: Any) -> Any:
        asked["listings"].append(kwargs)
        return listing(**kwargs)

    monkeypatch.setattr(admin.group_direct, "describe", described)
    monkeypatch.setattr(admin, "_request_groups", requested)
    monkeypatch.setattr(admin._client, "list_consumer_groups", listed)
    return asked


@pytest.mark.slow
@pytest.mark.parametrize("live", ["kafka"], indirect=True)
def test_the_collector_reads_the_same_groups_either_way(
    live: tuple[KafkaBroker, str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster, joined, idle = live
    admin = KafkaAdmin(cluster.bootstrap, describe_batch=BATCH)
    asked = spy(admin, monkeypatch)
    try:
        direct, _ = admin.groups(time.monotonic() + TIMEOUT)
        assert asked["listings"] == []  # listed over the protocol
        assert asked["librdkafka"] == []  # and every group described over it
        assert {joined, *idle} <= set(asked["direct"][0])
        # a broker answers the listing with an error (a coordinator still loading)
        monkeypatch.setattr(groups_module, "decode_list_groups", lambda *_: (14, []))
        relisted, _ = admin.groups(time.monotonic() + TIMEOUT)
        assert len(asked["listings"]) == 1  # librdkafka listed them
        assert {joined, *idle} <= set(asked["direct"][1])  # and they were described directly
        assert admin.group_direct is not None
        admin.group_direct.close()
        admin.group_direct = None
        librdkafka, _ = admin.groups(time.monotonic() + TIMEOUT)
    finally:
        admin.close()
    assert len(asked["listings"]) == 2
    assert {joined, *idle} <= set(asked["librdkafka"][0])
    assert direct == relisted == librdkafka
    assert direct[joined] == GroupInfo(state="Stable", members=1)


@pytest.mark.slow
@pytest.mark.parametrize("live", ["kafka"], indirect=True)
def test_a_group_answering_an_error_or_of_the_new_protocol_is_described_by_librdkafka(
    live: tuple[KafkaBroker, str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One group's description answers NOT_COORDINATOR, another is listed as a group of
    the new consumer protocol (KIP-848: DescribeGroups would call it ``Dead``): both
    are described through librdkafka, the rest over the protocol, all as before."""
    cluster, joined, idle = live
    failing, newer = idle[0], idle[1]

    def describe(body: bytearray, correlation: int) -> dict[str, Described]:
        answer = decode_describe_groups(body, correlation)
        if failing in answer:
            answer[failing] = answer[failing]._replace(error=16)
        return answer

    def listing(body: bytearray, correlation: int, version: int) -> Any:
        error, groups = decode_list_groups(body, correlation, version)
        return error, [g._replace(type="consumer") if g.group == newer else g for g in groups]

    monkeypatch.setattr(groups_module, "decode_describe_groups", describe)
    monkeypatch.setattr(groups_module, "decode_list_groups", listing)
    admin = KafkaAdmin(cluster.bootstrap, describe_batch=BATCH)
    asked = spy(admin, monkeypatch)
    try:
        infos, _ = admin.groups(time.monotonic() + TIMEOUT)
    finally:
        admin.close()
    assert asked["listings"] == []
    assert asked["librdkafka"] == [sorted([failing, newer])]
    assert failing not in asked["direct"][0]
    assert newer not in asked["direct"][0]
    assert {joined, *idle[2:]} <= set(asked["direct"][0])
    _states, descriptions = librdkafka_groups(cluster.bootstrap, [joined, *idle])
    assert {g: infos[g] for g in descriptions} == descriptions


@pytest.mark.parametrize("mode", ["close", "protocol", "lacking"])
def test_a_broker_that_cannot_list_leaves_the_listing_to_librdkafka_with_why(mode: str) -> None:
    with FakeKafka(mode) as fake:
        direct = DirectGroups([("127.0.0.1", free_port())])
        try:
            listing, why = direct.listing([("127.0.0.1", fake.port)], time.monotonic() + TIMEOUT)
            unknown, _ = direct.listing([], time.monotonic() + TIMEOUT)  # no bootstrap answers
        finally:
            direct.close()
    assert listing is None
    assert unknown is None
    # a "lacking" one offers ApiVersions and Metadata only
    assert reason_of_mode(mode, f"no version 4-5 of API {LIST_GROUPS}") in why


def test_a_group_whose_coordinator_is_not_known_is_left_to_librdkafka() -> None:
    direct = DirectGroups([("127.0.0.1", free_port())])
    found, left = direct.describe(["g"], time.monotonic() + TIMEOUT, BATCH)
    assert (found, left) == ({}, {"g": "its coordinator is not known"})


def described_each_tick(
    collector: KafkaCollector, monkeypatch: pytest.MonkeyPatch
) -> list[list[str]]:
    """The groups the collector describes, on either path: one list a tick (the
    caller appends it)."""
    ticks: list[list[str]] = []
    asked = spy(collector.admin, monkeypatch)
    real = collector.collect

    def collect(timeout: float) -> Any:
        before = {kind: len(calls) for kind, calls in asked.items()}
        try:
            return real(timeout)
        finally:
            calls = [c for kind in ("direct", "librdkafka") for c in asked[kind][before[kind] :]]
            ticks.append(sorted(g for call in calls for g in call))

    monkeypatch.setattr(collector, "collect", collect)
    return ticks


def test_an_unchanged_group_is_described_once_in_describe_rounds_ticks(
    kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, group = unique("quiet"), unique("idle")
    create_topic(kafka.bootstrap, name, 1)
    produce(kafka.bootstrap, name, {0: 4})
    commit(kafka.bootstrap, group, name, {0: 1})
    collector = KafkaCollector(kafka.bootstrap)
    ticks = described_each_tick(collector, monkeypatch)
    try:
        first = collector.collect(TIMEOUT)
        for _ in range(DESCRIBE_ROUNDS):
            snapshot = collector.collect(TIMEOUT)
            assert snapshot.groups[group] == first.groups[group]  # still shown, same
            (lag,) = [c for c in snapshot.metrics.consumer_lags if c.group_id == group]
            assert lag.total_lag == 3  # its offsets read every tick
    finally:
        collector.close()
    described = [tick.count(group) for tick in ticks]
    assert described[0] == 1  # new: described at once
    assert sum(described[1:]) == 1  # once in DESCRIBE_ROUNDS ticks


def test_a_turn_of_group_descriptions_waits_a_metadata_tick_once(
    kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The metadata read every tick: the unchanged groups' turns are described every
    other tick (a turn never waits two ticks in a row), each group once in a cycle."""
    name, prefix = unique("turns"), unique("turn")
    groups = [f"{prefix}-{k}" for k in range(DESCRIBE_ROUNDS)]  # consecutive: one a turn
    create_topic(kafka.bootstrap, name, 1)
    produce(kafka.bootstrap, name, {0: 2})
    for group in groups:
        commit(kafka.bootstrap, group, name, {0: 1})
    monkeypatch.setattr(collector_module, "METADATA_REFRESH", 0.0)
    collector = KafkaCollector(kafka.bootstrap)
    ticks = described_each_tick(collector, monkeypatch)
    try:
        collector.collect(TIMEOUT)
        for _ in range(2 * DESCRIBE_ROUNDS):
            snapshot = collector.collect(TIMEOUT)
            assert {g: snapshot.groups[g].state for g in groups} == dict.fromkeys(groups, "Empty")
    finally:
        collector.close()
    ours = [[g for g in tick if g in groups] for tick in ticks]
    assert ours[0] == groups  # new: described at once
    turns = ours[1:]
    assert [len(turn) for turn in turns] == [1, 0] * DESCRIBE_ROUNDS  # the first tick waited
    assert sorted(g for turn in turns for g in turn) == groups  # each once


@pytest.mark.parametrize("path", ["direct", "librdkafka"])
def test_a_group_the_listing_leaves_out_is_kept_while_its_description_says_it_lives(
    kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    name, group = unique("listed"), unique("hidden")
    create_topic(kafka.bootstrap, name, 1)
    produce(kafka.bootstrap, name, {0: 5})
    commit(kafka.bootstrap, group, name, {0: 2})
    collector = KafkaCollector(kafka.bootstrap)
    admin = collector.admin
    try:
        assert group in collector.collect(TIMEOUT).groups
        if path == "librdkafka":
            assert admin.group_direct is not None
            admin.group_direct.close()
            admin.group_direct = None
        real = admin._list_groups
        monkeypatch.setattr(
            admin,
            "_list_groups",
            lambda deadline: {g: v for g, v in real(deadline).items() if g != group},
        )
        snapshot = collector.collect(TIMEOUT)
    finally:
        collector.close()
    assert group in snapshot.groups  # described: it lives, its lag is still shown
    (lag,) = [c for c in snapshot.metrics.consumer_lags if c.group_id == group]
    assert lag.total_lag == 3


@pytest.mark.slow
def test_a_group_of_the_new_consumer_protocol_is_described_by_librdkafka(
    kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real member of the new consumer protocol (KIP-848, ``group.protocol=consumer``,
    4.x): listed as such and described by librdkafka (ConsumerGroupDescribe), which
    DescribeGroups would call ``Dead``."""
    topic, group = unique("kip848"), unique("newer")
    create_topic(kafka.bootstrap, topic, 2)
    settings = {"bootstrap.servers": kafka.bootstrap, "group.id": group, "log_level": 0}
    consumer = Consumer({**settings, "group.protocol": "consumer"})
    consumer.subscribe([topic])
    stop = threading.Event()
    poller = threading.Thread(target=lambda: [consumer.poll(0.1) for _ in iter(stop.is_set, True)])
    poller.start()
    admin = KafkaAdmin(kafka.bootstrap, describe_batch=BATCH)
    asked = spy(admin, monkeypatch)
    try:
        wait = time.monotonic() + 60
        while time.monotonic() < wait:
            infos, _ = admin.groups(time.monotonic() + TIMEOUT)
            if infos.get(group) == GroupInfo(state="Stable", members=1):
                break
            time.sleep(0.2)
        assert admin.group_direct is not None
        listing, _why = admin.group_direct.listing((), time.monotonic() + TIMEOUT)
    finally:
        stop.set()
        poller.join()
        consumer.close()
        admin.close()
    assert infos[group] == GroupInfo(state="Stable", members=1)
    assert listing is not None
    assert listing[group] == ("Stable", False)  # not described over the protocol
    assert all(group not in call for call in asked["direct"])
    assert any(group in call for call in asked["librdkafka"])
