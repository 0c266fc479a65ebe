"""Which ``Host`` a request may name: protection against DNS rebinding (sans-IO).

A page on a rebinding domain (``evil.example`` resolving first to the attacker, then to
127.0.0.1) is same-origin with whatever answers on that name, so the browser lets it
read a local server's answers, and its WebSocket handshake passes the same-host Origin
rule (``Origin: http://evil.example`` with ``Host: evil.example``). The name in
``Host`` gives it away: the server was never meant to be reached by it.

:class:`HostPolicy` answers from ``allowed_hosts`` (``--allowed-host``) and the address
the server listens on:

- always allowed: IP addresses (a page reached by address cannot rebind it),
  ``localhost`` and ``*.localhost`` (RFC 6761: they resolve to the loopback), and a
  request without ``Host`` (HTTP/1.0: never a browser);
- the listed names, with any port (``example.com``; ``.example.com`` also allows every
  subdomain);
- ``*`` turns the check off.

With no list, the check is on when the server listens on a loopback address
(127.0.0.0/8, ``::1``, ``localhost``: the case rebinding attacks) and off otherwise
(a server reachable from the network by names this module cannot know; list them).
Inside another server (ASGI) the address is not known: only a list turns it on.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from ...wire.http import HttpError, Request

__all__ = ["ANY_HOST", "LOCALHOST", "HostPolicy", "host_name", "is_loopback"]

#: The ``--allowed-host`` entry that turns the check off.
ANY_HOST: Final = "*"
LOCALHOST: Final = "localhost"
#: What a host name may hold (a name, or an IPv4 address; IPv6 is checked as an address).
_NAME: Final = re.compile(r"[a-z0-9_.-]+")
#: How many distinct ``Host`` values a policy remembers its answer for.
REMEMBERED_HOSTS: Final = 64
#: Longest excerpt of a refused ``Host`` quoted in the answer.
QUOTE_LENGTH: Final = 60


def is_loopback(host: str) -> bool:
    """Whether the listen address *host* is only reachable from this machine."""
    name = host.strip("[]").lower().rstrip(".")
    if name == LOCALHOST:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str | None:
    """The lower-case name of a ``Host`` header value (its port left out, an IPv6
    address without brackets, one trailing dot dropped); ``None`` if malformed."""
    try:
        parts = urlsplit(f"//{header.strip()}")
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return None
    if parts.username is not None or parts.path or parts.query or parts.fragment:
        return None
    name = parts.hostname
    if not name or not (_NAME.fullmatch(name) or _is_address(name)):
        return None
    return name[:-1] if name.endswith(".") else name


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostPolicy:
    """The ``Host`` check of one server (see the module docstring). *bind* is the
    address it listens on, ``None`` when another server listens (ASGI)."""

    __slots__ = ("_active", "_answers", "_names", "_suffixes")

    def __init__(self, allowed: Iterable[str], *, bind: str | None) -> None:
        entries = [entry.strip().lower().rstrip(".") for entry in allowed]
        self._active = ANY_HOST not in entries and (
            bool(entries) or (bind is not None and is_loopback(bind))
        )
        self._names = frozenset(e for e in entries if not e.startswith("."))
        self._suffixes = tuple(e for e in entries if e.startswith("."))
        # the answer for each Host value seen lately: a server is reached by a few
        # names, and a reconnecting crowd should not parse each one again
        self._answers: dict[str, bool] = {}

    @property
    def active(self) -> bool:
        """Whether any ``Host`` is refused at all."""
        return self._active

    def allows(self, header: str | None) -> bool:
        """Whether a request with this ``Host`` header value may be answered."""
        if not self._active or header is None:
            return True
        answers = self._answers
        answer = answers.get(header)
        if answer is None:
            if len(answers) >= REMEMBERED_HOSTS:
                answers.clear()  # bounded: many distinct values only cost the parse
            answer = answers[header] = self._allows(header)
        return answer

    def _allows(self, header: str) -> bool:
        name = host_name(header)
        if name is None:
            return False
        if name == LOCALHOST or name.endswith("." + LOCALHOST) or _is_address(name):
            return True
        if name in self._names:
            return True
        return any(name == s[1:] or name.endswith(s) for s in self._suffixes)

    def check(self, request: Request) -> None:
        """Raise :class:`HttpError` (403) unless *request*'s ``Host`` is allowed."""
        host = request.header("host")
        if not self.allows(host):
            assert host is not None
            quoted = repr(host[:QUOTE_LENGTH]) + ("..." if len(host) > QUOTE_LENGTH else "")
            raise HttpError(
                403,
                f"host {quoted} is not allowed (DNS rebinding protection): "
                "list the names this server is reached by with --allowed-host",
            )
