"""Hostile input made by hypothesis, over a real socket (issue 22): connect
parameters, the HTTP request head, the body of ``POST /api/events``, and client frames.
Whatever arrives gets an answer (an HTTP response with a status, a message, or a
Close frame with a code: never a silent drop), and the server logs no ERROR line.

The server is a real ``python -m takhin_ws`` process for the module (its log is read
after every example); each example is its own ``trio.run`` of a client. A bounded
number of examples each, and no shrinking (the suite stays fast; a failure prints its
example)."""

from __future__ import annotations

import json
import struct
from collections.abc import Awaitable, Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import orjson
import pytest
import trio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import rawws
from browser import ServerProcess
from clients import open_raw_stream, read_to_eof
from redis_server import free_port

pytestmark = pytest.mark.slow

EXAMPLES: Final = 60
FUZZ = settings(
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Every wait for the server's answer: a hang fails the example instead of the run.
ANSWER_WAIT: Final = 10.0
#: The server's flags: a publish key, a short body deadline (a body announced and not
#: sent costs that much), no metrics tick during the run.
FLAGS: Final = ("--interval", "3600", "--publish-key", "k", "--body-timeout", "0.2")


class Fuzzed:
    """The server process, and what of its log has been read."""

    def __init__(self, process: ServerProcess) -> None:
        self.process = process
        self.port = process.port
        self._read = 0

    def errors(self) -> list[str]:
        """ERROR lines (and tracebacks) logged since the last call."""
        text = self.process.log_path.read_text(errors="replace")
        new, self._read = text[self._read :], len(text)
        return [line for line in new.splitlines() if " ERROR " in line or "Traceback" in line]

    def run(self, example: Callable[[int], Awaitable[None]]) -> None:
        """One example: its client in a fresh Trio run, then the log checked."""
        trio.run(example, self.port)
        assert not self.errors()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    log = Path(tmp_path_factory.mktemp("fuzz")) / "server.log"
    process = ServerProcess(free_port(), log, *FLAGS)
    process.start()
    try:
        yield Fuzzed(process)
    finally:
        process.stop()


async def exchange(port: int, data: bytes) -> bytes:
    """Send *data*, read everything until the server closes (bounded)."""
    stream = await open_raw_stream(port)
    async with stream:
        # refused before all was sent: its answer is still there to read
        with suppress(trio.BrokenResourceError):
            await stream.send_all(data)
        with trio.fail_after(ANSWER_WAIT):
            return await read_to_eof(stream)


def status(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


# --- connect parameters ---

_PARAM_VALUES = st.one_of(
    st.text(max_size=40),
    st.from_regex(
        r"(topics|groups|metrics|x)?:?-?[0-9٣²]{0,25}(,[a-z]+:[0-9]{0,3})?", fullmatch=True
    ),
    st.sampled_from(["metrics", "topics,groups", "topic:a", "metrics:lean", "bare", "envelope"]),
)
_PARAMS = st.lists(
    st.tuples(
        st.sampled_from(["channels", "since", "epoch", "format", "token", "x"]), _PARAM_VALUES
    ),
    max_size=5,
)


@FUZZ
@given(params=_PARAMS)
def test_connect_parameters_get_an_answer(fuzzed: Fuzzed, params: list[tuple[str, str]]) -> None:
    query = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in params)

    async def example(port: int) -> None:
        stream = await open_raw_stream(port)
        async with stream:
            await stream.send_all(rawws.upgrade_request(port, f"?{query}"))
            head = b""
            with trio.fail_after(ANSWER_WAIT):
                while b"\r\n\r\n" not in head:
                    data = await stream.receive_some(65536)
                    assert data, f"no answer to {query!r}"
                    head += data
        code = status(head)
        if code != 101:
            assert 400 <= code < 500, head[:300]
            body = head.partition(b"\r\n\r\n")[2]
            assert orjson.loads(body)["error"]["status"] == code

    fuzzed.run(example)


# --- the request head ---

_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=12)
_HEADER_VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
_HEADERS = st.lists(
    st.tuples(
        st.one_of(
            _TOKEN,
            st.sampled_from(
                ["Host", "Upgrade", "Connection", "Content-Length", "Transfer-Encoding",
                 "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Origin", "Authorization"]
            ),
        ),
        _HEADER_VALUE,
    ),
    max_size=6,
)  # fmt: skip


@FUZZ
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "OPTIONS", "BREW", "G\x00T", ""]),
    path=st.sampled_from(
        ["/", "/healthz", "/readyz", "/metrics", "/api/events", "/api/monitoring/ws",
         "/api/monitoring/metrics", "*", "//x", "/%00", "/?since=topics:%C2%B2"]
    ),
    version=st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/1.1x", ""]),
    headers=_HEADERS,
    noise=st.binary(max_size=20),
)  # fmt: skip
def test_any_request_head_gets_an_answer(
    fuzzed: Fuzzed,
    method: str,
    path: str,
    version: str,
    headers: list[tuple[str, str]],
    noise: bytes,
) -> None:
    lines = [f"{method} {path} {version}".encode("latin-1")]
    lines += [f"{name}: {value}".encode("latin-1") for name, value in headers]
    head = b"\r\n".join(lines) + noise + b"\r\n\r\n"

    async def example(port: int) -> None:
        response = await exchange(port, head)
        assert response, f"no answer to {head!r}"
        assert status(response) in range(100, 600)

    fuzzed.run(example)


# --- the body of POST /api/events ---

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def dump(value: object) -> bytes:
    """JSON as any client may write it: integers beyond 64 bits, Infinity..."""
    return json.dumps(value).encode()


_EVENTISH = st.fixed_dictionaries(
    {"type": st.sampled_from(["topic_created", "topic_deleted", "group_created", "ping", "x"])},
    optional={"data": _JSON},
)


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=200),
        _JSON.map(dump),
        st.lists(_EVENTISH, max_size=4).map(dump),
    )
)
def test_any_posted_body_gets_an_answer(fuzzed: Fuzzed, body: bytes) -> None:
    request = (
        b"POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer k\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    ) + body

    async def example(port: int) -> None:
        response = await exchange(port, request)
        code = status(response)
        assert code in (202, 400, 413), response[:300]
        answer = orjson.loads(response.partition(b"\r\n\r\n")[2])
        assert ("accepted" in answer) if code == 202 else answer["error"]["status"] == code

    fuzzed.run(example)


# --- client frames ---

#: Payloads worth trying often: messages the server knows, Close codes 1000 and 1006.
SAMPLE_PAYLOADS: Final = (
    b'{"type":"ping"}',
    b'{"type":"subscribe","data":"topics"}',
    b"\x03\xe8",
    b"\x03\xee",
)

_FRAME = st.fixed_dictionaries(
    {
        "opcode": st.sampled_from([0, 1, 1, 1, 2, 3, 8, 9, 9, 10, 11]),
        "fin": st.booleans(),
        "rsv": st.sampled_from([0, 0, 0, 0x40, 0x20, 0x10]),
        "masked": st.sampled_from([True, True, True, False]),
        "length_bytes": st.sampled_from([None, None, None, 2, 8]),
        "payload": st.one_of(
            st.binary(max_size=140),
            st.text(max_size=60).map(str.encode),
            st.sampled_from(SAMPLE_PAYLOADS),
        ),
    }
)  # fmt: skip


_PAYLOAD = st.one_of(st.sampled_from(SAMPLE_PAYLOADS), st.text(max_size=30).map(str.encode))
#: What can be done wrong to one frame of a valid sequence.
_MUTATIONS: Final[dict[str, dict[str, Any]]] = {
    "unmasked": {"masked": False},
    "rsv1": {"rsv": 0x40},
    "rsv2": {"rsv": 0x20},
    "reserved opcode": {"opcode": 0xB},
    "length in 2 bytes": {"length_bytes": 2},
    "length in 8 bytes": {"length_bytes": 8},
    "binary": {"opcode": 2},
    "not final": {"fin": False},
    "bad UTF-8": {"payload": b"\xce\xba\xed\xa0\x80"},
}
_DATA_MUTATIONS: Final = frozenset({"length in 2 bytes", "length in 8 bytes", "bad UTF-8"})


@st.composite
def valid_then_mutated(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A valid sequence (messages whole or in fragments, pings, pongs, a Close with any
    code), with one frame changed in one way or not at all: the shapes random frames
    rarely reach (a well-formed frame with only its length written long, say)."""
    frames: list[dict[str, Any]] = []
    base = {"fin": True, "rsv": 0, "masked": True, "length_bytes": None}
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["text", "fragmented", "ping", "pong", "close"]))
        if kind == "fragmented":
            payload = draw(_PAYLOAD)
            cut = draw(st.integers(0, len(payload)))
            frames.append({**base, "opcode": 1, "fin": False, "payload": payload[:cut]})
            frames.append({**base, "opcode": 0, "payload": payload[cut:]})
        elif kind == "close":
            code = draw(
                st.integers(0, 65535) | st.sampled_from([1000, 1001, 1012, 1013, 1014, 3000])
            )
            frames.append({**base, "opcode": 8, "payload": struct.pack("!H", code)})
        else:
            opcode = {"text": 1, "ping": 9, "pong": 10}[kind]
            payload = draw(_PAYLOAD if kind == "text" else st.binary(max_size=125))
            frames.append({**base, "opcode": opcode, "payload": payload})
    mutation = draw(st.sampled_from([None, *_MUTATIONS]))
    if mutation is not None:
        # a data frame where that matters (a control frame has its own, older checks)
        data = [i for i, f in enumerate(frames) if f["opcode"] in (0, 1)]
        wanted = data if mutation in _DATA_MUTATIONS and data else range(len(frames))
        index = draw(st.sampled_from(list(wanted)))
        frames[index] = {**frames[index], **_MUTATIONS[mutation]}
    return frames


def build(spec: dict[str, Any]) -> bytes:
    return rawws.frame(
        spec["opcode"],
        spec["payload"],
        fin=spec["fin"],
        rsv=spec["rsv"],
        masked=spec["masked"],
        length_bytes=spec["length_bytes"],
    )


def frames_answered(
    fuzzed: Fuzzed, frames: list[dict[str, Any]], deflate: bool, chop: int | None
) -> None:
    """The frames, then a JSON ping: the server answers the ping (a pong), or ends the
    connection with a Close frame. Never a bare drop, never a wait without end."""
    offer = ("Sec-WebSocket-Extensions: permessage-deflate",) if deflate else ()
    data = b"".join(build(spec) for spec in frames) + rawws.text(b'{"type":"ping"}')

    async def example(port: int) -> None:
        async with rawws.connect(port, "?channels=", *offer) as ws:
            assert (await ws.message())["type"] == "welcome"
            # closed before all was sent: the Close frame is still there to read
            with suppress(trio.BrokenResourceError):
                if chop is None:
                    await ws.send(data)
                else:
                    await ws.send_chopped(data, chop)
            with trio.fail_after(ANSWER_WAIT):
                while True:
                    got = await ws.frame()
                    assert got is not None, f"dropped without a Close frame after {frames}"
                    if got.opcode == rawws.CLOSE:
                        code = got.close_code
                        assert code is None or 1000 <= code < 5000, code
                        return
                    if got.opcode == rawws.TEXT and got.json()["type"] == "pong":
                        return

    fuzzed.run(example)


_CHOPS = st.sampled_from([None, 1, 7])


@FUZZ
@given(frames=st.lists(_FRAME, min_size=1, max_size=5), deflate=st.booleans(), chop=_CHOPS)
def test_random_client_frames_get_an_answer(
    fuzzed: Fuzzed, frames: list[dict[str, Any]], deflate: bool, chop: int | None
) -> None:
    frames_answered(fuzzed, frames, deflate, chop)


@FUZZ
@given(frames=valid_then_mutated(), deflate=st.booleans(), chop=_CHOPS)
def test_valid_frames_with_one_fault_get_an_answer(
    fuzzed: Fuzzed, frames: list[dict[str, Any]], deflate: bool, chop: int | None
) -> None:
    frames_answered(fuzzed, frames, deflate, chop)


def test_the_frame_builder_builds_what_it_is_told() -> None:
    spec = {
        "opcode": 1,
        "fin": True,
        "rsv": 0,
        "masked": False,
        "length_bytes": 2,
        "payload": b"hi",
    }
    assert build(spec) == bytes((0x81, 126)) + struct.pack("!H", 2) + b"hi"
