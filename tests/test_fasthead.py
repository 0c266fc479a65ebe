"""``wire/http/fasthead``: the common upgrade head parsed by httptools reads exactly as h11
reads it, and everything unusual is left to h11 (whose refusals the server answers)."""

from __future__ import annotations

import h11
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from takhin_ws.net.http.exchange import HeadReader
from takhin_ws.wire.http import MAX_HEAD_BYTES, HttpError, Request, body_parser, head_parser
from takhin_ws.wire.http import request_of as h11_request_of
from takhin_ws.wire.http.fasthead import parse_upgrade_head

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
COMMON = (
    b"GET /api/monitoring/ws?channels=topics,metrics&since=topics:4&token= HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: takhin.v1, bearer.k\r\nX-Twice: a\r\nx-twice:  b \t\r\n\r\n"
)
FIRST_FRAME = b"\x81\x85\x00\x00\x00\x00hello"


def by_h11(data: bytes) -> Request | None:
    """What the server's h11 path makes of *data* (``None``: a refusal or no head)."""
    conn = head_parser()
    conn.receive_data(data)
    try:
        event = conn.next_event()
        if not isinstance(event, h11.Request):
            return None
        return h11_request_of(event, data, conn)
    except (h11.RemoteProtocolError, HttpError):
        return None


def fields(request: Request) -> tuple[object, ...]:
    return (
        request.method,
        request.target,
        request.path,
        request.query,
        request.headers,
        request.raw,
        request.http_version,
        request.head_size,
        request.rest,
    )


def test_the_common_head_reads_as_h11_reads_it() -> None:
    data = COMMON + FIRST_FRAME
    fast = parse_upgrade_head(data)
    slow = by_h11(data)
    assert fast is not None
    assert slow is not None
    assert fields(fast) == fields(slow)
    assert fast.conn is None
    assert fast.is_websocket
    assert fast.rest == FIRST_FRAME
    assert fast.headers["x-twice"] == "a, b"
    assert fast.param("since") == "topics:4"


@pytest.mark.parametrize(
    "data",
    [
        COMMON.replace(b"Host: 127.0.0.1:8080\r\n", b""),  # no Host: h11 says 400
        COMMON.replace(b"Upgrade: websocket\r\n", b"Host: again\r\nUpgrade: websocket\r\n"),
        COMMON.replace(b"\r\n", b"\n"),  # bare LF line ends
        COMMON.replace(b"Connection: Upgrade\r\n", b"Connection:\r\n Upgrade\r\n"),  # obs-fold
        COMMON.replace(b"Upgrade: websocket\r\n", b"Upgrade: websocket\r\nContent-Length: 0\r\n"),
        COMMON.replace(b"HTTP/1.1", b"HTTP/1.0", 1),
        COMMON.replace(b"GET /", b"GET  /", 1),  # llhttp takes two spaces, h11 does not
        COMMON.replace(b"Host:", b"Host :"),
        COMMON.replace(b"X-Twice: a", b"X-Twice: \xe9"),  # obs-text
        COMMON.replace(b"X-Twice: a", b"X-Twice: \x01"),
        COMMON.replace(b"Connection: Upgrade\r\n", b""),  # no upgrade llhttp sees
        COMMON.replace(b"X-Twice: a", b"X-Twice: " + b"a" * MAX_HEAD_BYTES),
        COMMON[:-2],  # not whole yet
        b"POST /api/monitoring/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    ],
)
def test_what_is_not_the_common_shape_is_left_to_h11(data: bytes) -> None:
    assert parse_upgrade_head(data) is None


def mostly(common: bytes, *odd: bytes) -> st.SearchStrategy[bytes]:
    """*common* nine times in ten, else one of *odd*."""
    return st.sampled_from([common] * 9 + list(odd)) if odd else st.just(common)


_PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
_TEXT = _PRINTABLE.map(str.encode) | st.binary(max_size=12)
_TOKEN = st.from_regex(r"[-!#$%&'*+.^_`|~0-9A-Za-z]{1,10}", fullmatch=True).map(str.encode)
_LINE_END = mostly(b"\r\n", b"\n", b"\r", b"\r\n ", b"\r\n\t", b"")
_NAME = st.one_of(
    _TOKEN,
    _TOKEN,
    _TOKEN,
    st.sampled_from([b"Host", b"Content-Length", b"Transfer-Encoding"]),
    _TEXT,
)
_SEP = mostly(b": ", b":", b" : ", b":\t", b":  ", b" ")
_VALUE = st.one_of(_PRINTABLE.map(str.encode), _PRINTABLE.map(str.encode), _TEXT)
_HEADER = st.tuples(_NAME, _SEP, _VALUE, _LINE_END).map(b"".join)
_BASE_HEADERS = [
    b"Host: h\r\n",
    b"Upgrade: websocket\r\n",
    b"Connection: Upgrade\r\n",
    b"Sec-WebSocket-Key: " + KEY + b"\r\n",
]


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    """Upgrade heads near the common one: each part mostly kept, sometimes mutated."""
    method = draw(mostly(b"GET", b"get", b"POST", b"GET ", b""))
    targets = st.sampled_from([b"/api/monitoring/ws", b"/ws?a=1&b=%20&c#f", b"*", b"http://h/p?q"])
    target = draw(st.one_of(targets, targets, targets, _TEXT))
    version = draw(mostly(b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"http/1.1", b"HTTP/1.1 "))
    lines = [method + b" " + target + b" " + version + draw(_LINE_END)]
    headers = [h for h in _BASE_HEADERS if draw(st.integers(0, 9))]
    for header in draw(st.lists(_HEADER, max_size=2)):
        headers.insert(draw(st.integers(0, len(headers))), header)
    end = draw(mostly(b"\r\n", b"\n", b"\r\n\r\n"))
    return b"".join(lines + headers) + end + draw(st.binary(max_size=8))


@st.composite
def well_formed(draw: st.DrawFn) -> bytes:
    """Upgrade heads h11 takes: any origin-form target, header names, values and their
    whitespace."""
    target = draw(st.from_regex(r"/[\x21-\x7e]{0,30}", fullmatch=True)).encode()
    value = st.from_regex(
        r"[ \t]*([\x21-\x7e]([\x20-\x7e\t]{0,8}[\x21-\x7e])?)?[ \t]*", fullmatch=True
    )
    fields = st.tuples(_TOKEN, value.map(str.encode)).map(lambda nv: nv[0] + b":" + nv[1] + b"\r\n")
    headers = list(_BASE_HEADERS)
    for header in draw(st.lists(fields, max_size=4)):
        headers.insert(draw(st.integers(0, len(headers))), header)
    head = b"GET " + target + b" HTTP/1.1\r\n" + b"".join(headers) + b"\r\n"
    return head + draw(st.binary(max_size=8))


@settings(max_examples=1000, deadline=None)
@given(st.one_of(heads(), well_formed()))
@example(COMMON)
@example(COMMON.replace(b"GET /", b"GET //[/", 1))  # a target urlsplit refuses
def test_a_head_the_fast_path_takes_reads_exactly_as_h11_reads_it(data: bytes) -> None:
    refused: list[int] = []
    try:
        fast = parse_upgrade_head(data)
    except HttpError as exc:
        refused.append(exc.status)
    if refused:
        assert refused == [400]
        assert by_h11(data) is None, "the fast path refused a head h11 reads"
        return
    if fast is None:
        return  # h11's, whatever it says
    slow = by_h11(data)
    assert slow is not None, "the fast path took a head h11 refuses"
    assert fields(fast) == fields(slow)


def test_the_head_reader_takes_the_fast_path_only_for_a_whole_first_read() -> None:
    fast = HeadReader().feed(COMMON + FIRST_FRAME)
    assert fast is not None
    assert fast.conn is None
    assert fast.rest == FIRST_FRAME
    reader = HeadReader()
    assert reader.feed(COMMON[:10]) is None
    slow = reader.feed(COMMON[10:] + FIRST_FRAME)
    assert slow is not None
    assert slow.conn is not None
    assert fields(slow) == fields(fast)


def test_a_body_can_still_be_read_after_the_fast_path() -> None:
    request = parse_upgrade_head(COMMON + b"tail")
    assert request is not None
    conn = body_parser(request)
    assert conn.trailing_data[0] == b"tail"
