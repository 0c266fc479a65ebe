"""Autobahn sections 6 (UTF-8 handling) and 7 (close handling) as cases of the
project's suite (see ``autobahn``).

The UTF-8 sequences of 6.5 onwards follow the categories of Markus Kuhn's UTF-8
decoder stress test (as Autobahn's do); whether each is valid is Python's strict
decoder's answer (``bytes.decode("utf-8")``), so valid ones must be answered and
invalid ones must close the connection with 1007.
"""

from __future__ import annotations

import struct
from typing import Final

from autobahn import (
    INFORMATIONAL,
    Case,
    Conn,
    Result,
    answer,
    closes_cleanly,
    echo,
    fails,
    fails_fast,
    judge,
)
from autobahn_frames import MESSAGE, fragments
from rawws import CLOSE, CONTINUATION, PING, TEXT, frame, text

KOSME: Final = "κόσμε".encode()
HELLO: Final = "Hello-µ@ßöäüàá-UTF-8!!".encode()
#: Autobahn 6.3.1's invalid message: κόσμε, a surrogate (U+D800), "edited".
INVALID: Final = KOSME + b"\xed\xa0\x80edited"


def valid(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def utf8_case(cid: str, description: str, data: bytes, *, octets: bool = False) -> Case:
    """A text message of *data* (in 1-octet fragments if *octets*): answered if valid,
    closed with 1007 if not."""
    if octets:
        parts = [data[i : i + 1] for i in range(len(data))] or [b""]
        wire = frame(TEXT, parts[0], fin=len(parts) == 1)
        wire += b"".join(
            frame(CONTINUATION, p, fin=i == len(parts) - 1) for i, p in enumerate(parts) if i
        )
    else:
        wire = text(data)
    body = echo(cid, wire, [answer(data)]) if valid(data) else fails(cid, wire, codes=(1007,))
    return Case(cid, description, body)


def _sequences() -> list[tuple[str, list[bytes]]]:
    """(category, sequences): the stress test's categories, a few sequences each."""
    prefixes = [KOSME[:i] for i in range(1, len(KOSME) + 1)]
    return [
        (
            "some valid UTF-8",
            [
                b"hello$world",
                "hello¢world".encode(),
                "hello€world".encode(),
                "hello\U00024b62world".encode(),
                KOSME,
            ],
        ),
        ("every prefix of a valid string", prefixes),
        (
            "first sequence of each length",
            [b"\x00", b"\xc2\x80", b"\xe0\xa0\x80", b"\xf0\x90\x80\x80"],
        ),
        ("5- and 6-byte sequences", [b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80"]),
        (
            "last sequence of each length",
            [b"\x7f", b"\xdf\xbf", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf"],
        ),
        ("beyond U+10FFFF", [b"\xf4\x90\x80\x80", b"\xf7\xbf\xbf\xbf", b"\xfb\xbf\xbf\xbf\xbf"]),
        (
            "other boundaries",
            [b"\xed\x9f\xbf", b"\xee\x80\x80", b"\xef\xbf\xbd", b"\xf4\x8f\xbf\xbf"],
        ),
        (
            "unexpected continuation bytes",
            [b"\x80", b"\xbf", b"\x80\xbf", b"\x80\xbf\x80", bytes(range(0x80, 0xC0))],
        ),
        (
            "lonely start bytes",
            [bytes([b, 0x20]) for b in (0xC0, 0xDF, 0xE0, 0xEF, 0xF0, 0xF7, 0xF8, 0xFC)],
        ),
        (
            "last byte missing",
            [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf"],
        ),
        ("impossible bytes", [b"\xfe", b"\xff", b"\xfe\xfe\xff\xff"]),
        (
            "overlong ASCII",
            [b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xf8\x80\x80\x80\xaf"],
        ),
        ("maximum overlong", [b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf"]),
        ("overlong NUL", [b"\xc0\x80", b"\xe0\x80\x80", b"\xf0\x80\x80\x80"]),
        (
            "single surrogates",
            [
                b"\xed\xa0\x80",
                b"\xed\xad\xbf",
                b"\xed\xae\x80",
                b"\xed\xaf\xbf",
                b"\xed\xb0\x80",
                b"\xed\xbe\x80",
                b"\xed\xbf\xbf",
            ],
        ),
        (
            "paired surrogates",
            [b"\xed\xa0\x80\xed\xb0\x80", b"\xed\xad\xbf\xed\xbf\xbf", b"\xed\xaf\xbf\xed\xbf\xbf"],
        ),
        (
            "noncharacters (valid)",
            [
                b"\xef\xbf\xbe",
                b"\xef\xbf\xbf",
                b"\xef\xb7\x90",
                b"\xef\xb7\xaf",
                b"\xf0\x9f\xbf\xbe",
                b"\xf4\x8f\xbf\xbf",
            ],
        ),
    ]


def section_6() -> list[Case]:
    cases = [
        Case("6.1.1", "empty text message", echo("6.1.1", text(b""), [answer(b"")])),
        Case(
            "6.1.2",
            "3 empty fragments",
            echo(
                "6.1.2",
                frame(TEXT, fin=False) + frame(CONTINUATION, fin=False) + frame(CONTINUATION),
                [answer(b"")],
            ),
        ),
        Case(
            "6.1.3",
            "empty, non-empty, empty fragment",
            echo(
                "6.1.3",
                frame(TEXT, fin=False)
                + frame(CONTINUATION, MESSAGE, fin=False)
                + frame(CONTINUATION),
                [answer(MESSAGE)],
            ),
        ),
        utf8_case("6.2.1", "valid UTF-8 in one fragment", HELLO),
        Case(
            "6.2.2",
            "valid UTF-8, 2 fragments on a code point boundary",
            echo(
                "6.2.2",
                frame(TEXT, HELLO[:13], fin=False) + frame(CONTINUATION, HELLO[13:]),
                [answer(HELLO)],
            ),
        ),
        utf8_case("6.2.3", "valid UTF-8 in 1-octet fragments", HELLO, octets=True),
        utf8_case("6.2.4", "κόσμε in 1-octet fragments", KOSME, octets=True),
        utf8_case("6.3.1", "invalid UTF-8 in one fragment", INVALID),
        utf8_case("6.3.2", "invalid UTF-8 in 1-octet fragments", INVALID, octets=True),
    ]
    cases += _fail_fast()
    for major, (category, sequences) in enumerate(_sequences(), start=5):
        for minor, sequence in enumerate(sequences, start=1):
            cases.append(utf8_case(f"6.{major}.{minor}", f"{category}: {sequence.hex()}", sequence))
    return cases


def _fail_fast() -> list[Case]:
    """6.4: the invalid octet arrives in a fragment (6.4.1-2) or a chop of one frame
    (6.4.3-4): the connection fails there, before the rest is sent."""
    one, two, three = KOSME, b"\xf4\x90\x80\x80", b"edited"
    whole = one + two + three

    def by_frames(cid: str, cut: tuple[int, int]) -> Case:
        a, b = cut
        parts = [
            frame(TEXT, whole[:a], fin=False),
            frame(CONTINUATION, whole[a:b], fin=False),
            frame(CONTINUATION, whole[b:]),
        ]

        async def body(c: Conn) -> Result:
            return await fails_fast(c, cid, parts, bad=1)

        return Case(cid, "invalid UTF-8 in the 2nd of 3 fragments", body)

    def by_chops(cid: str, cut: tuple[int, int]) -> Case:
        a, b = cut
        wire = text(whole)
        head = len(wire) - len(whole)
        parts = [wire[: head + a], wire[head + a : head + b], wire[head + b :]]

        async def body(c: Conn) -> Result:
            return await fails_fast(c, cid, parts, bad=1)

        return Case(cid, "invalid UTF-8 in the 2nd of 3 chops of one frame", body)

    full, octet = (len(one), len(one) + len(two)), (len(one), len(one) + 2)
    return [
        by_frames("6.4.1", full),
        by_frames("6.4.2", octet),
        by_chops("6.4.3", full),
        by_chops("6.4.4", octet),
    ]


def close_frame(payload: bytes) -> bytes:
    return frame(CLOSE, payload)


def closing(
    cid: str, description: str, after: bytes = b"", *, before: bytes = b"", owed: int = 0
) -> Case:
    """The client's Close (1000), with frames before and after it: what came before
    is answered, what comes after is ignored, the close is clean."""

    async def body(c: Conn) -> Result:
        await c.send(before + close_frame(struct.pack("!H", 1000)) + after)
        if not await c.until_end():
            return judge(cid, "no Close frame in answer to ours")
        problems = []
        if c.close is not None and c.close.close_code != 1000:
            problems.append(f"answered with {c.close.close_code}")
        if len(c.events) != owed:
            problems.append(f"got {c.events}, owed {owed} answer(s)")
        return judge(cid, *problems)

    return Case(cid, description, body)


def with_code(cid: str, code: int, reason: bytes = b"") -> Case:
    async def body(c: Conn) -> Result:
        return judge(cid, await closes_cleanly(c, code, reason))

    return Case(cid, f"close with code {code}", body)


def section_7() -> list[Case]:
    big = frame(TEXT, b"*" * (256 * 1024))
    cases = [
        closing("7.1.1", "a message, then close", before=text(MESSAGE), owed=1),
        closing("7.1.2", "two closes", after=close_frame(b"")),
        closing("7.1.3", "a ping after the close", after=frame(PING)),
        closing("7.1.4", "a message after the close", after=text(MESSAGE)),
        closing(
            "7.1.5",
            "a fragment, close, the last fragment",
            before=frame(TEXT, b"frag", fin=False),
            after=frame(CONTINUATION, b"ment"),
        ),
    ]

    async def big_then_close(c: Conn) -> Result:
        await c.send(big + text(MESSAGE) + close_frame(struct.pack("!H", 1000)) + frame(PING))
        clean = await c.until_end()
        return Result("7.1.6", INFORMATIONAL if clean else "FAILED", f"answers {len(c.events)}")

    cases.append(
        Case(
            "7.1.6",
            "256 KiB message, a message, close, ping (implementation defined)",
            big_then_close,
        )
    )

    async def empty_close(c: Conn) -> Result:
        return judge("7.3.1", await closes_cleanly(c, None))

    cases += [
        Case("7.3.1", "close without payload", empty_close),
        Case("7.3.2", "close with a 1-byte payload", fails("7.3.2", close_frame(b"\x03"))),
        with_code("7.3.3", 1000),
        with_code("7.3.4", 1000, b"Hello World!"),
        with_code("7.3.5", 1000, b"*" * 123),
        Case(
            "7.3.6",
            "close with a 126-byte payload",
            fails("7.3.6", close_frame(struct.pack("!H", 1000) + b"*" * 124)),
        ),
        Case(
            "7.5.1",
            "close with an invalid UTF-8 reason",
            fails("7.5.1", close_frame(struct.pack("!H", 1000) + INVALID), codes=(1002, 1007)),
        ),
    ]
    valid_codes = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999)
    cases += [with_code(f"7.7.{i}", code) for i, code in enumerate(valid_codes, start=1)]
    invalid_codes = (0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999)
    cases += [
        Case(
            f"7.9.{i}",
            f"close with invalid code {code}",
            fails(f"7.9.{i}", close_frame(struct.pack("!H", code))),
        )
        for i, code in enumerate(invalid_codes, start=1)
    ]
    for i, code in enumerate((5000, 65535), start=1):
        cid = f"7.13.{i}"
        body = fails(cid, close_frame(struct.pack("!H", code)), codes=(1002,), informational=True)
        cases.append(Case(cid, f"close with code {code} (undefined by the spec)", body))
    return cases


def cases() -> list[Case]:
    return section_6() + section_7()


__all__ = ["cases", "fragments", "section_6", "section_7"]
