"""The publish-step benchmark of docs/benchmarks.md runs and measures what it says, on a
small snapshot (no timing asserted: the figures are the benchmark's business)."""

from __future__ import annotations

import pytest
import trio
from benchmarks.publish_step import CLIENT_SETS, StepWatch, add_clients, drain, measure
from benchmarks.wire import snapshot

from takhin_ws import Hub
from takhin_ws.ingest.bus import MemoryBus

#: The WebSocket frame header's RSV1 bit: the message is compressed (RFC 7692).
RSV1 = 0x40


@pytest.mark.parametrize("name", list(CLIENT_SETS))
def test_every_client_set_gets_one_message_per_client_and_publish(name: str) -> None:
    result = trio.run(measure, "30x3x8", name, 2, 3)
    clients = 2 * len(CLIENT_SETS[name])
    assert result["set"] == name
    assert result["clients"] == clients
    assert result["publishes"] == 3
    assert result["delivered"] == 3 * clients
    assert result["json_bytes"] > 0
    assert result["steps"]["median"] >= 1  # counted: the publishing task's own steps
    for key in ("step_ms", "cpu_ms", "wall_ms", "late_ms", "gc_ms"):
        assert result[key]["max"] >= result[key]["median"] >= 0.0


def test_the_deflate_clients_receive_compressed_frames_and_the_dashboard_its_view() -> None:
    async def main() -> None:
        bus = MemoryBus(Hub())
        deflate, dashboard = (add_clients(bus.hub, (kind,), 1) for kind in CLIENT_SETS["both"])
        await bus.publish("metrics", snapshot(30, 3, 8))
        (full,) = deflate[0].queue.get_batch_nowait()
        (lean,) = dashboard[0].queue.get_batch_nowait()
        assert full.frame[0] & RSV1
        assert lean.frame[0] & RSV1
        assert (full.route, lean.route) == ("metrics", "metrics:lean")
        assert drain(deflate + dashboard) == 0

    trio.run(main)


def test_the_step_watch_times_only_whole_steps_and_counts_the_watched_task() -> None:
    async def main() -> tuple[float, int]:
        watch = StepWatch()
        trio.lowlevel.add_instrument(watch)  # during a step: that one is not timed
        try:
            await trio.lowlevel.checkpoint()
            first = watch.longest
            watch.reset(trio.lowlevel.current_task())
            for _ in range(3):
                await trio.lowlevel.checkpoint()
            return first, watch.steps
        finally:
            trio.lowlevel.remove_instrument(watch)

    first, steps = trio.run(main)
    assert first < 1.0  # not the time since the watch was made, nor since the epoch
    assert steps == 3
