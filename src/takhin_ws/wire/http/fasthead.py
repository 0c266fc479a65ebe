"""The common WebSocket upgrade head, parsed by httptools' C parser (sans-IO).

h11 is the server's HTTP parser and the authority on what is refused (400 against
431, smuggling shapes), but parsing one upgrade head with it costs ~40 us, a fifth
of a handshake. :func:`parse_upgrade_head` takes the shape almost every client sends
(a whole head in the first read: ``GET <target> HTTP/1.1``, printable ASCII, CRLF line
ends, one ``Host``, no body, an upgrade llhttp recognises) and parses it with
httptools (llhttp, uvicorn's parser) in ~8 us. Anything else, and anything httptools
refuses, is left to h11 (``None``): a request this path accepts is one h11 accepts and
reads the same way (``tests/test_fasthead.py`` checks that with generated heads), so
every refusal keeps h11's answer.
"""

from __future__ import annotations

import re
from typing import Final

import httptools

from .plain import MAX_HEAD_BYTES, Request, make_request

__all__ = ["parse_upgrade_head"]

_HEAD_END: Final = b"\r\n\r\n"
#: The request line this path takes; the rest (HTTP/1.0, other methods) is h11's.
_METHOD: Final = b"GET "
_VERSION: Final = b" HTTP/1.1"
#: A byte the common head never holds (control bytes but HTAB/CR/LF, obs-text): h11's.
_UNUSUAL_BYTE: Final = re.compile(rb"[^\t\r\n\x20-\x7e]")
#: A line that continues the previous one (obs-fold): h11 reads it, llhttp refuses it.
_FOLD: Final = b"\n "
_FOLD_TAB: Final = b"\n\t"
#: Headers that announce a body: how h11 frames one is its own affair.
_BODY_HEADERS: Final = frozenset({"content-length", "transfer-encoding"})
#: Optional whitespace around a header value (RFC 9110 5.6.3), which h11 drops.
_OWS: Final = " \t"


class _Head:
    """httptools' callbacks: the target and the headers, as they are parsed."""

    __slots__ = ("headers", "hosts", "target", "unusual")

    def __init__(self) -> None:
        self.target = b""
        self.headers: dict[str, str] = {}
        self.hosts = 0
        self.unusual = False

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").strip(_OWS)
        headers = self.headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
        if key == "host":
            self.hosts += 1
        elif key in _BODY_HEADERS:
            self.unusual = True


def parse_upgrade_head(data: bytes) -> Request | None:
    """The :class:`Request` of *data* (every byte read so far) when it starts with a
    whole common upgrade head; ``None`` to leave it to h11."""
    end = data.find(_HEAD_END)
    if end < 0:
        return None
    head_size = end + len(_HEAD_END)
    head = data[:head_size]
    if (
        head_size > MAX_HEAD_BYTES
        or not head.startswith(_METHOD)
        or _UNUSUAL_BYTE.search(head) is not None
        or head.count(b"\n") != head.count(b"\r\n")
        or head.count(b"\r") != head.count(b"\r\n")
        or _FOLD in head
        or _FOLD_TAB in head
    ):
        return None
    parsed = _Head()
    parser = httptools.HttpRequestParser(parsed)
    try:
        parser.feed_data(head)
    except httptools.HttpParserUpgrade as upgrade:
        if upgrade.args[0] != head_size:
            return None
    except httptools.HttpParserError:
        return None
    else:
        return None  # not an upgrade llhttp recognises (or no end of message)
    target = parsed.target
    if (
        parsed.unusual
        or parsed.hosts != 1
        or parser.get_http_version() != "1.1"
        or not head.startswith(_METHOD + target + _VERSION + b"\r\n")
        or not target
        or b" " in target
        or b"\t" in target
    ):
        return None
    return make_request("GET", target.decode("ascii"), parsed.headers, data, None, "1.1", head_size)
