"""What a 503 of ``POST /api/events`` says about its events (issue 22 item 6), without
sockets: published before the failure, then not published or outcome unknown."""

from __future__ import annotations

import orjson
import pytest

from takhin_ws.ingest.bus import BusUnavailableError, Published
from takhin_ws.ingest.ingress import EventIngress
from takhin_ws.net.http.routes import refusal, unpublished
from takhin_ws.wire.http import HttpError
from takhin_ws.wire.messages import Payload


class FailingBus:
    """Takes *good* messages, then fails (outcome unknown or not)."""

    def __init__(self, good: int, *, unknown: bool) -> None:
        self.good = good
        self.unknown = unknown
        self.sent: list[Payload] = []

    @property
    def healthy(self) -> bool:
        return True

    @property
    def unavailable(self) -> str | None:
        return None

    def publish_nowait(
        self, channel: str, payload: Payload, *, stale: bool | None = None
    ) -> Published:
        raise BusUnavailableError("shared")

    async def publish(
        self, channel: str, payload: Payload, *, stale: bool | None = None
    ) -> Published:
        if len(self.sent) == self.good:
            raise BusUnavailableError(
                "Redis at r:6379/0: no answer in time", outcome_unknown=self.unknown
            )
        self.sent.append(payload)
        return Published(payload.TYPE, "topics", len(self.sent), "e")

    async def run(self, *, task_status: object = None) -> None:  # pragma: no cover
        raise NotImplementedError


def body(count: int) -> bytes:
    events = [
        {"type": "topic_created", "data": {"name": f"t{i}", "partitions": 1}} for i in range(count)
    ]
    return orjson.dumps(events)


async def failure(good: int, count: int, *, unknown: bool) -> BusUnavailableError:
    ingress = EventIngress(FailingBus(good, unknown=unknown))
    with pytest.raises(BusUnavailableError) as info:
        await ingress.publish_body(body(count))
    return info.value


async def test_a_batch_failure_lists_what_was_published_before_it() -> None:
    exc = await failure(2, 5, unknown=True)
    assert [p.offset for p in exc.published] == [1, 2]
    assert exc.outcome_unknown
    exc = await failure(0, 1, unknown=False)
    assert exc.published == ()
    assert not exc.outcome_unknown


def answer_of(exc: BusUnavailableError) -> dict[str, object]:
    http = HttpError(503, unpublished(exc), details={"outcome": "x"})
    error = orjson.loads(refusal(http).body)["error"]
    assert isinstance(error, dict)
    return error


async def test_the_words_of_each_case() -> None:
    where = "event bus unavailable: Redis at r:6379/0: no answer in time; "
    assert unpublished(await failure(0, 1, unknown=False)) == where + "nothing was published"
    assert unpublished(await failure(2, 3, unknown=False)) == (
        where + "the first 2 event(s) were published (see accepted); the rest were not published"
    )
    assert unpublished(await failure(0, 1, unknown=True)) == (
        where + "outcome unknown: the next event may have been published (the bus may have "
        "taken it before the failure), any after it were not; a retry may publish it twice"
    )
    assert unpublished(await failure(1, 3, unknown=True)).startswith(
        where + "the first 1 event(s) were published (see accepted); outcome unknown: "
    )
    error = answer_of(await failure(0, 1, unknown=True))
    assert error["outcome"] == "x"  # the details go into the error object
    assert error["status"] == 503
