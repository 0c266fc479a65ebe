"""A broker that does not speak the Kafka protocol as librdkafka does is said to be
incompatible, with librdkafka's own words, not "down" (``fake_kafka.py`` plays three
such brokers over real sockets; the Takhin broker behaves as the first)."""

from __future__ import annotations

import logging

import httpx
import pytest
import trio

from fake_kafka import FakeKafka
from kafka_broker import free_port
from takhin_ws import MetricsSourceIncompatibleError, Settings, open_server
from takhin_ws.sources.kafka.collector import KafkaCollector
from takhin_ws.sources.kafka.errors import KafkaSourceError, is_incompatible

#: A tick's time against the fakes: librdkafka retries a broken handshake within it.
TIMEOUT = 3.0
#: Bound on waiting for /readyz to say it.
WAIT = 60.0


def tick_error(bootstrap: str) -> KafkaSourceError:
    collector = KafkaCollector(bootstrap)
    try:
        with pytest.raises(KafkaSourceError) as caught:
            collector.collect(TIMEOUT)
    finally:
        collector.close()
    return caught.value


def test_a_broker_that_closes_every_handshake_is_incompatible_not_down() -> None:
    with FakeKafka("close") as fake:
        error = tick_error(fake.bootstrap)
    assert is_incompatible(error)
    assert isinstance(error, MetricsSourceIncompatibleError)
    message = str(error)
    assert message.startswith(f"kafka {fake.bootstrap}: incompatible broker: it closes the ")
    assert "during the protocol handshake (ApiVersions)" in message
    assert "in state APIVERSION_QUERY" in message  # librdkafka's own words
    assert "security.protocol" in message


def test_a_broker_whose_handshake_answer_cannot_be_read_is_incompatible() -> None:
    with FakeKafka("protocol") as fake:
        error = tick_error(fake.bootstrap)
    assert is_incompatible(error)
    assert "answers the protocol handshake (ApiVersions) with what cannot be read" in str(error)
    assert "Read underflow" in str(error)


def test_a_broker_that_lacks_a_request_is_incompatible_and_says_which() -> None:
    with FakeKafka("lacking") as fake:
        error = tick_error(fake.bootstrap)
    assert is_incompatible(error)
    message = str(error)
    assert "it does not offer a request this source needs" in message
    assert "group listing failed" in message
    assert "not supported by broker" in message


def test_a_port_where_nothing_listens_is_down_not_incompatible() -> None:
    error = tick_error(f"127.0.0.1:{free_port()}")
    assert not is_incompatible(error)
    assert "incompatible" not in str(error)
    assert "refused" in str(error).lower()


async def test_readyz_says_the_source_is_incompatible(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="takhin_ws.metrics")
    with FakeKafka("close") as fake:
        settings = Settings(
            port=0, interval=TIMEOUT, source="kafka", kafka_bootstrap=fake.bootstrap
        )
        async with open_server(settings) as server, httpx.AsyncClient() as http:
            with trio.fail_after(WAIT):
                while True:
                    response = await http.get(server.url + "/readyz")
                    body = response.json()
                    if any("incompatible" in reason for reason in body["reasons"]):
                        break
                    await trio.sleep(0.2)
    assert response.status_code == 503
    (reason,) = [r for r in body["reasons"] if "incompatible" in r]
    assert reason.startswith("metrics source incompatible")
    assert "incompatible broker" in body["metrics"]["error"]
    (warning,) = [r for r in caplog.records if r.getMessage().startswith("metrics source failed")]
    assert "incompatible broker: it closes the connection" in warning.getMessage()
