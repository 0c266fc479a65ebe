"""The checks :class:`~takhin_ws.Settings` runs on itself: ranges, choices, URLs, extras.

Each failure is one :class:`SettingsError` naming the setting, so the command line can
name the flag and its variable and an embedding program gets the same message.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import math
import re
from collections.abc import Callable, Collection
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from .._exceptions import TakhinWsError

__all__ = [
    "EXTRAS",
    "SettingsError",
    "choice",
    "flag",
    "has_module",
    "hosts",
    "missing_extra",
    "number",
    "origins",
    "show",
    "strings",
    "url",
]

#: Optional packages: the import name and the extra of ``takhin-ws`` that installs it.
EXTRAS: Final = {"coredis": "redis", "confluent_kafka": "kafka"}


#: The path of a redis:// URL: nothing, ``/`` or ``/<db number>``.
_DB_PATH: Final = re.compile(r"(/\d*)?")


def show(value: float) -> str:
    """A number as a person writes it (``10000000``, ``0.5``), not ``1e+07``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


class SettingsError(TakhinWsError, ValueError):
    """A setting has a value takhin-ws cannot run with.

    ``setting`` is the attribute of :class:`~takhin_ws.Settings` at fault, ``problem``
    what is wrong with it; ``other`` names a second setting the problem refers to
    (``{other}`` in ``problem``), ``variable`` the environment variable a bad text
    came from (:meth:`~takhin_ws.Settings.from_env`).
    """

    def __init__(
        self,
        setting: str,
        problem: str,
        *,
        other: str | None = None,
        variable: str | None = None,
    ) -> None:
        self.setting = setting
        self.problem = problem
        self.other = other
        self.variable = variable
        super().__init__(self.describe(lambda name: name))

    def describe(
        self, name: Callable[[str], str], other: Callable[[str], str] | None = None
    ) -> str:
        """The message with the setting written as ``name(setting)`` (its flag...) and the
        setting it refers to as ``other(setting)`` (default: *name*)."""
        text = self.problem
        if self.other is not None:
            text = text.replace("{other}", (other or name)(self.other))
        if self.variable is not None:
            return f"{self.variable}: {text}"
        return f"{name(self.setting)} {text}"


Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _fail(attribute: attrs.Attribute[Any], problem: str) -> SettingsError:
    return SettingsError(attribute.name, problem)


def number(
    *,
    integer: bool = False,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    optional: bool = False,
) -> Validator:
    """A finite number (an ``int`` if *integer*), ``> gt``, ``>= ge``, ``<= le``."""

    def check(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None and optional:
            return
        if integer and (not isinstance(value, int) or isinstance(value, bool)):
            raise _fail(attribute, f"must be an integer, got {value!r}")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _fail(attribute, f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise _fail(attribute, f"must be a finite number, got {value!r}")
        if gt is not None and not value > gt:
            raise _fail(attribute, f"must be > {show(gt)}, got {show(value)}")
        if ge is not None and not value >= ge:
            raise _fail(attribute, f"must be >= {show(ge)}, got {show(value)}")
        if le is not None and not value <= le:
            raise _fail(attribute, f"must be <= {show(le)}, got {show(value)}")

    return check


def choice(options: Collection[str]) -> Validator:
    def check(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in options:
            raise _fail(attribute, f"must be one of {', '.join(options)}, got {value!r}")

    return check


def flag(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(attribute, f"must be True or False, got {value!r}")


def strings(what: str, hint: str = "") -> Validator:
    """A tuple of non-empty strings (an empty key must never mean "no key")."""

    def check(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            raise _fail(attribute, f"must be a tuple of strings, got {type(value).__name__}")
        if any(not v.strip() for v in value):
            raise _fail(attribute, f"has an empty {what}{hint}")

    return check


def origins(_: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    """Browser origins as sent in ``Origin``: ``scheme://host[:port]``, or ``*``."""
    for origin in value:
        if origin == "*":
            continue
        try:
            parts = urlsplit(origin)
            parts.port  # noqa: B018 (raises on a bad port)
        except ValueError:
            raise _fail(attribute, f"has an invalid origin {origin!r}") from None
        if not (parts.scheme and parts.hostname) or parts.path or parts.query:
            raise _fail(
                attribute, f"entries must be * or scheme://host[:port] (no path), got {origin!r}"
            )


_HOST_NAME: Final = re.compile(
    r"\.?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?"
)


def hosts(_: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    """Names clients reach the server by (``Host``): a name, ``.name`` (it and its
    subdomains), an IP address (always allowed anyway), or ``*``; no port."""
    for host in value:
        name = host.strip().lower()
        if name == "*" or _HOST_NAME.fullmatch(name):
            continue
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            raise _fail(
                attribute,
                f"entries must be * or a host name (.name for its subdomains too), "
                f"without a port, got {host!r}",
            ) from None


def url(schemes: Collection[str], example: str) -> Validator:
    """An optional URL with one of *schemes*; the URL is never echoed (it may hold a password)."""
    *first, last = [f"{s}://" for s in schemes]
    wanted = f"{', '.join(first)} or {last}"

    def check(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, str):
            raise _fail(attribute, f"must be a URL string, got {type(value).__name__}")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (raises on a bad port)
        except ValueError as exc:
            raise _fail(attribute, f"is not a valid URL ({exc})") from None
        if "://" not in value:
            raise _fail(attribute, f"needs a scheme ({wanted}), for example {example}")
        if parts.scheme not in schemes:
            raise _fail(
                attribute, f"must start with {wanted} (e.g. {example}), got {parts.scheme}://"
            )
        if parts.scheme == "unix":
            if not parts.path:
                raise _fail(attribute, "needs a socket path (unix:///path/to/redis.sock)")
            return
        if not parts.hostname:
            raise _fail(attribute, f"needs a host (e.g. {example})")
        if parts.scheme.startswith("redis") and not _DB_PATH.fullmatch(parts.path):
            raise _fail(attribute, f"path must be a database number (e.g. {example})")

    return check


def has_module(name: str) -> bool:
    """Whether an optional package can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_extra(setting: str, module: str, value: str = "") -> SettingsError:
    """*setting* (set to *value*, when that is what needs it) needs an optional package."""
    extra = EXTRAS[module]
    needs = f"{value} needs" if value else "needs"
    return SettingsError(
        setting,
        f"{needs} the optional {module} package: pip install 'takhin-ws[{extra}]' "
        f"(in a checkout: .venv/bin/pip install -e '.[{extra}]')",
    )
