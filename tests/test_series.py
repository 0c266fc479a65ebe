"""The ring of chart series (sans-IO): bounded by the window, oldest first, the groups
with the most lag, the same points from a snapshot and from its JSON."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import metrics as metrics_strategy
from takhin_ws.core.metrics.views import metrics_data
from takhin_ws.core.series import MAX_SERIES_GROUPS, Series
from takhin_ws.wire.codec import decode, encode
from takhin_ws.wire.messages import (
    ConsumerLag,
    Envelope,
    History,
    HistoryPoint,
    Latency,
    MonitoringMetrics,
    Throughput,
)
from takhin_ws.wire.websocket.frames import Outbound


def snapshot(produce: float = 1.0, **lags: int) -> MonitoringMetrics:
    return MonitoringMetrics(
        throughput=Throughput(produce_rate=produce, fetch_rate=produce / 2, produce_bytes=8.0),
        latency=Latency(produce_p50=0.001, produce_p99=0.02, fetch_p95=0.005),
        consumer_lags=tuple(ConsumerLag(group_id=g, total_lag=n) for g, n in lags.items()),
    )


def test_a_point_per_snapshot_oldest_first() -> None:
    series = Series(window=10.0, interval=2.0)
    assert series.capacity == 5
    assert series.history() == History(interval=2.0, points=())
    first = series.add(snapshot(1.0, billing=5), 100.0)
    series.add(snapshot(2.0, billing=7, audit=1), 102.0)
    points = series.points()
    assert points[0] is first
    assert [p.timestamp for p in points] == [100.0, 102.0]
    assert [p.throughput.produce_rate for p in points] == [1.0, 2.0]
    assert points[1].latency.produce_p99 == 0.02
    assert points[1].group_lags == {"billing": 7, "audit": 1}
    assert series.history() == History(interval=2.0, points=points)


def test_the_ring_holds_the_window_at_the_tick_rate() -> None:
    series = Series(window=10.0, interval=2.0)
    for k in range(12):
        series.add(snapshot(float(k)), 100.0 + 2 * k)
    assert len(series) == 5
    assert [p.throughput.produce_rate for p in series.points()] == [7.0, 8.0, 9.0, 10.0, 11.0]


def test_points_older_than_the_window_go_even_below_capacity() -> None:
    # ticks were skipped (a slow source): the ring is not full, but the window is
    series = Series(window=10.0, interval=2.0)
    series.add(snapshot(1.0), 100.0)
    series.add(snapshot(2.0), 105.0)
    series.add(snapshot(3.0), 111.0)
    assert [p.timestamp for p in series.points()] == [105.0, 111.0]


def test_a_clock_stepping_back_never_reorders_points() -> None:
    series = Series(window=60.0, interval=2.0)
    series.add(snapshot(), 100.0)
    point = series.add(snapshot(), 90.0)
    assert point.timestamp == 100.0
    assert [p.timestamp for p in series.points()] == [100.0, 100.0]


def test_only_the_groups_with_the_most_lag_are_kept() -> None:
    series = Series(window=60.0, interval=2.0, max_groups=3)
    point = series.add(snapshot(a=1, b=50, c=50, d=7, e=0, f=49), 1.0)
    # the largest lags; a tie goes to the smaller id
    assert point.group_lags == {"b": 50, "c": 50, "f": 49}
    assert Series(window=1.0, interval=1.0, max_groups=0).add(snapshot(a=1), 1.0).group_lags == {}


def test_the_group_cap_is_a_named_constant() -> None:
    many = {f"g{i:03d}": i for i in range(MAX_SERIES_GROUPS + 20)}
    point = Series(window=60.0, interval=2.0).add(snapshot(**many), 1.0)
    assert len(point.group_lags) == MAX_SERIES_GROUPS
    assert min(point.group_lags.values()) == 20


def test_clear_forgets_every_point() -> None:
    series = Series(window=60.0, interval=2.0)
    series.add(snapshot(), 1.0)
    series.clear()
    assert series.points() == ()


@pytest.mark.parametrize(
    ("window", "interval", "max_groups", "message"),
    [
        (0.0, 2.0, 1, "window must be a positive number of seconds, got 0.0"),
        (math.inf, 2.0, 1, "window must be a positive number of seconds, got inf"),
        (60.0, -1.0, 1, "interval must be a positive number of seconds, got -1.0"),
        (60.0, 2.0, -1, "max_groups must be >= 0, got -1"),
    ],
)
def test_bad_arguments_say_which(
    window: float, interval: float, max_groups: int, message: str
) -> None:
    with pytest.raises(ValueError, match="must be") as info:
        Series(window, interval, max_groups=max_groups)
    assert str(info.value) == message


def test_a_window_shorter_than_a_tick_keeps_one_point() -> None:
    series = Series(window=1.0, interval=2.0)
    series.add(snapshot(1.0), 1.0)
    series.add(snapshot(2.0), 3.0)
    assert [p.throughput.produce_rate for p in series.points()] == [2.0]


@given(
    st.lists(
        st.tuples(metrics_strategy, st.floats(min_value=0.0, max_value=4.0)),
        max_size=25,
    ),
    st.integers(min_value=0, max_value=4),
)
def test_invariants(ticks: list[tuple[MonitoringMetrics, float]], max_groups: int) -> None:
    series = Series(window=9.0, interval=1.5, max_groups=max_groups)
    now = 1000.0
    for metrics, step in ticks:
        now += step
        point = series.add(metrics, now)
        points = series.points()
        assert points[-1] is point
        assert 1 <= len(points) <= series.capacity == 6
        stamps = [p.timestamp for p in points]
        assert stamps == sorted(stamps)
        assert stamps[-1] - stamps[0] <= series.window
        lags = {c.group_id: c.total_lag for c in metrics.consumer_lags}
        assert len(point.group_lags) == min(max_groups, len(lags))
        kept = set(point.group_lags)
        assert all(lags[g] == point.group_lags[g] for g in kept)
        # nothing left out has more lag than something kept
        if kept:
            assert max((n for g, n in lags.items() if g not in kept), default=-(2**64)) <= min(
                point.group_lags.values()
            )


@given(metrics_strategy)
def test_a_snapshot_and_its_json_give_the_same_point(metrics: MonitoringMetrics) -> None:
    data = orjson.loads(orjson.dumps(metrics_data(metrics)))
    from_object = Series(window=60.0, interval=2.0).add(metrics, 5.0)
    from_json = Series(window=60.0, interval=2.0).add_data(data, 5.0)
    assert from_json == from_object


def test_the_history_message_on_the_wire() -> None:
    series = Series(window=60.0, interval=2.0)
    series.add(snapshot(3.0, billing=4), 1700000000.1234)
    raw = encode(Envelope(payload=series.history(), timestamp=1700000001))
    obj = orjson.loads(raw)
    assert obj["type"] == "history"
    assert obj["data"]["interval"] == 2.0
    (point,) = obj["data"]["points"]
    assert list(point) == ["timestamp", "throughput", "latency", "groupLags"]
    assert point["timestamp"] == 1700000000.123
    assert point["throughput"]["produceRate"] == 3.0
    assert point["latency"]["produceP99"] == 0.02
    assert point["groupLags"] == {"billing": 4}
    assert decode(raw).payload == series.history()


def test_a_client_asks_for_history_without_data() -> None:
    env = decode(b'{"type":"history"}')
    assert env.payload == History()
    assert isinstance(HistoryPoint(timestamp=1.0).group_lags, dict)


def test_an_encoded_snapshot_adds_its_point_and_a_stale_one_none() -> None:
    series = Series(window=60.0, interval=2.0)
    fresh = encode(Envelope(payload=snapshot(4.0, billing=2), timestamp=1000, stale=False))
    stale = encode(Envelope(payload=snapshot(5.0), timestamp=1002, stale=True))
    point = series.add_message(fresh)
    assert point is not None
    assert (point.timestamp, point.throughput.produce_rate, point.group_lags) == (
        1000.0,
        4.0,
        {"billing": 2},
    )
    assert series.add_message(stale) is None
    assert len(series) == 1


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{", "not a metrics message: JSONDecodeError"),
        (b'{"type":"pong","timestamp":1}', "a pong message is not a snapshot"),
        (b'{"type":"metrics","data":{},"timestamp":1}', "not a metrics message: KeyError"),
    ],
)
def test_anything_but_a_snapshot_is_refused(payload: bytes, message: str) -> None:
    series = Series(window=60.0, interval=2.0)
    with pytest.raises(ValueError, match="message") as info:
        series.add_message(payload)
    assert str(info.value).startswith(message)
    assert len(series) == 0


def test_the_encoded_history_is_built_once_per_point() -> None:
    series = Series(window=60.0, interval=2.0)
    built: list[History] = []

    def encode_once(history: History) -> Outbound:
        built.append(history)
        return Outbound.of(encode(Envelope(payload=history, timestamp=1)))

    series.add(snapshot(1.0), 1.0)
    first = series.reply(encode_once)
    assert series.reply(encode_once) is first  # shared until the next point
    series.add(snapshot(2.0), 3.0)
    second = series.reply(encode_once)
    assert second is not first
    assert [len(h.points) for h in built] == [1, 2]
    series.clear()
    assert orjson.loads(series.reply(encode_once).payload)["data"]["points"] == []
