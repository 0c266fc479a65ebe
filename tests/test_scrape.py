"""One scrape over real HTTP: deadline, body limit, gzip, and the errors a user reads."""

from __future__ import annotations

import gzip
import socket

import httpx
import pytest
import trio

from exporter import MetricsServer, Reply, fixture, start_exporter
from takhin_ws import Settings
from takhin_ws.sources.prometheus.scrape import ACCEPT, DEFAULT_MAX_BODY_BYTES, ScrapeError, Scraper


@pytest.fixture
async def exporter(nursery: trio.Nursery) -> MetricsServer:
    return await start_exporter(nursery)


def test_the_default_limit_is_the_setting_and_fits_a_3000_topic_broker() -> None:
    assert DEFAULT_MAX_BODY_BYTES == Settings().scrape_max_bytes == 64 * 1024 * 1024
    assert Scraper("http://broker:9090/metrics", timeout=1.0).max_body_bytes == 64 * 1024 * 1024


async def test_a_scrape_asks_for_text_and_gzip(exporter: MetricsServer) -> None:
    exporter.serve(fixture("full_1.prom"))
    scraper = Scraper(exporter.url, timeout=5.0)
    try:
        body = await scraper.fetch()
    finally:
        await scraper.aclose()
    assert not body.gzipped
    assert body.content() == fixture("full_1.prom")
    assert body.content(prefix=b"\n") == b"\n" + fixture("full_1.prom")
    assert exporter.headers[0]["accept"] == ACCEPT
    assert exporter.headers[0]["accept-encoding"] == "gzip"


@pytest.mark.parametrize("content_length", [True, False])
async def test_a_gzip_answer_is_inflated(exporter: MetricsServer, content_length: bool) -> None:
    body = fixture("full_2.prom") * 50
    exporter.serve(body, gzip=True, content_length=content_length)
    scraper = Scraper(exporter.url, timeout=5.0)
    try:
        received = await scraper.fetch()
    finally:
        await scraper.aclose()
    assert received.gzipped
    assert sum(map(len, received.chunks)) == len(gzip.compress(body))  # as sent
    assert received.content() == body
    assert received.content(prefix=b"\n") == b"\n" + body


async def test_the_limit_counts_inflated_bytes(exporter: MetricsServer) -> None:
    # 10 MB of zeros compress to ~10 KB: the limit applies to what they inflate to
    bomb = b"0" * 10_000_000
    exporter.serve(bomb, gzip=True)
    scraper = Scraper(exporter.url, timeout=5.0, max_body_bytes=1_000_000)
    try:
        body = await scraper.fetch()  # 10 KB arrive...
    finally:
        await scraper.aclose()
    with pytest.raises(ScrapeError, match="more than 1000000 bytes once inflated") as info:
        body.content()  # ...and are inflated no further than the limit
    assert "raise --scrape-max-bytes" in str(info.value)
    assert len(gzip.compress(bomb)) < 1_000_000
    exact = Scraper(exporter.url, timeout=5.0, max_body_bytes=len(bomb))
    try:
        assert (await exact.fetch()).content() == bomb  # up to the limit is fine
    finally:
        await exact.aclose()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not gzip at all", "answered a gzip body that does not inflate"),
        (gzip.compress(b"takhin_connections_active 3\n")[:-12], "gzip body that ends too soon"),
    ],
)
async def test_a_broken_gzip_body_is_a_clear_error(
    exporter: MetricsServer, body: bytes, message: str
) -> None:
    exporter.reply = lambda: Reply(body=body, encoding="gzip")
    scraper = Scraper(exporter.url, timeout=5.0)
    try:
        received = await scraper.fetch()
    finally:
        await scraper.aclose()
    with pytest.raises(ScrapeError, match=message):
        received.content()


async def test_another_encoding_is_refused(exporter: MetricsServer) -> None:
    exporter.reply = lambda: Reply(body=b"whatever", encoding="br")
    scraper = Scraper(exporter.url, timeout=5.0)
    try:
        with pytest.raises(ScrapeError, match=r"answered Content-Encoding: br \(it was asked"):
            await scraper.fetch()
    finally:
        await scraper.aclose()


async def test_a_non_200_answer_is_a_clear_error(exporter: MetricsServer) -> None:
    exporter.serve(b"broker is starting, try again\n", status=503)
    scraper = Scraper(exporter.url, timeout=5.0)
    try:
        with pytest.raises(
            ScrapeError,
            match=r"^scrape of http://\S+ answered HTTP 503 Service Unavailable: broker is",
        ):
            await scraper.fetch()
    finally:
        await scraper.aclose()


async def test_a_slow_answer_times_out_naming_the_setting(exporter: MetricsServer) -> None:
    exporter.serve(fixture("full_1.prom"), delay=30.0)
    scraper = Scraper(exporter.url, timeout=0.25)
    try:
        with pytest.raises(ScrapeError, match=r"timed out after 0\.25 s") as info:
            await scraper.fetch()
    finally:
        await scraper.aclose()
    assert "--collect-timeout" in str(info.value)
    assert "--interval" in str(info.value)


@pytest.mark.parametrize(
    ("content_length", "message"),
    [(True, "10000000 bytes announced"), (False, "more than 8388608 bytes sent")],
)
async def test_a_10_mb_body_is_refused_naming_the_setting(
    exporter: MetricsServer, content_length: bool, message: str
) -> None:
    body = b"# padding padding padding padding padding padding padding padding\n"
    body = (body * (10_000_000 // len(body) + 1))[:10_000_000]
    exporter.serve(body, content_length=content_length)
    scraper = Scraper(exporter.url, timeout=5.0, max_body_bytes=8 * 1024 * 1024)
    try:
        with pytest.raises(ScrapeError, match="body too large") as info:
            await scraper.fetch()
    finally:
        await scraper.aclose()
    assert message in str(info.value)
    assert "max_body_bytes=8388608: raise --scrape-max-bytes" in str(info.value)


async def test_a_large_body_is_not_read_to_its_end(exporter: MetricsServer) -> None:
    exporter.serve(b"#" * 64 * 1024 * 1024, content_length=False)  # far beyond socket buffers
    scraper = Scraper(exporter.url, timeout=10.0, max_body_bytes=100_000)
    try:
        with pytest.raises(ScrapeError, match="more than 100000 bytes sent"):
            await scraper.fetch()
    finally:
        await scraper.aclose()
    with trio.fail_after(10):
        while not exporter.outcomes:
            await trio.sleep(0.01)
    assert exporter.outcomes == ["hung up"]


async def test_an_unreachable_broker_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    scraper = Scraper(f"http://127.0.0.1:{port}/metrics", timeout=2.0)
    try:
        with pytest.raises(ScrapeError, match=rf"scrape of http://127.0.0.1:{port}/metrics failed"):
            await scraper.fetch()
    finally:
        await scraper.aclose()


@pytest.mark.parametrize(("limit", "fits"), [(10_000, True), (9_999, False)])
async def test_an_answer_already_in_memory(limit: int, fits: bool) -> None:
    # httpx.MockTransport answers with the whole body read (and inflated) already
    body = b"0" * 10_000
    answer = gzip.compress(body)  # 45 bytes

    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=answer, headers={"Content-Encoding": "gzip"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(reply)) as client:
        scraper = Scraper(
            "http://broker.test/metrics", timeout=5.0, max_body_bytes=limit, client=client
        )
        if not fits:
            with pytest.raises(ScrapeError, match="more than 9999 bytes sent"):
                await scraper.fetch()
            return
        received = await scraper.fetch()
    assert not received.gzipped
    assert received.content() == body


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="http"):
        Scraper("ftp://broker/metrics", timeout=1.0)
    with pytest.raises(ValueError, match="http"):
        Scraper("http:///metrics", timeout=1.0)
    with pytest.raises(ValueError, match="timeout must be positive, got 0"):
        Scraper("http://broker:9090/metrics", timeout=0)
    with pytest.raises(ValueError, match="max_body_bytes must be positive, got 0"):
        Scraper("http://broker:9090/metrics", timeout=1.0, max_body_bytes=0)


async def test_a_shared_client_stays_open(exporter: MetricsServer) -> None:
    exporter.serve(fixture("full_1.prom"))
    async with httpx.AsyncClient() as client:
        scraper = Scraper(exporter.url, timeout=5.0, client=client)
        await scraper.fetch()
        await scraper.aclose()
        assert not client.is_closed
        response = await client.get(exporter.url)
        assert response.status_code == 200
    own = Scraper(exporter.url, timeout=5.0)
    await own.aclose()
    assert own._client.is_closed
