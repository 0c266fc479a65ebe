"""The ASGI app's sans-IO parts: reading a scope, and the ``authorize`` hook's values
(Access patterns, Refusal, what a hook may return). The app over real sockets is in
``test_asgi.py`` and ``test_asgi_mounted.py``."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from takhin_ws.asgi import Access, Refusal, Scope
from takhin_ws.asgi.auth import authorize_scope
from takhin_ws.asgi.scope import client_address, has_http_response_extension, request_of, route_path
from takhin_ws.wire.http import HttpError


def scope(**fields: Any) -> Scope:
    base: Scope = {
        "type": "websocket",
        "path": "/api/monitoring/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("/api/monitoring/ws", "", "/api/monitoring/ws"),
        ("/live/api/monitoring/ws", "/live", "/api/monitoring/ws"),  # Starlette's Mount
        ("/api/monitoring/ws", "/live", "/api/monitoring/ws"),  # a server that strips it
        ("/live", "/live", "/"),
        ("/lively/x", "/live", "/lively/x"),  # not below the prefix
    ],
)
def test_the_route_is_the_path_below_the_mount_point(path: str, root: str, expected: str) -> None:
    assert route_path(scope(path=path, root_path=root)) == expected


def test_a_scope_reads_as_the_request_the_admission_and_routes_take() -> None:
    request = request_of(
        scope(
            path="/live/api/monitoring/ws",
            root_path="/live",
            query_string=b"channels=topics&since=topics:4&token=k",
            headers=[(b"Origin", b"https://console.example"), (b"x-a", b"1"), (b"X-A", b"2")],
            http_version="2",
        )
    )
    assert request.path == "/api/monitoring/ws"
    assert request.target == "/api/monitoring/ws?channels=topics&since=topics:4&token=k"
    assert request.param("channels") == "topics"
    assert request.header("origin") == "https://console.example"
    assert request.header("x-a") == "1, 2"
    assert (request.method, request.http_version) == ("GET", "2")


@pytest.mark.parametrize(
    ("client", "expected"),
    [(("10.0.0.7", 5123), "10.0.0.7:5123"), (("::1", 80), "[::1]:80"), (None, "unknown")],
)
def test_the_client_address_comes_from_the_scope(
    client: tuple[str, int] | None, expected: str
) -> None:
    assert client_address(scope(client=client)) == expected


def test_the_http_response_extension_is_read_from_the_scope() -> None:
    assert has_http_response_extension(scope(extensions={"websocket.http.response": {}}))
    assert not has_http_response_extension(scope())


def test_access_patterns_match_whole_channels_with_star_as_the_only_wildcard() -> None:
    access = Access("ana", ["metrics", "topic:orders.*", "group:billing-*"])
    assert access.channels == ("metrics", "topic:orders.*", "group:billing-*")
    assert access.permits("metrics")
    assert access.permits("topic:orders.eu")
    assert access.permits("group:billing-")
    assert not access.permits("metrics:lean")  # whole names: no prefix match
    assert not access.permits("topic:ordersXeu")  # "." is literal
    assert not access.permits("topics")
    assert Access().permits("anything")


def test_the_default_subscription_is_what_the_patterns_allow() -> None:
    assert Access().default_channels() is None  # everything, as without a hook
    allowed = Access(channels=["metrics", "topic:orders", "group:*", "not a channel"])
    assert allowed.default_channels() == ["metrics", "topic:orders"]
    assert Access(channels=["*"]).default_channels() == ["metrics", "topics", "groups"]
    assert Access(channels=[]).default_channels() == []
    assert not Access(channels=[]).permits("")  # no pattern permits nothing


def test_access_refuses_a_string_for_a_list() -> None:
    with pytest.raises(TypeError, match="a list of patterns"):
        Access(channels="metrics")
    with pytest.raises(TypeError, match="non-empty string"):
        Access(channels=[""])


@given(st.lists(st.from_regex(r"[a-z:.*-]{1,12}", fullmatch=True), max_size=4), st.text())
def test_a_pattern_without_a_star_permits_exactly_itself(patterns: list[str], name: str) -> None:
    access = Access(channels=patterns)
    literal = [p for p in patterns if "*" not in p]
    for pattern in literal:
        assert access.permits(pattern)
    if not any("*" in p for p in patterns):
        assert access.permits(name) == (name in patterns)


def test_a_refusal_is_a_4xx_or_5xx() -> None:
    with pytest.raises(ValueError, match="400-599"):
        Refusal(302)


async def test_the_hook_decides_sync_or_async_and_a_wrong_answer_is_a_type_error() -> None:
    assert await authorize_scope(None, scope()) == Access()
    assert await authorize_scope(lambda s: Access("ana"), scope()) == Access("ana")

    async def refuse(s: Scope) -> Access | Refusal:
        return Refusal(401, "log in first", (("WWW-Authenticate", "Cookie"),))

    with pytest.raises(HttpError) as info:
        await authorize_scope(refuse, scope())
    assert (info.value.status, info.value.message) == (401, "log in first")
    assert info.value.headers == [("WWW-Authenticate", "Cookie")]
    with pytest.raises(TypeError, match=r"must return takhin_ws\.asgi\.Access or Refusal"):
        await authorize_scope(lambda s: True, scope())  # type: ignore[arg-type,return-value]
