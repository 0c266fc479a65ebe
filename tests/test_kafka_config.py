"""The kafka source's settings and secrets: a SASL login and a refused one (a real
broker), refused client properties, masked reprs, a source not entered, and the source
``source_for`` builds."""

from __future__ import annotations

import logging

import attrs
import pytest

from kafka_broker import SASL_PASSWORD, SASL_USER, KafkaBroker
from takhin_ws import Settings
from takhin_ws.sources import SCRAPE_SHARE, close_source, source_for, source_kind
from takhin_ws.sources.kafka.source import KafkaSource, KafkaSourceError

pytestmark = pytest.mark.slow


async def test_sasl_login_and_a_refused_one_never_show_the_password(
    kafka: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sasl = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", "takhin-ws"),
        ("sasl.username", SASL_USER),
    ]
    good = KafkaSource(
        kafka.sasl_bootstrap, config=[*sasl, ("sasl.password", SASL_PASSWORD)], timeout=20.0
    )
    async with good:
        assert (await good.collect()).metrics.cluster_health.total_topics >= 0
    wrong = "not-the-password-4711"
    bad = KafkaSource(kafka.sasl_bootstrap, config=[*sasl, ("sasl.password", wrong)], timeout=3.0)
    async with bad:
        with pytest.raises(KafkaSourceError) as caught:
            await bad.collect()
    assert "authentication" in str(caught.value).lower()
    for text in (str(caught.value), repr(bad), repr(good), caplog.text):
        assert wrong not in text
        assert SASL_PASSWORD not in text


async def test_a_refused_client_property_is_a_value_error_that_hides_secrets() -> None:
    secret = "s3cr3t-value"
    source = KafkaSource(
        "127.0.0.1:9", config=[("sasl.password", secret), ("no.such.property", "1")]
    )
    with pytest.raises(ValueError, match=r"no\.such\.property") as caught:
        async with source:
            pytest.fail("a refused property was accepted")
    assert secret not in str(caught.value)
    with pytest.raises(ValueError, match="bootstrap"):
        KafkaSource(" ")


async def test_repr_masks_secret_values_only() -> None:
    config = [
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", "takhin-ws"),
        ("sasl.password", "pw-1"),
        ("ssl.key.password", "pw-2"),
        ("sasl.oauthbearer.client.secret", "pw-3"),
    ]
    text = repr(KafkaSource("127.0.0.1:9", config=config))
    assert "SASL_SSL" in text
    for secret in ("pw-1", "pw-2", "pw-3"):
        assert secret not in text


async def test_a_source_not_entered_says_so() -> None:
    source = KafkaSource("127.0.0.1:9")
    with pytest.raises(KafkaSourceError, match="async with"):
        await source.collect()
    await source.aclose()
    with pytest.raises(KafkaSourceError, match="closed"):
        await source.collect()


async def test_source_for_builds_the_kafka_source_and_its_merge() -> None:
    settings = Settings(
        source="kafka",
        kafka_bootstrap="127.0.0.1:9",
        kafka_config=(("client.id", "takhin-ws-test"),),
        show_internal_topics=True,
        interval=2.0,
    )
    plain = source_for(settings)
    assert isinstance(plain, KafkaSource)
    assert plain.prometheus is None
    assert plain.show_internal_topics
    assert plain.timeout == pytest.approx(2.0 * SCRAPE_SHARE)  # inside the producer's deadline
    assert source_kind(plain) == "kafka"  # what welcome and /readyz say
    await close_source(plain)
    merged = source_for(attrs.evolve(settings, prometheus_url="http://broker.test/metrics"))
    assert isinstance(merged, KafkaSource)
    assert merged.prometheus is not None
    assert merged.prometheus.timeout < merged.timeout  # a slow scrape never fails the tick
    assert source_kind(merged) == "kafka+prometheus"
    await close_source(merged)
