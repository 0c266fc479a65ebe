"""The server's side of the collector process (``sources/kafka/worker.py``), against a real
child process that plays every way a collector can behave (``fake_collector.py``):
answering, answering late, hanging, writing garbage, refusing its settings, aborting."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from takhin_ws.sources.kafka.errors import KafkaSourceError
from takhin_ws.sources.kafka.worker import RESTART_BACKOFF, Collector, open_collector

FAKE = (sys.executable, str(Path(__file__).with_name("fake_collector.py")))
#: Bound on waiting for a process to start, die or be started again.
WAIT = 30.0
NAME = "test collector"


@asynccontextmanager
async def collector(behave: str, hang_after: int = 2, **settings: Any) -> AsyncIterator[Collector]:
    async with open_collector(
        {"behave": behave, **settings}, name=NAME, hang_after=hang_after, command=FAKE
    ) as running:
        yield running


async def until_started(running: Collector, starts: int) -> None:
    with trio.fail_after(WAIT):
        while running.starts < starts or running.pid is None:
            await trio.sleep(0.05)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_answers_come_back_and_its_log_lines_reach_the_servers_loggers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="takhin_ws.metrics")
    async with collector("ok") as running:
        first = await running.ask(5.0, 10.0)
        second = await running.ask(5.0, 10.0)
        pid = running.pid
    assert (first.metrics.timestamp, second.metrics.timestamp) == (1, 2)
    assert [r.getMessage() for r in caplog.records if "tick" in r.getMessage()] == [
        "tick 1",
        "tick 2",
    ]
    assert pid is not None
    assert gone(pid)  # killed (and reaped) when the block ended


async def test_a_late_answer_is_taken_by_the_next_tick_without_asking_again() -> None:
    async with collector("ok", delay=1.0) as running:
        with pytest.raises(KafkaSourceError, match=r"no answer within 0\.2 s \(1 tick in a row\)"):
            await running.ask(1.0, 0.2)
        snapshot = await running.ask(1.0, 10.0)
        assert snapshot.metrics.timestamp == 1  # the first request's answer
        assert (await running.ask(1.0, 10.0)).metrics.timestamp == 2


async def test_a_process_that_does_not_answer_is_killed_and_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with collector("hang", hang_after=2, answers=1) as running:
        first = running.pid
        await running.ask(1.0, 10.0)  # it answered once: it has started
        for _ in range(2):
            with pytest.raises(KafkaSourceError, match="no answer"):
                await running.ask(0.1, 0.2)
        await until_started(running, 2)
        assert running.pid != first
    (death,) = [r for r in caplog.records if "died" in r.getMessage()]
    assert death.levelno == logging.WARNING
    assert f"(pid {first}) died: killed by signal SIGKILL (it did not answer 2 ticks in a row)" in (
        death.getMessage()
    )


async def test_a_process_still_starting_is_not_killed_for_the_ticks_it_has_not_answered_yet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its first answer comes after more than *hang_after* ticks (a start on a loaded
    machine): it is awaited, not killed (its successor would start no faster)."""
    async with collector("ok", hang_after=2, start_delay=1.5) as running:
        first = running.pid
        for _ in range(4):
            with pytest.raises(KafkaSourceError, match="no answer"):
                await running.ask(0.1, 0.2)
        snapshot = await running.ask(1.0, 10.0)  # the late first answer
        assert running.pid == first
        assert running.starts == 1
    assert snapshot.metrics.timestamp == 1
    assert not [r for r in caplog.records if "died" in r.getMessage()]


async def test_a_process_that_never_answers_its_first_tick_is_killed_after_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with collector("hang", hang_after=2) as running:
        running.first_answer_grace = 1.0
        first = running.pid
        for _ in range(2):
            with pytest.raises(KafkaSourceError, match="no answer"):
                await running.ask(0.1, 0.2)
        assert running.pid == first  # still within its grace
        await trio.sleep(1.0)
        with pytest.raises(KafkaSourceError, match="no answer"):
            await running.ask(0.1, 0.2)
        await until_started(running, 2)
    (death,) = [r for r in caplog.records if "died" in r.getMessage()]
    assert f"(pid {first}) died: killed by signal SIGKILL (it answered no tick in the " in (
        death.getMessage()
    )


async def test_a_process_that_sends_garbage_is_killed_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with collector("garbage") as running:
        with pytest.raises(KafkaSourceError, match="died: killed by signal SIGKILL"):
            await running.ask(1.0, 10.0)
    assert "it sent what the server cannot read" in caplog.text


async def test_refused_settings_are_a_value_error_on_entering() -> None:
    with pytest.raises(ValueError, match=r"config refused: no\.such\.property"):
        async with collector("refuse"):
            pytest.fail("entered")


async def test_an_abort_is_logged_with_its_signal_and_last_words_then_restarted_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with collector("abort") as running:
        with pytest.raises(
            KafkaSourceError, match=r"not running \(it died: killed by signal SIGABRT\)"
        ):
            await running.ask(1.0, 1.0)
        await until_started(running, 3)
    deaths = [r.getMessage() for r in caplog.records if "died" in r.getMessage()]
    assert len(deaths) >= 2
    for message in deaths:
        assert "killed by signal SIGABRT" in message
        assert "its last words: assertion failed: eonce->refcnt > 0" in message
    # no snapshot in between: every death doubles the wait
    waits = [float(re.search(r"started in ([0-9.]+) s", m).group(1)) for m in deaths]  # type: ignore[union-attr]
    assert waits[:2] == [RESTART_BACKOFF, RESTART_BACKOFF * 2]
    stderr = [r for r in caplog.records if r.name == "takhin_ws.metrics.collector"]
    assert stderr
    assert stderr[0].levelno == logging.WARNING
