"""Where the steps of Trio tasks run: an instrument that names each step by its task and
the code locations it ran between, for :mod:`benchmarks.tick_step`.

A step of a task runs from where the task was suspended to where it is suspended next:
:func:`suspended_at` follows a task's coroutine down its awaits to the innermost frame
outside Trio (and into a plain generator that frame drives a piece per step, as
``takhin_ws.ingest.bus.in_steps`` does). :class:`PlaceWatch` keeps, per place (task,
from, to), every step's wall time, the longest in the loop thread's CPU time and the
garbage collection inside the longest (:class:`GcClock`).
"""

from __future__ import annotations

import time
import types
from typing import Any

import attrs
import trio

from benchmarks.publish_step import GcPause, StepWatch

#: Path parts after which a file name is shown (the rest is the machine's).
ROOTS = ("/src/", "/site-packages/", "/benchmarks/", "/tests/", "/lib/python3")


def short(filename: str) -> str:
    for root in ROOTS:
        at = filename.rfind(root)
        if at >= 0:
            return filename[at + len(root) :]
    return filename


def where(frame: types.FrameType) -> str:
    return f"{short(frame.f_code.co_filename)}:{frame.f_lineno} ({frame.f_code.co_name})"


def driven(frame: types.FrameType) -> types.FrameType | None:
    """The innermost frame of a suspended generator *frame* drives (``in_steps``
    runs a plain generator a piece per step: where that one stands says more)."""
    found = None
    for value in frame.f_locals.values():
        while isinstance(value, types.GeneratorType) and value.gi_frame is not None:
            found = value.gi_frame
            value = value.gi_yieldfrom
    return found


def suspended_at(task: trio.lowlevel.Task) -> str:
    """``file:line (function)`` of the innermost frame outside Trio at which *task* is
    suspended (following its coroutine's awaits down, then a generator it drives),
    ``returned`` once it is done."""
    innermost: types.FrameType | None = None
    awaited: Any = task.coro
    while awaited is not None:
        frame: types.FrameType | None = getattr(awaited, "cr_frame", None) or getattr(
            awaited, "gi_frame", None
        )
        if frame is None:
            break
        filename = frame.f_code.co_filename
        if "/trio/" not in filename and "/outcome/" not in filename:
            innermost = frame
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    if innermost is None:
        return "returned"
    inner = driven(innermost)
    return where(innermost) if inner is None else f"{where(inner)} via {innermost.f_code.co_name}"


@attrs.define
class Place:
    """The steps that ran between the same two locations of the same task."""

    steps: int = 0
    walls: list[float] = attrs.Factory(list)
    longest_cpu: float = 0.0
    longest_gc: float = 0.0  # garbage collection inside the longest one (wall)
    tick_longest: int = 0  # ticks whose longest step this was


class GcClock(GcPause):
    """:class:`GcPause` that also adds up every pause (``total``, seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        super().__call__(phase, info)
        if phase != "start":
            self.total += time.perf_counter() - self._began


class PlaceWatch(StepWatch):
    """:class:`StepWatch` that also names every step by where it ran (task, from, to)
    and keeps, while ``recording``, the steps of each place; ``longest_place`` is the
    place of the longest step since :meth:`reset`."""

    def __init__(self, gc_clock: GcClock) -> None:
        super().__init__()
        self.gc_clock = gc_clock
        self.places: dict[tuple[str, str, str], Place] = {}
        self.recording = False
        self.longest_place: tuple[str, str, str] | None = None
        self.longest_gc = 0.0  # garbage collection inside the longest step (wall)
        self._where: dict[trio.lowlevel.Task, str] = {}
        self._gc_began = 0.0

    def reset(self, watched: trio.lowlevel.Task | None = None) -> None:
        super().reset(watched)
        self.longest_place, self.longest_gc = None, 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._gc_began = self.gc_clock.total
        super().before_task_step(task)

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        began, self._began = self._began, None
        if task is self.watched:
            self.steps += 1
        ended = suspended_at(task)  # after the times: not part of the step
        start = self._where.get(task, "start")
        self._where[task] = ended
        if began is None:  # the instrument was added during this step
            return
        wall, cpu = now - began[0], cpu - began[1]
        place = (task.name.rsplit(".", 1)[-1], start, ended)
        collected = self.gc_clock.total - self._gc_began
        if wall >= self.longest:
            self.longest, self.longest_place, self.longest_gc = wall, place, collected
        self.longest_cpu = max(self.longest_cpu, cpu)
        if self.recording:
            seen = self.places.setdefault(place, Place())
            seen.steps += 1
            if wall > max(seen.walls, default=0.0):
                seen.longest_gc = collected
            seen.walls.append(wall)
            seen.longest_cpu = max(seen.longest_cpu, cpu)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self._where.pop(task, None)
