"""The server's side of the collector process: start it, ask it, watch it, restart it.

:func:`open_collector` runs ``python -m takhin_ws.sources.kafka.process`` under
:func:`trio.run_process` in a nursery of its own, for the duration of an ``async with``
block (the ``kafka`` source's): killed when the block ends. :meth:`Collector.ask` sends
one tick request and waits for the answer, which a reader task puts back together piece
by piece (:mod:`takhin_ws.sources.kafka.pipe`) with a checkpoint between pieces, so
the event loop is never held by a big snapshot. Meanwhile:

- the process's log lines go to the server's loggers, its standard error to
  ``takhin_ws.metrics.collector`` (each line a warning: nothing is expected there);
- when it dies (an abort in librdkafka, a kill, a memory bound it ended itself at), the
  death is logged with its signal or exit code and the last lines of its standard error,
  every tick fails meanwhile (snapshots are stale), and a new process is started after
  :data:`RESTART_BACKOFF` seconds, doubled for every death in a row that gave no
  snapshot, up to :data:`RESTART_BACKOFF_MAX`;
- one that does not answer *hang_after* ticks in a row is killed (then restarted), once
  it answered a first tick or had :data:`FIRST_ANSWER_GRACE` s for it (a start can take
  more than two ticks on a loaded machine, and its successor would start no faster).

An answer that comes after its tick's deadline is not lost: the next tick takes it
rather than asking again, so a cluster slower than the interval gives a snapshot every
other tick instead of none.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Final

import trio

from ...core.metrics.snapshot import Snapshot
from .errors import KafkaIncompatibleError, KafkaSourceError
from .pipe import Assembler, FrameReader, frame

__all__ = ["RESTART_BACKOFF", "RESTART_BACKOFF_MAX", "Collector", "open_collector"]

logger: Final = logging.getLogger("takhin_ws.metrics")
#: The collector process's standard error, line by line.
stderr_logger: Final = logging.getLogger("takhin_ws.metrics.collector")

#: Seconds before a dead collector process is started again (the first time).
RESTART_BACKOFF: Final = 0.5
#: The longest wait before a restart (seconds).
RESTART_BACKOFF_MAX: Final = 30.0
#: Seconds entering waits for the first process to say it is ready.
START_TIMEOUT: Final = 30.0
#: Seconds a new process has to answer its first tick before ticks it leaves
#: unanswered count toward *hang_after*.
FIRST_ANSWER_GRACE: Final = 30.0
#: Bytes read from the process's pipes at once.
READ_SIZE: Final = 65536
#: Lines of its standard error kept for the message about its death, and their length.
STDERR_TAIL: Final = 8
MAX_LINE: Final = 2000

COMMAND: Final = (sys.executable, "-m", "takhin_ws.sources.kafka.process")


class _Tick:
    """One request and, in time, its answer."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.assembler = Assembler(number)
        self.done = trio.Event()
        self.snapshot: Snapshot | None = None
        self.error: KafkaSourceError | None = None

    def answer(self, snapshot: Snapshot | None, error: KafkaSourceError | None) -> None:
        if not self.done.is_set():
            self.snapshot, self.error = snapshot, error
            self.done.set()


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Collector:
    """A running collector process, as :func:`open_collector` gives it."""

    def __init__(
        self,
        settings: Mapping[str, Any],
        *,
        name: str,
        hang_after: int,
        command: Sequence[str],
        first_answer_grace: float = FIRST_ANSWER_GRACE,
    ) -> None:
        self.name = name
        self.hang_after = hang_after
        self.first_answer_grace = first_answer_grace
        #: When the live process started, and whether it has answered a tick yet.
        self._started_at = -math.inf
        self._answered_once = False
        self._settings = settings  # holds secrets: never logged
        self._command = list(command)
        self._process: trio.Process | None = None
        self._lock = trio.Lock()
        self._ticks = 0
        self._pending: _Tick | None = None
        self._unanswered = 0
        self._killed_because: str | None = None
        self._down = "starting"
        self._restart_at = -math.inf
        self._delay = RESTART_BACKOFF
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
        #: Set once the first process said it is ready, refused its settings, or died.
        self._first = trio.Event()
        self._refused: str | None = None
        #: Processes started (the first included) and deaths seen.
        self.starts = 0
        self.deaths = 0

    @property
    def pid(self) -> int | None:
        """The live process's id, ``None`` while there is none."""
        return None if self._process is None else self._process.pid

    # --- asking ---

    async def ask(self, budget: float, wait: float) -> Snapshot:
        """One tick's snapshot, the collector given *budget* seconds for it and the
        answer awaited *wait* seconds; raises :class:`KafkaSourceError` if it fails,
        does not come in time, or there is no live process."""
        async with self._lock:
            pending = self._pending  # an answer that came late is taken, not asked again
            answered = False
            try:
                with trio.move_on_after(wait):
                    if pending is None:
                        pending = await self._send(budget)
                    await pending.done.wait()
                answered = pending is not None and pending.done.is_set()
            finally:
                if not answered:  # (also when the caller gave up first)
                    self._unanswered += 1
                    self._hung()
            if pending is None or not answered:
                raise KafkaSourceError(
                    f"{self.name}: no answer within {wait:g} s "
                    f"({self._unanswered} tick{'s' if self._unanswered > 1 else ''} in a row)"
                )
            if self._pending is pending:
                self._pending = None
            self._unanswered = 0
            if pending.error is not None:
                raise pending.error
            assert pending.snapshot is not None
            return pending.snapshot

    async def _send(self, budget: float) -> _Tick:
        process = self._process
        if process is None or process.stdin is None:
            wait = max(self._restart_at - trio.current_time(), 0.0)
            later = f"; a new one starts in {wait:.1f} s" if wait else ""
            raise KafkaSourceError(f"{self.name} is not running ({self._down}){later}")
        self._ticks += 1
        pending = self._pending = _Tick(self._ticks)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            # (a process that died: the supervisor answers the tick with why)
            await process.stdin.send_all(frame({"tick": pending.number, "timeout": budget}))
        return pending

    def _hung(self) -> None:
        if self._unanswered < self.hang_after or self._process is None:
            return
        age = trio.current_time() - self._started_at
        if self._answered_once:
            self._killed_because = f"it did not answer {self._unanswered} ticks in a row"
        elif age >= self.first_answer_grace:
            self._killed_because = f"it answered no tick in the {age:.0f} s since it started"
        else:  # still starting: its first answer may be on its way
            return
        logger.warning(
            "%s (pid %d): %s; killing it", self.name, self._process.pid, self._killed_because
        )
        self._process.kill()

    # --- the process's life ---

    async def supervise(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the process, and a new one after each death (backoff); reports
        started once the first is spawned. Runs until cancelled (which kills it)."""
        while True:
            await self._life(task_status)
            task_status = trio.TASK_STATUS_IGNORED
            await trio.sleep_until(self._restart_at)

    def _schedule_restart(self, gave_snapshots: bool) -> float:
        """When the next process starts: the backoff doubles for every death in a row
        of a process that gave no snapshot. Returns the wait in seconds."""
        if gave_snapshots:
            self._delay = RESTART_BACKOFF
        delay = self._delay
        self._delay = min(delay * 2, RESTART_BACKOFF_MAX)
        self._restart_at = trio.current_time() + delay
        return delay

    async def _life(self, task_status: trio.TaskStatus[None]) -> None:
        """One process from start to death (then the next start is scheduled)."""
        self._stderr.clear()
        answered = [False]
        process: trio.Process | None = None
        try:
            async with trio.open_nursery() as nursery:
                try:
                    process = await nursery.start(
                        partial(
                            trio.run_process,
                            self._command,
                            stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            check=False,
                            deliver_cancel=_kill,
                        )
                    )
                except OSError as exc:
                    self._down = f"it could not be started: {exc}"
                    delay = self._schedule_restart(gave_snapshots=False)
                    logger.error(
                        "%s could not be started: %s; trying again in %.1f s", self.name, exc, delay
                    )
                    task_status.started()
                    return
                assert process is not None
                assert process.stdin is not None
                self.starts += 1
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await process.stdin.send_all(frame(self._settings))  # (died at once?)
                self._process = process
                self._unanswered = 0
                self._started_at = trio.current_time()
                self._answered_once = False
                task_status.started()
                nursery.start_soon(self._read_frames, process, answered)
                nursery.start_soon(self._read_stderr, process)
                code = await process.wait()
                self._process = None
                # the readers take what it wrote before it died, to the end of its pipes
        finally:
            self._process = None
            if process is not None:
                with trio.CancelScope(shield=True):
                    for stream in (process.stdin, process.stdout, process.stderr):
                        if stream is not None:
                            await stream.aclose()
        self.deaths += 1
        why = _describe_exit(code)
        killed, self._killed_because = self._killed_because, None
        if killed is not None:
            why += f" ({killed})"
        tail = " | ".join(self._stderr)
        self._down = f"it died: {why}"
        delay = self._schedule_restart(answered[0])
        logger.warning(
            "%s (pid %d) died: %s%s; snapshots are stale until a new one, started in %.1f s, "
            "answers",
            self.name,
            process.pid,
            why,
            f"; its last words: {tail}" if tail else "",
            delay,
        )
        if self._pending is not None:
            self._pending.answer(None, KafkaSourceError(f"{self.name} died: {why}"))
            self._pending = None
        self._first.set()

    async def _read_frames(self, process: trio.Process, answered: list[bool]) -> None:
        assert process.stdout is not None
        reader = FrameReader()
        try:
            while data := await process.stdout.receive_some(READ_SIZE):
                reader.feed(data)
                while (message := reader.next()) is not None:
                    if self._take(message):
                        answered[0] = True
                    await trio.lowlevel.checkpoint()  # one piece at a time
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # its end: the supervisor says why
        except Exception as exc:  # FrameError, a frame of the wrong shape: a bug
            self._killed_because = f"it sent what the server cannot read: {exc!r}"[:MAX_LINE]
            logger.error(
                "%s (pid %d): %s; killing it", self.name, process.pid, self._killed_because
            )
            process.kill()

    def _take(self, message: Mapping[str, Any]) -> bool:
        """Handle one frame; whether it completed a snapshot."""
        if "ready" in message:
            self._first.set()
            return False
        if "fatal" in message:
            self._refused = str(message["fatal"])
            self._first.set()
            return False
        log = message.get("log")
        if log is not None:
            name, level, text = log
            target = name if str(name).startswith("takhin_ws") else stderr_logger.name
            logging.getLogger(target).log(int(level), "%s", text)
            return False
        if "tick" in message:
            self._answered_once = True  # (even late: it works)
        pending = self._pending
        if pending is None or message.get("tick") != pending.number:
            return False  # an answer nobody waits for any more
        if "error" in message:
            kind = KafkaIncompatibleError if message.get("incompatible") else KafkaSourceError
            pending.answer(None, kind(str(message["error"])))
            return False
        snapshot = pending.assembler.add(message)
        if snapshot is None:
            return False
        pending.answer(snapshot, None)
        return True

    async def _read_stderr(self, process: trio.Process) -> None:
        assert process.stderr is not None
        partial_line = b""
        try:
            while data := await process.stderr.receive_some(READ_SIZE):
                *lines, partial_line = (partial_line + data).split(b"\n")
                partial_line = partial_line[:MAX_LINE]
                for line in lines:
                    self._stderr_line(line)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        if partial_line:
            self._stderr_line(partial_line)

    def _stderr_line(self, raw: bytes) -> None:
        line = raw.decode(errors="replace").rstrip()[:MAX_LINE]
        if line:
            self._stderr.append(line)
            stderr_logger.warning("%s: %s", self.name, line)


async def _kill(process: trio.Process) -> None:
    """How a cancelled collector process ends: at once (it holds nothing to save)."""
    process.kill()


@asynccontextmanager
async def open_collector(
    settings: Mapping[str, Any],
    *,
    name: str,
    hang_after: int,
    command: Sequence[str] = COMMAND,
    first_answer_grace: float = FIRST_ANSWER_GRACE,
) -> AsyncIterator[Collector]:
    """A collector process for the duration of the block, started with *settings* as
    its first frame, restarted when it dies, killed at the end. Entering waits (up to
    :data:`START_TIMEOUT` s) for the first process to be ready, and raises
    :class:`ValueError` if it refused its settings (a bad client property)."""
    collector = Collector(settings, name=name, hang_after=hang_after, command=command)
    collector.first_answer_grace = first_answer_grace
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(collector.supervise)
            with trio.move_on_after(START_TIMEOUT):
                await collector._first.wait()
            try:
                if collector._refused is None:
                    yield collector
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the block's own error comes out as it went in
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    if collector._refused is not None:
        raise ValueError(collector._refused)
