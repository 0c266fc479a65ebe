"""One group's lag history: the bounded per-group series (sans-IO), fed from snapshots
and from delivered messages, and the session core's answer to ``history`` for a group."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from takhin_ws import ConsumerLag, Hub, MonitoringMetrics, Settings
from takhin_ws.core.access.permissions import Permissions
from takhin_ws.core.lag.series import GroupLagSeries
from takhin_ws.core.series import Series
from takhin_ws.core.session import CLOSE_POLICY, SessionCore
from takhin_ws.lowlevel import QueueSubscriber
from takhin_ws.wire.codec import encode
from takhin_ws.wire.messages import Envelope, LagPoint
from takhin_ws.wire.websocket.frames import BARE

START = 1_700_000_000.0


def snapshot(**groups: tuple[int, float | None]) -> MonitoringMetrics:
    return MonitoringMetrics(
        consumer_lags=tuple(
            ConsumerLag(group_id=g, total_lag=total, lag_seconds=seconds)
            for g, (total, seconds) in groups.items()
        )
    )


def test_each_group_keeps_its_lag_and_seconds_per_tick() -> None:
    series = Series(window=60.0, interval=2.0)
    series.add(snapshot(billing=(10, 1.5), mailer=(0, 0.0)), START)
    series.add(snapshot(billing=(30, None)), START + 2)
    series.add(snapshot(billing=(20, 2.25), mailer=(5, 0.5)), START + 4)
    assert series.groups.points("billing") == (
        LagPoint(timestamp=START, total_lag=10, lag_seconds=1.5),
        LagPoint(timestamp=START + 2, total_lag=30, lag_seconds=None),
        LagPoint(timestamp=START + 4, total_lag=20, lag_seconds=2.25),
    )
    # absent at a tick: no point there, the others in their place
    assert [(p.timestamp, p.total_lag) for p in series.groups.points("mailer")] == [
        (START, 0),
        (START + 4, 5),
    ]
    assert series.groups.points("nobody") == ()
    history = series.groups.history("billing")
    assert (history.interval, history.channel, len(history.lags)) == (2.0, "group:billing", 3)


def test_the_window_bounds_every_group_and_gone_groups_are_forgotten() -> None:
    series = Series(window=10.0, interval=2.0)  # 5 points
    for k in range(12):
        groups = {"steady": (k, float(k))}
        if k < 3:
            groups["gone"] = (1, 1.0)
        series.add(snapshot(**groups), START + 2 * k)
    points = series.groups.points("steady")
    assert [p.total_lag for p in points] == [7, 8, 9, 10, 11]
    assert points[0].timestamp == START + 14
    assert series.groups.points("gone") == ()
    assert len(series.groups) == 1


def test_a_gap_in_time_drops_what_fell_out_of_the_window() -> None:
    series = Series(window=10.0, interval=2.0)
    series.add(snapshot(g=(1, 0.5)), START)
    series.add(snapshot(g=(2, 0.5)), START + 2)
    series.add(snapshot(g=(3, 0.5)), START + 100)  # the source was away (stale ticks)
    assert [p.total_lag for p in series.groups.points("g")] == [3]


def test_a_clock_that_steps_back_repeats_the_last_timestamp() -> None:
    lags = GroupLagSeries(60.0, 2.0, capacity=10)
    lags.add([("g", 1, None)], START + 10)
    lags.add([("g", 2, None)], START + 5)
    assert [p.timestamp for p in lags.points("g")] == [START + 10, START + 10]


def test_delivered_snapshots_feed_it_too() -> None:
    """A node that does not collect charts the snapshots the bus delivers."""
    series = Series(window=60.0, interval=2.0)
    message = encode(Envelope(payload=snapshot(billing=(42, 3.5)), timestamp=int(START)))
    series.add_message(message)
    old_node = orjson.loads(message)
    del old_node["data"]["consumerLags"][0]["lagSeconds"]  # from a node without the insight
    series.add_message(orjson.dumps({**old_node, "timestamp": int(START) + 2}))
    assert [(p.total_lag, p.lag_seconds) for p in series.groups.points("billing")] == [
        (42, 3.5),
        (42, None),
    ]


def test_memory_is_two_columns_a_point_per_group() -> None:
    lags = GroupLagSeries(3600.0, 1.0, capacity=3600)
    for k in range(100):
        lags.add([("g", k, math.pi)], START + k)
    group = lags._groups["g"]
    assert (group.totals.itemsize, group.seconds.itemsize) == (8, 4)
    assert len(group.totals) == len(group.seconds) == 100
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        GroupLagSeries(1.0, 1.0, capacity=0)


# --- the session's answer ---


def core_for(
    hub: Hub, series: Series | None, channels: tuple[str, ...] = ("metrics",), **kwargs: Any
) -> SessionCore:
    client = hub.add_client(QueueSubscriber(), channels, **kwargs)
    return SessionCore(hub, Settings(), client, clock=lambda: 0.0, series=series)


def ask(core: SessionCore, data: object) -> list[dict[str, Any]]:
    reply = core.receive(orjson.dumps({"type": "history", "data": data}).decode())
    return [orjson.loads(frame.payload) for frame in reply.frames]


def test_history_for_a_group_answers_its_lags_shared_until_the_next_tick(hub: Hub) -> None:
    series = Series(window=60.0, interval=2.0)
    series.add(snapshot(billing=(10, 1.5)), START)
    series.add(snapshot(billing=(30, 4.0)), START + 2)
    core = core_for(hub, series)
    (answer,) = ask(core, {"channel": "group:billing"})
    assert answer["type"] == "history"
    assert answer["data"] == {
        "interval": 2.0,
        "points": [],
        "channel": "group:billing",
        "lags": [
            {"timestamp": START, "totalLag": 10, "lagSeconds": 1.5},
            {"timestamp": START + 2, "totalLag": 30, "lagSeconds": 4.0},
        ],
    }
    other = core_for(hub, series)
    first = other.receive('{"type":"history","data":{"channel":"group:billing"}}').frames[0]
    again = other.receive('{"type":"history","data":{"channel":"group:billing"}}').frames[0]
    assert first is again  # encoded once for everyone asking this tick
    series.add(snapshot(billing=(5, 0.5)), START + 4)
    newer = other.receive('{"type":"history","data":{"channel":"group:billing"}}').frames[0]
    assert newer is not first
    (unknown,) = ask(core, {"channel": "group:nobody"})
    assert unknown["data"] == {"interval": 2.0, "points": [], "channel": "group:nobody", "lags": []}


def test_history_for_something_else_than_a_group_is_refused(hub: Hub) -> None:
    core = core_for(hub, Series(window=60.0, interval=2.0))
    for channel in ("topic:orders", "metrics", "group:", "group:a b"):
        (error,) = ask(core, {"channel": channel})
        assert error["type"] == "error"
        assert error["data"]["code"] == "invalid_field"
        assert error["data"]["path"] == "$.data.channel"
    (error,) = ask(core, {"channel": 7})
    assert error["data"]["path"] == "$.data.channel"
    # invalid messages count toward the abuse limit, as any other
    replies = [core.receive('{"type":"history","data":{"channel":"topics"}}') for _ in range(20)]
    assert any(r.close is not None and r.close.code == CLOSE_POLICY for r in replies)


def test_a_connection_may_read_only_the_groups_it_may_see(hub: Hub) -> None:
    series = Series(window=60.0, interval=2.0)
    series.add(snapshot(billing=(1, 0.0), secret=(2, 0.0)), START)
    core = core_for(
        hub, series, channels=("group:billing",), permissions=Permissions(["group:billing"])
    )
    (mine,) = ask(core, {"channel": "group:billing"})
    assert mine["data"]["lags"][0]["totalLag"] == 1
    (refused,) = ask(core, {"channel": "group:secret"})
    assert (refused["type"], refused["data"]["code"]) == ("error", "forbidden")
    core.permits = lambda channel: channel != "group:billing"  # an embedding app's say
    (refused,) = ask(core, {"channel": "group:billing"})
    assert refused["data"]["code"] == "forbidden"


def test_without_a_series_the_answer_is_empty_and_bare_gets_nothing(hub: Hub) -> None:
    (empty,) = ask(core_for(hub, None), {"channel": "group:g"})
    assert empty["data"] == {"interval": 2.0, "points": [], "channel": "group:g", "lags": []}
    series = Series(window=60.0, interval=2.0)
    series.add(snapshot(g=(1, 0.0)), START)
    assert ask(core_for(hub, series, variant=BARE), {"channel": "group:g"}) == []
