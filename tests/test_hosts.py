"""The Host check without sockets (DNS rebinding protection): which names a request may
carry, by the listen address and ``--allowed-host``."""

from __future__ import annotations

import pytest

from takhin_ws.core.access.hosts import HostPolicy, host_name, is_loopback
from takhin_ws.wire.http import HttpError, Request, head_parser, request_of


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8080", "127.0.0.1"),
        ("[::1]:8080", "::1"),
        ("[::1]", "::1"),
        ("LocalHost", "localhost"),
        ("localhost.:80", "localhost"),
        ("ws.example.com:443", "ws.example.com"),
        ("a b", None),
        ("evil.com:port", None),
        ("user@evil.com", None),
        ("evil.com/path", None),
        ("", None),
        ("[::1", None),
    ],
)
def test_host_name(header: str, name: str | None) -> None:
    assert host_name(header) == name


@pytest.mark.parametrize(
    ("bind", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("ws.example.com", False),
    ],
)
def test_is_loopback(bind: str, loopback: bool) -> None:
    assert is_loopback(bind) is loopback


ALWAYS = [
    "127.0.0.1:8080",
    "127.0.0.1",
    "[::1]:9",
    "localhost:8080",
    "app.localhost",
    "10.1.2.3:80",
]


@pytest.mark.parametrize("header", ALWAYS)
def test_addresses_and_localhost_are_always_allowed(header: str) -> None:
    assert HostPolicy((), bind="127.0.0.1").allows(header)
    assert HostPolicy(("ws.example.com",), bind="0.0.0.0").allows(header)


@pytest.mark.parametrize(
    "header",
    ["evil.com", "evil.com:8080", "127.0.0.1.evil.com", "localhost.evil.com", "a b", "x@y"],
)
def test_a_loopback_server_refuses_other_names(header: str) -> None:
    """The issue's case: on 127.0.0.1 with no flag, ``Host: evil.com`` was served."""
    assert not HostPolicy((), bind="127.0.0.1").allows(header)
    assert not HostPolicy((), bind="::1").allows(header)


def test_a_request_without_host_is_not_a_browser() -> None:
    assert HostPolicy((), bind="127.0.0.1").allows(None)


def test_listed_names_with_any_port_and_subdomains() -> None:
    policy = HostPolicy(("WS.example.com", ".corp.example"), bind="127.0.0.1")
    assert policy.allows("ws.example.com")
    assert policy.allows("ws.example.com:8443")
    assert policy.allows("WS.EXAMPLE.COM.")
    assert policy.allows("corp.example")
    assert policy.allows("a.b.corp.example:1")
    assert not policy.allows("example.com")
    assert not policy.allows("xcorp.example")
    assert not policy.allows("evil.com")


def test_which_servers_check() -> None:
    assert HostPolicy((), bind="127.0.0.1").active
    assert HostPolicy((), bind="localhost").active
    assert not HostPolicy((), bind="0.0.0.0").active  # reachable by names it cannot know
    assert HostPolicy(("ws.example.com",), bind="0.0.0.0").active  # unless they are listed
    assert not HostPolicy(("*",), bind="127.0.0.1").active
    assert not HostPolicy((), bind=None).active  # inside another server (ASGI)
    assert HostPolicy(("ws.example.com",), bind=None).active
    assert HostPolicy((), bind="0.0.0.0").allows("evil.com")


def request(host: str) -> Request:
    raw = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    conn = head_parser()
    conn.receive_data(raw)
    event = conn.next_event()
    return request_of(event, raw, conn)  # type: ignore[arg-type]


def test_a_refusal_is_403_naming_the_host_and_the_flag() -> None:
    policy = HostPolicy((), bind="127.0.0.1")
    policy.check(request("127.0.0.1:8080"))
    with pytest.raises(HttpError) as info:
        policy.check(request("evil.com:8080"))
    assert info.value.status == 403
    assert info.value.message.startswith("host 'evil.com:8080' is not allowed")
    assert "--allowed-host" in info.value.message
    with pytest.raises(HttpError) as info:
        policy.check(request("e" * 200 + ".com"))
    assert len(info.value.message) < 200  # a long Host is quoted cut
