"""Upgrade admission without sockets: state, handshake headers, Origin, keys, capacity,
connect parameters and the subprotocol (the socket-level behaviour is in test_server)."""

from __future__ import annotations

from typing import Any

import h11
import pytest

from takhin_ws import Settings
from takhin_ws.core.access.admission import Admission, Upgrade, choose_subprotocol
from takhin_ws.wire.channels import MAX_OFFSET
from takhin_ws.wire.http import HttpError, Request, head_parser, request_of
from takhin_ws.wire.websocket.deflate import Deflate
from takhin_ws.wire.websocket.frames import BARE, PLAIN, Variant

UPGRADE_HEADERS: dict[str, str] = {
    "Host": "127.0.0.1:8080",
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def request(target: str = "/api/monitoring/ws", **headers: Any) -> Request:
    """An upgrade request as the server parses it; ``Header=None`` leaves one out."""
    merged = {**UPGRADE_HEADERS, **{k.replace("_", "-"): v for k, v in headers.items()}}
    lines = [f"GET {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in merged.items() if v is not None]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    conn = head_parser()
    conn.receive_data(raw)
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    return request_of(event, raw, conn)


def admit(req: Request, *, occupied: int = 0, capacity: int = 10, **settings: Any) -> Upgrade:
    return Admission(Settings(**settings)).admit(
        req, accepting=True, occupied=occupied, capacity=capacity
    )


def refusal(req: Request, **kwargs: Any) -> HttpError:
    with pytest.raises(HttpError) as info:
        admit(req, **kwargs)
    return info.value


def test_a_plain_upgrade_is_admitted_with_everything() -> None:
    req = request()
    assert admit(req) == Upgrade(
        channels=None, since={}, epoch=None, subprotocol=None, head_size=len(req.raw)
    )


def test_a_server_shutting_down_refuses_with_503() -> None:
    with pytest.raises(HttpError) as info:
        Admission(Settings()).admit(request(), accepting=False, occupied=0, capacity=10)
    assert info.value.status == 503
    assert ("Retry-After", "1") in info.value.headers


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Connection": "keep-alive"}, 400),
        ({"Upgrade": "websocket, h2c"}, 400),
        ({"Sec_WebSocket_Version": "8"}, 426),
        ({"Sec_WebSocket_Version": None}, 400),
        ({"Sec_WebSocket_Key": None}, 400),
    ],
)
def test_what_wsproto_would_refuse_is_refused_here(headers: dict[str, Any], status: int) -> None:
    error = refusal(request(**headers))
    assert error.status == status
    if status == 426:
        assert ("Sec-WebSocket-Version", "13") in error.headers


@pytest.mark.parametrize(
    ("origin", "allowed", "ok"),
    [
        (None, (), True),  # not a browser
        ("http://127.0.0.1:8080", (), True),  # same host as Host
        ("http://localhost:5173", (), True),  # local development, no list
        ("http://[::1]:3000", (), True),
        ("http://evil.example", (), False),
        ("null", (), False),
        ("http://127.0.0.1.evil.example", (), False),
        ("https://console.example", ("https://console.example",), True),
        ("http://localhost:5173", ("https://console.example",), False),  # a list: no implied
        ("https://any.example", ("*",), True),
    ],
)
def test_origin_policy(origin: str | None, allowed: tuple[str, ...], ok: bool) -> None:
    req = request(Origin=origin)
    if ok:
        admit(req, allowed_origins=allowed)
    else:
        assert refusal(req, allowed_origins=allowed).status == 403


def test_an_api_key_in_any_of_three_forms() -> None:
    keys: dict[str, Any] = {"api_keys": ("s3cret", "second")}
    admit(request(Authorization="Bearer s3cret"), **keys)
    admit(request(Authorization="second"), **keys)  # the bare key, as 2.9 took it
    admit(request("/api/monitoring/ws?token=s3cret"), **keys)
    upgrade = admit(request(Sec_WebSocket_Protocol="takhin.v1, bearer.second"), **keys)
    assert upgrade.subprotocol == "takhin.v1"
    for bad in (
        request(),
        request(Authorization="Bearer wrong"),
        request(Authorization="Basic czNjcmV0"),
        request("/api/monitoring/ws?token="),
        request(Sec_WebSocket_Protocol="bearer.wrong"),
    ):
        error = refusal(bad, **keys)
        assert error.status == 401
        assert error.headers[0][0] == "WWW-Authenticate"


def test_origin_is_checked_before_the_key() -> None:
    error = refusal(
        request("/api/monitoring/ws?token=k", Origin="http://evil.example"), api_keys=("k",)
    )
    assert error.status == 403


def test_capacity_counts_clients_and_handshakes_in_flight() -> None:
    admit(request(), occupied=9, capacity=10)
    error = refusal(request(), occupied=10, capacity=10, retry_after=7)
    assert error.status == 503
    assert ("Retry-After", "7") in error.headers
    assert "10 clients" in error.message


def test_connect_parameters() -> None:
    upgrade = admit(
        request("/api/monitoring/ws?channels=topic:orders,metrics&since=topics:4,groups:0&epoch=e")
    )
    assert upgrade.channels == ["topic:orders", "metrics"]
    assert upgrade.since == {"topics": 4, "groups": 0}
    assert upgrade.epoch == "e"
    assert admit(request("/api/monitoring/ws?channels=")).channels == []


@pytest.mark.parametrize(
    "query", ["channels=metrics,bogus", "since=metrics:3", "since=topics", "since=topics:-1"]
)
def test_bad_connect_parameters_are_400(query: str) -> None:
    error = refusal(request(f"/api/monitoring/ws?{query}"))
    assert error.status == 400
    assert query.split("=")[0] in error.message


@pytest.mark.parametrize(
    "offset",
    [
        "%C2%B2",  # a superscript two: str.isdigit() accepts it, int() refuses it
        "%D9%A3",  # an Arabic-Indic three: int() would read it as 3
        "%EF%BC%93",  # a fullwidth three
        "9" * 5000,  # int() of thousands of digits is slow, and no offset is that long
        str(MAX_OFFSET + 1),
        "+3",
        "%2B3",
        "",
    ],
)
def test_a_since_offset_is_ascii_digits_within_range(offset: str) -> None:
    error = refusal(request(f"/api/monitoring/ws?since=topics:{offset}"))
    assert error.status == 400
    assert error.message.startswith("since: an offset is 0 to")
    assert len(error.message) < 200  # the excerpt of a long value is cut


def test_the_largest_offset_is_accepted() -> None:
    upgrade = admit(request(f"/api/monitoring/ws?since=topics:{MAX_OFFSET},groups:00"))
    assert upgrade.since == {"topics": MAX_OFFSET, "groups": 0}


def test_views_at_connect_are_limited_per_connection() -> None:
    views = ",".join(f"metrics:group:g{n}" for n in range(3))
    error = refusal(request(f"/api/monitoring/ws?channels=topics,{views}"), max_views=2)
    assert (error.status, error.message) == (
        400,
        "channels: at most 2 metrics views per connection",
    )
    upgrade = admit(request(f"/api/monitoring/ws?channels=topics,{views}"), max_views=3)
    assert upgrade.channels is not None
    assert len(upgrade.channels) == 4


def test_subprotocol_choice() -> None:
    assert choose_subprotocol([]) is None
    assert choose_subprotocol(["bearer.k", "takhin.v1"]) == "takhin.v1"


# --- the wire variant: format and permessage-deflate ---


def test_format_parameter_and_setting() -> None:
    assert admit(request()).variant == PLAIN
    bare = admit(request("/api/monitoring/ws?format=bare"))
    assert bare.variant == BARE
    assert bare.channels == ["metrics"]  # a bare client receives nothing else
    assert admit(request(), format="bare").variant == BARE
    assert admit(request("/api/monitoring/ws?format=envelope"), format="bare").variant == PLAIN
    chosen = admit(request("/api/monitoring/ws?format=bare&channels=metrics:lean"))
    assert chosen.channels == ["metrics:lean"]


@pytest.mark.parametrize("value", ["xml", "", "BARE", "envelope,bare"])
def test_bad_format_is_refused(value: str) -> None:
    error = refusal(request(f"/api/monitoring/ws?format={value}"))
    assert error.status == 400
    assert error.message == f"format: expected envelope or bare, got {value!r}"


def test_deflate_offer_sets_the_variant_and_the_answer() -> None:
    upgrade = admit(
        request(Sec_WebSocket_Extensions="permessage-deflate; client_max_window_bits"),
        compress_min_size=100,
    )
    assert upgrade.deflate == Deflate()
    assert upgrade.variant == Variant(window_bits=15, min_size=100)
    assert upgrade.extra_headers == [
        (
            b"Sec-WebSocket-Extensions",
            b"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        )
    ]
    narrow = admit(
        request(
            "/api/monitoring/ws?format=bare",
            Sec_WebSocket_Extensions="permessage-deflate; server_max_window_bits=11",
        )
    )
    assert narrow.variant == Variant(bare=True, window_bits=11, min_size=512)
    assert narrow.extra_headers[0][1].endswith(b"; server_max_window_bits=11")


def test_no_offer_or_compression_off_means_plain() -> None:
    assert admit(request()).deflate is None
    assert admit(request()).extra_headers == []
    off = admit(request(Sec_WebSocket_Extensions="permessage-deflate"), compression=False)
    assert (off.deflate, off.variant, off.extra_headers) == (None, PLAIN, [])
    declined = admit(request(Sec_WebSocket_Extensions="permessage-deflate; nonsense"))
    assert declined.variant == PLAIN


def test_head_size_excludes_what_follows_the_head() -> None:
    lines = ["GET /api/monitoring/ws HTTP/1.1"] + [f"{k}: {v}" for k, v in UPGRADE_HEADERS.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    raw = head + b"\x81\x85first-frame"
    conn = head_parser()
    conn.receive_data(raw)
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    assert admit(request_of(event, raw, conn)).head_size == len(head)


def test_behind_asgi_the_handshake_and_compression_are_the_servers() -> None:
    """``owns_handshake=False`` (the ASGI app): headers an ASGI server already checked
    (an HTTP/2 extended CONNECT has no Upgrade or key) are not refused, and an offered
    permessage-deflate is left to that server: the client's variant is uncompressed;
    the rest of the policy (Origin, capacity, parameters) still applies."""
    req = request(
        "/api/monitoring/ws?channels=topics",
        Upgrade=None,
        Connection=None,
        Sec_WebSocket_Key=None,
        Sec_WebSocket_Extensions="permessage-deflate",
    )
    with pytest.raises(HttpError):
        admit(req)  # the standalone server checks the handshake itself
    admission = Admission(Settings())
    upgrade = admission.admit(req, accepting=True, occupied=0, capacity=10, owns_handshake=False)
    assert upgrade.channels == ["topics"]
    assert upgrade.deflate is None
    assert upgrade.variant == PLAIN
    with pytest.raises(HttpError) as info:
        admission.admit(
            request(Origin="https://evil.example"),
            accepting=True,
            occupied=0,
            capacity=10,
            owns_handshake=False,
        )
    assert info.value.status == 403
