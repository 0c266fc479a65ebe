"""The lag insight on a real Kafka broker, end to end: an independent producer at a known
rate, a consumer group the test pauses, throttles, rewinds and closes, ``--source kafka``
in the server, and WebSocket clients reading what every dashboard gets.

Every wait is a condition with a generous deadline; the one comparison with the clock
is the issue's own: a paused group's ``lagSeconds`` within 2 s + one tick of the time
since it paused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketConnection

from clients import recv_json, ws_connect
from conftest import wait_ready
from kafka_broker import KafkaBroker, create_topic, unique
from kafka_clients import PacedProducer, SteeredConsumer, steered_consumer
from takhin_ws import Settings, open_server

pytestmark = pytest.mark.slow

INTERVAL = 1.0
WINDOW = 3
RATE = 100.0  # messages a second, over 3 partitions
PARTITIONS = 3
#: Bound on waiting for a state to show (a rebalance, a few windows).
WAIT = 90.0
#: How far the issue lets lagSeconds be from the truth: 2 s + one tick.
TOLERANCE = 2.0 + INTERVAL


class Watch:
    """What one client has seen of group *group*: (receive time, consumerLags entry)
    per snapshot, and its group_status events."""

    def __init__(self, ws: WebSocketConnection, group: str) -> None:
        self.ws = ws
        self.group = group
        self.lags: list[tuple[float, dict[str, Any]]] = []
        self.statuses: list[dict[str, Any]] = []

    async def until(self, done: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """Read until the group's latest entry satisfies *done*; that entry."""
        with trio.fail_after(WAIT):
            while True:
                message = await recv_json(self.ws, timeout=WAIT)
                if message["type"] == "group_status" and message["data"]["groupId"] == self.group:
                    self.statuses.append(message)
                if message["type"] != "metrics" or message.get("stale"):
                    continue
                found = [c for c in message["data"]["consumerLags"] if c["groupId"] == self.group]
                if found:
                    entry: dict[str, Any] = found[0]
                    self.lags.append((time.time(), entry))
                    if done(entry):
                        return entry
        raise AssertionError(f"never {what}")  # pragma: no cover - fail_after raises first

    async def event(self, status: str) -> dict[str, Any]:
        with trio.fail_after(WAIT):
            while not [s for s in self.statuses if s["data"]["status"] == status]:
                await self.until(lambda _: True, f"an event {status}")
        return next(s for s in self.statuses if s["data"]["status"] == status)


async def run(fn: Callable[..., Any], *args: Any) -> Any:
    return await trio.to_thread.run_sync(lambda: fn(*args))


async def test_a_group_paused_resumed_rewound_and_closed(kafka: KafkaBroker) -> None:
    topic, group = unique("paced"), unique("steered")
    await run(create_topic, kafka.bootstrap, topic, PARTITIONS)
    settings = Settings(
        port=0,
        interval=INTERVAL,
        source="kafka",
        kafka_bootstrap=kafka.bootstrap,
        lag_window=WINDOW,
    )
    with (
        PacedProducer(kafka.bootstrap, topic, PARTITIONS, RATE),
        steered_consumer(kafka.bootstrap, group, topic) as consumer,
    ):
        async with open_server(settings) as server:
            await wait_ready(server)
            async with ws_connect(server.ws_url + "?channels=metrics,groups") as ws:
                await check_the_story(server.ws_url, ws, consumer, group)


async def check_the_story(
    url: str, ws: WebSocketConnection, consumer: SteeredConsumer, group: str
) -> None:
    watch = Watch(ws, group)
    # 1. keeping up: OK, lag in seconds small
    await watch.until(lambda c: c["status"] == "OK" and c["totalLag"] < RATE, "keeping up")

    # 2. paused, still polling (still a member): a second behind per second, STALLED
    await run(consumer.pause)
    paused_at = time.time()
    stalled = await watch.until(lambda c: c["status"] == "STALLED", "STALLED")
    await watch.until(lambda c: (c["lagSeconds"] or 0) > 4 * TOLERANCE, "far behind")
    behind = [(t - paused_at, c["lagSeconds"]) for t, c in watch.lags if t - paused_at > 1.0]
    assert behind
    assert all(ls is not None for _, ls in behind), behind
    for truth, seconds in behind:
        assert abs(seconds - truth) <= TOLERANCE, (truth, seconds)
    assert stalled["drainSeconds"] is None  # not shrinking
    (announced,) = [s for s in watch.statuses if s["data"]["status"] == "STALLED"]
    assert announced["channel"] == "groups"
    assert isinstance(announced["offset"], int)

    # a second client notes where the groups stream is, then goes away
    async with ws_connect(url + "?channels=groups") as other:
        welcome = await recv_json(other)
    since, epoch = welcome["data"]["offsets"]["groups"], welcome["data"]["epoch"]

    # 3. resumed, reading faster than the producers: catching up, a finite drain estimate
    await run(consumer.resume, 1.6 * RATE)
    draining = await watch.until(
        lambda c: (
            c["status"] in ("LAGGING", "OK")
            and c["drainSeconds"] is not None
            and c["drainSeconds"] > 0
        ),
        "draining",
    )
    assert draining["drainSeconds"] < 3600
    await run(consumer.resume, None)  # at full speed: caught up
    await watch.until(lambda c: c["status"] == "OK" and c["totalLag"] < RATE, "back to OK")

    # 4. the committed offsets reset backwards: REWOUND, and an event
    await run(consumer.resume, 0.5 * RATE)  # slowly, so the offsets stay back a while
    await run(consumer.rewind, 500)
    await watch.until(lambda c: c["status"] == "REWOUND", "REWOUND")
    rewound = await watch.event("REWOUND")
    assert "went back" in rewound["data"]["reason"]

    # 5. closed with lag: no members, STOPPED
    await run(consumer.close)
    await watch.until(lambda c: c["status"] == "STOPPED", "STOPPED")
    stopped = await watch.event("STOPPED")
    assert stopped["offset"] > rewound["offset"]

    # 6. the client that went away resumes and gets the statuses it missed, in order
    resume = f"{url}?channels=group:{group}&since=groups:{since}&epoch={epoch}"
    async with ws_connect(resume) as again:
        assert (await recv_json(again))["type"] == "welcome"
        subscribed = await recv_json(again)
        assert subscribed["data"]["recovered"] == {"groups": True}
        replayed: list[dict[str, Any]] = []
        with trio.fail_after(WAIT):
            while not replayed or replayed[-1]["offset"] < stopped["offset"]:
                message = await recv_json(again)
                if message["type"] == "group_status":
                    replayed.append(message)
    statuses = [m["data"]["status"] for m in replayed]
    assert "REWOUND" in statuses, statuses
    assert statuses[-1] == "STOPPED", statuses
    assert [m["offset"] for m in replayed] == sorted(m["offset"] for m in replayed)
    assert all(m["data"]["groupId"] == group for m in replayed)
