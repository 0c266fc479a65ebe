"""One HTTP scrape of a Prometheus endpoint, bounded in time and size (httpx, on Trio).

:class:`Scraper` asks for the text format with ``Accept-Encoding: gzip`` and reads the
body as it comes; :meth:`Body.content` inflates it (in the source's worker thread, off
the event loop). At most ``max_body_bytes`` are read, and inflated: a 3,000-topic
broker's ~27 MiB fits the 64 MiB default, and a runaway or hostile answer (a gzip bomb
included) never fills memory. Every failure is a :class:`ScrapeError`
whose message says what happened, where, and which setting to raise when a limit was
hit.
"""

from __future__ import annotations

import contextlib
import re
import zlib
from collections.abc import AsyncIterator
from typing import Final

import httpx
import trio

from ...config.settings import DEFAULT_SCRAPE_MAX_BYTES
from ...core.metrics.snapshot import MetricsSourceError

__all__ = [
    "ACCEPT",
    "DEFAULT_MAX_BODY_BYTES",
    "Body",
    "ScrapeError",
    "Scraper",
    "mask_credentials",
]

#: Largest body a scrape reads by default (``Settings.scrape_max_bytes``).
DEFAULT_MAX_BODY_BYTES: Final = DEFAULT_SCRAPE_MAX_BYTES
ACCEPT: Final = "text/plain;version=0.0.4;q=1.0, */*;q=0.1"
#: zlib's window bits for a gzip stream (header and trailer checked).
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
#: Bytes of a non-200 answer quoted in the error.
_SNIPPET: Final = 200
#: The user-info part of a URL (``user:secret@``), which may carry a password.
_USERINFO: Final = re.compile(r"(?<=://)[^/@\s]+@")


def mask_credentials(text: str) -> str:
    """*text* with the user-info of every URL in it (``//user:secret@``) as ``***@``."""
    return _USERINFO.sub("***@", text)


class ScrapeError(MetricsSourceError):
    """A scrape failed: unreachable, non-200, too large, too slow, or not parseable."""


class Scraper:
    """GET *url* within *timeout* seconds (connect to last byte) and with a body limit
    (see the module docstring).

    Pass *client* to share an ``httpx.AsyncClient`` (it is then not closed by
    :meth:`aclose`).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"prometheus URL must be http(s)://HOST[:PORT]/PATH, got {url!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be positive, got {max_body_bytes!r}")
        self.url = url
        #: the URL as messages show it (credentials masked)
        self.shown = mask_credentials(url)
        self.timeout = float(timeout)
        self.max_body_bytes = max_body_bytes
        self._owns_client = client is None
        # the deadline covers the whole exchange; httpx's own timeouts stay out of its way
        self._client = client if client is not None else httpx.AsyncClient(timeout=None)

    async def aclose(self) -> None:
        """Close the HTTP client if this scraper created it."""
        if self._owns_client:
            await self._client.aclose()

    async def fetch(self) -> Body:
        """The body of one scrape, as received (see :class:`Body` to read it)."""
        try:
            with trio.fail_after(self.timeout):
                return await self._fetch()
        except trio.TooSlowError:
            raise ScrapeError(
                f"scrape of {self.shown} timed out after {self.timeout:g} s (the scrape may use "
                "0.9 x --collect-timeout, which defaults to --interval: raise one of them)"
            ) from None
        except httpx.HTTPError as exc:
            raise ScrapeError(
                f"scrape of {self.shown} failed: {type(exc).__name__}: {exc or 'no detail'}"
            ) from None

    async def _fetch(self) -> Body:
        headers = {"Accept": ACCEPT, "Accept-Encoding": "gzip"}
        async with self._client.stream(
            "GET", self.url, headers=headers, follow_redirects=True
        ) as response:
            if response.status_code != 200:
                snippet = b"".join(await self._read(response, _SNIPPET, response.aiter_bytes()))
                text = " ".join(snippet[:_SNIPPET].decode("utf-8", "replace").split())
                status = response.status_code
                reason = response.reason_phrase or httpx.codes.get_reason_phrase(status)
                raise ScrapeError(
                    f"scrape of {self.shown} answered HTTP {status} {reason}".rstrip()
                    + (f": {text}" if text else "")
                )
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("gzip", "identity"):
                await self._abandon(response, response.aiter_raw())
                raise ScrapeError(
                    f"scrape of {self.shown} answered Content-Encoding: {encoding} "
                    "(it was asked for gzip or none)"
                )
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                await self._abandon(response, response.aiter_raw())
                raise ScrapeError(self._too_large(f"{int(declared)} bytes announced"))
            if response.is_stream_consumed:  # an answer built in memory (MockTransport)
                chunks, encoding = [response.content], "identity"  # decoded by httpx
            else:  # raw: a gzip body is inflated by Body.content(), off the event loop
                raw = response.aiter_raw()
                chunks = await self._read(response, self.max_body_bytes + 1, raw)
            if sum(map(len, chunks)) > self.max_body_bytes:
                raise ScrapeError(self._too_large(f"more than {self.max_body_bytes} bytes sent"))
            return Body(self, chunks, gzipped=encoding == "gzip")

    @staticmethod
    async def _read(
        response: httpx.Response, limit: int, body: AsyncIterator[bytes]
    ) -> list[bytes]:
        """Up to about *limit* bytes of *body*; the rest is not read."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in body:
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                await Scraper._abandon(response, body)
                break
        return chunks

    @staticmethod
    async def _abandon(response: httpx.Response, body: AsyncIterator[bytes]) -> None:
        """Stop reading a body half-way: close the connection, then run the body's
        iterator to its end (it fails at once on the closed connection).

        Simply leaving the loop would leave httpx's and httpcore's chain of async
        generators suspended, for Trio to finalize later with a ResourceWarning.
        """
        await response.aclose()
        with contextlib.suppress(Exception):
            async for _ in body:
                pass

    def _too_large(self, what: str) -> str:
        return (
            f"scrape of {self.shown} refused: body too large ({what}; the limit is "
            f"max_body_bytes={self.max_body_bytes}: raise --scrape-max-bytes)"
        )


class Body:
    """One scrape's body as received: *chunks*, gzip-compressed or not."""

    def __init__(self, scraper: Scraper, chunks: list[bytes], *, gzipped: bool) -> None:
        self.shown = scraper.shown
        self.limit = scraper.max_body_bytes
        self._too_large = scraper._too_large
        self.chunks = chunks
        self.gzipped = gzipped

    def content(self, prefix: bytes = b"") -> bytes:
        """*prefix* and the body, inflated if gzipped (CPU work: call it off the event
        loop). The limit holds for the inflated bytes: inflating stops one byte past
        it, so a compression bomb costs no more than the limit."""
        if not self.gzipped:
            return b"".join([prefix, *self.chunks])
        inflater = zlib.decompressobj(_GZIP_WBITS)
        pieces = [prefix]
        size = 0
        try:
            for chunk in self.chunks:
                piece = inflater.decompress(chunk, self.limit + 1 - size)
                size += len(piece)
                if size > self.limit:
                    raise ScrapeError(
                        self._too_large(f"more than {self.limit} bytes once inflated")
                    )
                pieces.append(piece)
            tail = inflater.flush()
        except zlib.error as exc:
            raise ScrapeError(
                f"{self.shown} answered a gzip body that does not inflate: {exc}"
            ) from None
        if size + len(tail) > self.limit:
            raise ScrapeError(self._too_large(f"more than {self.limit} bytes once inflated"))
        if not inflater.eof:
            raise ScrapeError(f"{self.shown} answered a gzip body that ends too soon")
        pieces.append(tail)
        return b"".join(pieces)
