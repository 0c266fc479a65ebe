"""The public surface, in tiers: ``takhin_ws`` (running and embedding a server),
``takhin_ws.protocol`` (the wire messages), ``takhin_ws.lowlevel`` (the hub's
internals) and ``takhin_ws.sources``; together they export every type a public
signature names, and no other internals."""

from __future__ import annotations

import inspect
import typing
from typing import Any, Final

import attrs
import pytest

import takhin_ws
import takhin_ws.lowlevel
import takhin_ws.protocol
import takhin_ws.sources
from takhin_ws.net.listener import Listener
from takhin_ws.wire.messages import PAYLOAD_CLASSES

#: Types that appear in public signatures but stay internal, each with its reason.
INTERNAL: dict[type, str] = {
    Listener: "the listening sockets open_server binds and hands the Server it builds",
}
#: The public modules, top first.
TIERS: Final = (takhin_ws, takhin_ws.protocol, takhin_ws.lowlevel, takhin_ws.sources)
#: The hub's internals: not at the top (issue 25), in ``lowlevel``.
HUB_INTERNALS: Final = ("Client", "Subscriber", "QueueSubscriber", "DropOldestQueue", "Outbound")


def _public() -> list[tuple[str, Any]]:
    """(name, object) of every public name of every tier."""
    return [(name, getattr(tier, name)) for tier in TIERS for name in tier.__all__]


def _referenced(annotation: Any, out: set[type]) -> None:
    if isinstance(annotation, type):
        out.add(annotation)
    for arg in typing.get_args(annotation):
        _referenced(arg, out)


def _hints(obj: Any) -> dict[str, Any]:
    # names a module imports only for type checking resolve among the public ones
    return typing.get_type_hints(obj, localns=dict(_public()))


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


@pytest.mark.parametrize("tier", TIERS, ids=lambda tier: tier.__name__)
def test_names_are_unique_and_exist(tier: Any) -> None:
    assert len(tier.__all__) == len(set(tier.__all__))
    for name in tier.__all__:
        assert hasattr(tier, name), name


def test_every_type_a_public_signature_names_is_exported() -> None:
    exported = {obj for _, obj in _public()}
    missing: dict[str, set[str]] = {}
    for name, obj in _public():
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # constants and type aliases
        for used in _signature_types(obj):
            if used.__module__.startswith("takhin_ws") and used not in exported | set(INTERNAL):
                missing.setdefault(f"{used.__module__}.{used.__qualname__}", set()).add(name)
    assert missing == {}


@pytest.mark.parametrize("internal", [*INTERNAL, "check_event", "converter", "diff"])
def test_internals_are_not_exported(internal: type | str) -> None:
    name = internal if isinstance(internal, str) else internal.__name__
    for tier in TIERS:
        assert name not in tier.__all__
    assert not hasattr(takhin_ws, name)


@pytest.mark.parametrize(
    ("tier", "name"),
    # named by the docs, or returned and raised by what the docs show
    [
        (takhin_ws, "Published"),
        (takhin_ws, "BusUnavailableError"),
        (takhin_ws, "ScrapeError"),
        (takhin_ws, "LocalProtocolError"),
        (takhin_ws, "EventIngress"),
        (takhin_ws, "IngressStatistics"),
        (takhin_ws, "Settings"),
        (takhin_ws, "Variant"),
        (takhin_ws, "TopicCreated"),
        (takhin_ws, "MonitoringMetrics"),
        (takhin_ws.protocol, "Heartbeat"),
        (takhin_ws.protocol, "Limits"),
        (takhin_ws.protocol, "GroupDetail"),
        (takhin_ws.protocol, "TopicDetail"),
        (takhin_ws.protocol, "EpochChanged"),
        (takhin_ws.protocol, "PROTOCOL_VERSION"),
        (takhin_ws.protocol, "decode"),
        (takhin_ws.lowlevel, "Variant"),
        (takhin_ws.lowlevel, "Drop"),
        (takhin_ws.lowlevel, "QueueStatistics"),
    ],
)
def test_names_users_meet_are_importable(tier: Any, name: str) -> None:
    assert name in tier.__all__


def test_every_message_class_is_in_protocol() -> None:
    classes = {*PAYLOAD_CLASSES.values(), takhin_ws.protocol.Envelope}
    assert classes <= {getattr(takhin_ws.protocol, n) for n in takhin_ws.protocol.__all__}


@pytest.mark.parametrize("name", HUB_INTERNALS)
def test_hub_internals_are_lowlevel_only(name: str) -> None:
    assert name in takhin_ws.lowlevel.__all__
    assert name not in takhin_ws.__all__


@pytest.mark.parametrize("name", sorted(takhin_ws._MOVED))
def test_a_moved_name_still_resolves_at_the_top_with_a_warning(name: str) -> None:
    tier = getattr(takhin_ws, takhin_ws._MOVED[name])
    assert name in tier.__all__
    with pytest.warns(DeprecationWarning, match=rf"takhin_ws\.{name} is takhin_ws\.\w+\.{name}"):
        moved = getattr(takhin_ws, name)
    assert moved is getattr(tier, name)
    assert name not in takhin_ws.__all__


def test_an_unknown_top_level_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        takhin_ws.Nope  # type: ignore[attr-defined]  # noqa: B018


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
    assert not issubclass(takhin_ws.protocol.Error, BaseException)  # the ``error`` message


def test_listen_error_is_an_os_error() -> None:
    # ``open_server`` documents ``OSError`` for an address it cannot bind.
    assert issubclass(takhin_ws.ListenError, OSError)
    assert (
        str(takhin_ws.ListenError("cannot listen on x:1: in use")) == "cannot listen on x:1: in use"
    )
