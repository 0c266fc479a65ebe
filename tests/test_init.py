"""The public surface: ``takhin_ws.__all__`` holds every type a user meets, and no internals."""

from __future__ import annotations

import inspect
import typing
from typing import Any

import attrs
import pytest

import takhin_ws
import takhin_ws.sources
from takhin_ws.core.queue import Drop, QueueStatistics
from takhin_ws.net.listener import Listener

#: Types that appear in public signatures but stay internal, each with its reason.
INTERNAL: dict[type, str] = {
    Drop: "what DropOldestQueue hands the session to build a gap message",
    QueueStatistics: "per-queue counters the server aggregates into its own statistics",
    Listener: "the listening sockets open_server binds and hands the Server it builds",
}


def _referenced(annotation: Any, out: set[type]) -> None:
    if isinstance(annotation, type):
        out.add(annotation)
    for arg in typing.get_args(annotation):
        _referenced(arg, out)


def _hints(obj: Any) -> dict[str, Any]:
    return typing.get_type_hints(obj)


def _signature_types(obj: Any) -> set[type]:
    """Every class named by the public annotations of *obj* (a class or a function)."""
    found: set[type] = set()
    if not inspect.isclass(obj):
        for hint in _hints(obj).values():
            _referenced(hint, found)
        return found
    if attrs.has(obj):
        for name, hint in _hints(obj).items():
            if not name.startswith("_"):
                _referenced(hint, found)
    for name, member in inspect.getmembers(obj):
        if name.startswith("_") and name != "__init__":
            continue
        function = member.fget if isinstance(member, property) else member
        if inspect.isfunction(function):
            for hint in _hints(function).values():
                _referenced(hint, found)
    return found


def test_names_are_unique_and_exist() -> None:
    assert len(takhin_ws.__all__) == len(set(takhin_ws.__all__))
    for name in takhin_ws.__all__:
        assert hasattr(takhin_ws, name), name


def test_every_type_a_public_signature_names_is_exported() -> None:
    exported = {getattr(takhin_ws, name) for name in takhin_ws.__all__}
    missing: dict[str, set[str]] = {}
    for name in takhin_ws.__all__:
        obj = getattr(takhin_ws, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # constants and type aliases
        for used in _signature_types(obj):
            if used.__module__.startswith("takhin_ws") and used not in exported | set(INTERNAL):
                missing.setdefault(f"{used.__module__}.{used.__qualname__}", set()).add(name)
    assert missing == {}


@pytest.mark.parametrize("internal", [*INTERNAL, "check_event", "converter", "diff"])
def test_internals_are_not_exported(internal: type | str) -> None:
    name = internal if isinstance(internal, str) else internal.__name__
    assert name not in takhin_ws.__all__
    assert not hasattr(takhin_ws, name)


@pytest.mark.parametrize(
    "name",
    # named by the docs, or returned and raised by what the docs show
    [
        "Published",
        "BusUnavailableError",
        "ScrapeError",
        "LocalProtocolError",
        "EventIngress",
        "IngressStatistics",
        "Settings",
        "Heartbeat",
        "Limits",
        "GroupDetail",
        "TopicDetail",
        "EpochChanged",
        "PROTOCOL_VERSION",
    ],
)
def test_names_users_meet_are_importable(name: str) -> None:
    assert name in takhin_ws.__all__


def test_sources_are_the_subpackage_s() -> None:
    assert takhin_ws.ScrapeError is takhin_ws.sources.ScrapeError
    assert takhin_ws.SyntheticSource is takhin_ws.sources.SyntheticSource
    assert takhin_ws.PrometheusSource is takhin_ws.sources.PrometheusSource
    assert issubclass(takhin_ws.ScrapeError, takhin_ws.MetricsSourceError)


def test_every_error_is_a_takhin_ws_error() -> None:
    errors = [
        getattr(takhin_ws, name)
        for name in takhin_ws.__all__
        if name.endswith("Error") and name != "Error"  # Error is the ``error`` message
    ]
    assert len(errors) >= 9
    for error in errors:
        assert issubclass(error, takhin_ws.TakhinWsError), error
    assert not issubclass(takhin_ws.Error, BaseException)  # the ``error`` message class


def test_listen_error_is_an_os_error() -> None:
    # ``open_server`` documents ``OSError`` for an address it cannot bind.
    assert issubclass(takhin_ws.ListenError, OSError)
    assert (
        str(takhin_ws.ListenError("cannot listen on x:1: in use")) == "cannot listen on x:1: in use"
    )
