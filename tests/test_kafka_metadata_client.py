"""How the ``kafka`` source's client reads the metadata (``sources/kafka/admin/client.py``
with ``metadata.py``): over the protocol on a plaintext listener, librdkafka's
``list_topics`` with SASL and on any failure, the same semantics either way (a gone
topic left out, a leaderless partition listed, a topic without partitions fails the
call), and the same answer from the real broker either way."""

from __future__ import annotations

import time
from collections.abc import Iterable

import pytest

from kafka_broker import SASL_PASSWORD, SASL_USER, KafkaBroker, create_topic, unique
from takhin_ws.sources.kafka.admin import client as client_module
from takhin_ws.sources.kafka.admin.client import KafkaAdmin
from takhin_ws.sources.kafka.admin.listoffsets import DirectOffsets
from takhin_ws.sources.kafka.admin.metadata import DEFAULT_PORT, NO_LEADER, Cluster
from takhin_ws.sources.kafka.errors import KafkaSourceError


def fake_read(
    monkeypatch: pytest.MonkeyPatch, cluster: Cluster | None
) -> list[list[tuple[str, int]]]:
    """The client's Metadata over the protocol answers *cluster* (``None``: nobody
    answered); returns the addresses asked, a list per call."""
    asked: list[list[tuple[str, int]]] = []

    def read(
        direct: DirectOffsets, addresses: Iterable[tuple[str, int]], deadline: float
    ) -> tuple[Cluster | None, dict[tuple[str, int], str]]:
        asked.append(list(addresses))
        return cluster, {} if cluster is not None else {("127.0.0.1", 1): "refused"}

    monkeypatch.setattr(client_module, "read_metadata", read)
    return asked


def no_librdkafka(monkeypatch: pytest.MonkeyPatch, admin: KafkaAdmin) -> list[int]:
    """librdkafka's metadata answers *LIBRDKAFKA*; returns one item per call."""
    calls: list[int] = []

    def librdkafka(deadline: float) -> Cluster:
        calls.append(1)
        return LIBRDKAFKA

    monkeypatch.setattr(admin, "_metadata_librdkafka", librdkafka)
    return calls


LIBRDKAFKA = Cluster({7: ("librdkafka", 1)}, {"from-librdkafka": {0: 7}}, {})


def test_leaderless_partitions_are_listed_and_gone_topics_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As with librdkafka: a partition without a leader is a partition (its offsets go
    to librdkafka, which asks again); a topic deleted since (UNKNOWN_TOPIC_OR_PART)
    is left out; each partition's leader and the brokers are remembered."""
    cluster = Cluster(
        brokers={1: ("b1", 9092), 2: ("b2", 9092)},
        leaders={"orders": {2: 1, 0: NO_LEADER, 1: 2}, "deleted": {}, "electing": {0: -1}},
        errors={"deleted": 3, "electing": 5},
    )
    asked = fake_read(monkeypatch, cluster)
    admin = KafkaAdmin("k1:9093,k2", describe_batch=10)
    try:
        calls = no_librdkafka(monkeypatch, admin)
        assert admin.metadata(time.monotonic() + 5) == {"orders": [0, 1, 2], "electing": [0]}
        assert calls == []
        assert admin._leaders == {"orders": {2: 1, 0: NO_LEADER, 1: 2}, "electing": {0: -1}}
        assert admin._brokers == cluster.brokers
        admin.metadata(time.monotonic() + 5)  # the brokers it knows first, then the bootstrap
    finally:
        admin.close()
    assert asked == [
        [("k1", 9093), ("k2", DEFAULT_PORT)],
        [("b1", 9092), ("b2", 9092), ("k1", 9093), ("k2", DEFAULT_PORT)],
    ]


@pytest.mark.parametrize(
    "cluster",
    [None, Cluster({1: ("b1", 1)}, {"ok": {0: 1}, "unauthorized": {}}, {"unauthorized": 29})],
)
def test_librdkafka_is_asked_when_the_protocol_path_fails_or_a_topic_would_fail(
    monkeypatch: pytest.MonkeyPatch, cluster: Cluster | None
) -> None:
    """Nobody answered, or a topic lists no partition for another reason than being
    gone: librdkafka's answer is the one used (and its error would name the cause)."""
    fake_read(monkeypatch, cluster)
    admin = KafkaAdmin("k1:9093", describe_batch=10)
    try:
        calls = no_librdkafka(monkeypatch, admin)
        assert admin.metadata(time.monotonic() + 5) == {"from-librdkafka": [0]}
        assert calls == [1]
        assert admin._brokers == LIBRDKAFKA.brokers
    finally:
        admin.close()


def test_a_topic_without_partitions_fails_the_call_naming_its_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_read(monkeypatch, None)
    admin = KafkaAdmin("k1:9093", describe_batch=10)
    try:
        monkeypatch.setattr(
            admin,
            "_metadata_librdkafka",
            lambda deadline: Cluster({}, {"locked": {}}, {"locked": 29}),
        )
        with pytest.raises(KafkaSourceError, match=r"metadata of topic locked failed: .*uthoriz"):
            admin.metadata(time.monotonic() + 5)
    finally:
        admin.close()


def test_no_protocol_path_over_sasl(kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS and SASL stay with librdkafka: the metadata comes through it."""
    asked = fake_read(monkeypatch, None)
    config = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", SASL_USER),
        ("sasl.password", SASL_PASSWORD),
    ]
    topic = unique("metadata")
    create_topic(kafka.bootstrap, topic, 2)
    admin = KafkaAdmin(kafka.sasl_bootstrap, config, describe_batch=10)
    try:
        assert admin.direct is None
        assert admin.metadata(time.monotonic() + 10)[topic] == [0, 1]
    finally:
        admin.close()
    assert asked == []


def test_the_client_reads_over_the_protocol_what_librdkafka_reads(kafka: KafkaBroker) -> None:
    """The same partitions, leaders and brokers remembered through either path."""
    create_topic(kafka.bootstrap, unique("metadata"), 4)
    direct = KafkaAdmin(kafka.bootstrap, describe_batch=10)
    plain = KafkaAdmin(kafka.bootstrap, describe_batch=10)
    assert plain.direct is not None
    plain.direct.close()
    plain.direct = None
    try:
        for _ in range(3):  # (a topic another test deletes may be half gone: again)
            got = [admin.metadata(time.monotonic() + 10) for admin in (direct, plain)]
            if got[0] == got[1] and direct._leaders == plain._leaders:
                break
    finally:
        direct.close()
        plain.close()
    assert got[0] == got[1]
    assert direct._leaders == plain._leaders
    assert direct._brokers == plain._brokers
