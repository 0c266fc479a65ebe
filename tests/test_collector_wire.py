"""The frames between the server and its collector process (``sources/kafka/pipe``,
no I/O): any snapshot comes back equal, whatever the pieces the pipe delivers."""

from __future__ import annotations

import struct
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import group_ids, group_states, member_counts, metrics
from takhin_ws import GroupInfo, MonitoringMetrics, Snapshot
from takhin_ws.sources.kafka.pipe import (
    CHUNK_WEIGHT,
    MAX_FRAME,
    Assembler,
    FrameError,
    FrameReader,
    frame,
    snapshot_frames,
)
from takhin_ws.wire.messages import ConsumerLag, PartitionLag, TopicLag, TopicStats

groups = st.dictionaries(
    group_ids, st.builds(GroupInfo, state=group_states, members=member_counts), max_size=5
)


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    """*data* in pieces at the given (sorted, deduplicated) positions."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def read_all(pieces: list[bytes]) -> list[dict[str, Any]]:
    reader = FrameReader()
    out = []
    for piece in pieces:
        reader.feed(piece)
        while (message := reader.next()) is not None:
            out.append(message)
    assert reader.pending == 0
    return out


def assemble(tick: int, messages: list[dict[str, Any]]) -> Snapshot:
    assembler = Assembler(tick)
    *pieces, last = messages
    for message in pieces:
        assert message["tick"] == tick
        assert assembler.add(message) is None  # only the last piece completes it
    snapshot = assembler.add(last)
    assert snapshot is not None
    return snapshot


@settings(max_examples=60)
@given(metrics=metrics, groups=groups, cuts=st.lists(st.integers(0, 10**6), max_size=12))
def test_a_snapshot_comes_back_equal_whatever_the_pieces(
    metrics: MonitoringMetrics, groups: dict[str, GroupInfo], cuts: list[int]
) -> None:
    snapshot = Snapshot(metrics=metrics, groups=groups)
    data = b"".join(snapshot_frames(7, snapshot))
    assert assemble(7, read_all(cut(data, cuts))) == snapshot


def big_snapshot(topics: int, groups: int, partitions: int) -> Snapshot:
    lags = tuple(
        ConsumerLag(
            group_id=f"g{g}",
            total_lag=partitions,
            topic_lags=(
                TopicLag(
                    topic=f"t{g % topics}",
                    total_lag=partitions,
                    partition_lags=tuple(
                        PartitionLag(partition=p, current_offset=1, log_end_offset=2, lag=1)
                        for p in range(partitions)
                    ),
                ),
            ),
        )
        for g in range(groups)
    )
    stats = tuple(
        TopicStats(
            name=f"t{t}",
            partitions=partitions,
            total_messages=t,
            total_bytes=0,
            produce_rate=1.5,
            fetch_rate=0.0,
        )
        for t in range(topics)
    )
    return Snapshot(
        metrics=MonitoringMetrics(topic_stats=stats, consumer_lags=lags, timestamp=1),
        groups={f"g{g}": GroupInfo(state="Stable", members=1) for g in range(groups)},
    )


def test_a_big_snapshot_travels_in_pieces_of_bounded_weight() -> None:
    snapshot = big_snapshot(topics=1000, groups=300, partitions=12)
    messages = read_all(list(snapshot_frames(1, snapshot)))
    heaviest = 0
    for message in messages:
        if message.get("part") == "consumerLags":
            weight = sum(
                1 + sum(1 + len(t["partitionLags"]) for t in lag["topicLags"])
                for lag in message["items"]
            )
        else:
            weight = len(message.get("items", message.get("groups", [])))
        heaviest = max(heaviest, weight)
    # a piece closes once it reaches the bound: at most one item over it
    assert CHUNK_WEIGHT <= heaviest < CHUNK_WEIGHT + 1 + 1 + 12
    assert len(messages) > (1000 + 300 * 14 + 300) // CHUNK_WEIGHT
    assert assemble(1, messages) == snapshot


def test_a_frame_over_the_limit_is_refused_both_ways() -> None:
    with pytest.raises(FrameError, match="over"):
        frame({"blob": "x" * MAX_FRAME})
    reader = FrameReader()
    reader.feed(struct.pack(">I", MAX_FRAME + 1))
    with pytest.raises(FrameError, match="over"):
        reader.next()


def test_a_frame_that_is_not_a_json_object_is_refused() -> None:
    for body in (b"{nope", b"[1, 2]"):
        reader = FrameReader()
        reader.feed(struct.pack(">I", len(body)) + body)
        with pytest.raises(FrameError):
            reader.next()


def test_a_piece_that_does_not_fit_is_a_frame_error() -> None:
    assembler = Assembler(1)
    with pytest.raises(FrameError, match="does not fit"):
        assembler.add({"tick": 1, "part": "topicStats", "items": [{"name": 5}]})
    with pytest.raises(FrameError, match="does not fit"):
        assembler.add({"tick": 1, "part": "noSuchList", "items": []})


def test_a_half_frame_waits_for_the_rest() -> None:
    data = frame({"log": ["takhin_ws.metrics", 20, "hello"]})
    reader = FrameReader()
    reader.feed(data[:-1])
    assert reader.next() is None
    assert reader.pending == len(data) - 1
    reader.feed(data[-1:])
    assert reader.next() == orjson.loads(data[4:])
