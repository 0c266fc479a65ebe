"""Hostile load (issue 21): what one client, view or batch can make the server spend.

Six scenarios, each against a real ``python -m takhin_ws`` (a child process pinned to
core 0) with independent clients (raw-socket WebSocket clients written here, httpx),
each reproducing one measurement of issue 21:

- ``slow-readers``: clients reading 100 KB/s each (one with permessage-deflate) from a
  10,000-topic cluster: server RSS over time (flat, or growing by how much per second).
- ``steady-reader``: one client reading a steady 10 KB/s from a 1,000-topic cluster:
  is it kept, or dropped as stalled (and after how long)? With its kernel's default
  receive buffer at the default write deadline (30 s) and at the former default 10 s,
  and with a 16 KiB one at the default.
- ``views``: 400 clients each connecting with 256 distinct ``metrics:group:<id>`` of
  groups that do not exist (then 8 each): RSS, server CPU, ticks and pings.
- ``churn``: 1 and 3 clients alternating subscribe/unsubscribe of one topic view at
  the command rate on a 10,000-topic cluster (an unknown topic, then an existing one),
  after a baseline with nobody churning: server CPU, ticks and pings.
- ``retained``: events posted with ``--history-size 100000``: RSS per retained event
  against its JSON size.
- ``batch``: with 500 subscribers, pings with no batch (the baseline), one 14,000-event
  ``POST /api/events`` and its retry with the same ``Idempotency-Key``, a batch of
  1,000 (the default limit) and its retry, and a body of 1,000,000 one-byte chunks:
  status, time to answer, server CPU, everyone else's pings and ticks meanwhile.

Ticks and pings come from a prober in a process of its own (``ProbeProcess``: a client
reading ``metrics`` and sending a JSON ping every 0.05-0.5 s), so the harness's own
load does not delay it.

``python -m benchmarks.hostile --help`` lists the flags; ``--short`` runs every scenario
in about a third of the time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from functools import partial
from typing import Any, Final

import httpx
import trio

from benchmarks.hostile_clients import (
    ProbeProcess,
    RawWs,
    ServerProcess,
    discard,
    paced_reader,
    pin,
    server,
)

PUBLISH_KEY: Final = "hostile-publish-key"
RSS_SAMPLE_EVERY: Final = 5.0
#: The server's default ``--command-rate``: what a churning client may sustain.
COMMAND_RATE: Final = 50.0
#: Seconds of pings measured before the batches (what a ping costs without one).
BASELINE_SECONDS: Final = 10.0
#: How long the batch scenario waits for an answer (issue 21 measured 58.7 s).
BATCH_TIMEOUT: Final = 1200.0
#: How long each steady reader reads (``--steady-seconds``).
STEADY_SECONDS: Final = 40.0

Figures = dict[str, Any]


async def _rss_series(srv: ServerProcess, until: float, out: list[tuple[float, float]]) -> None:
    start = time.monotonic()
    while time.monotonic() < until:
        out.append((time.monotonic() - start, srv.rss_mib()))
        await trio.sleep(min(RSS_SAMPLE_EVERY, max(until - time.monotonic(), 0)))
    out.append((time.monotonic() - start, srv.rss_mib()))


def _slope(series: list[tuple[float, float]]) -> float:
    """MiB/s over the second half of *series* (least squares)."""
    half = series[len(series) // 2 :]
    if len(half) < 2:
        return 0.0
    return float(statistics.linear_regression([t for t, _ in half], [r for _, r in half]).slope)


# --- 1. slow readers ---


async def slow_readers(seconds: float, clients: int = 5, rate: float = 100_000) -> Figures:
    with server(["--synthetic-topics", "10000"]) as srv:
        await trio.sleep(3)  # the first ticks
        series: list[tuple[float, float]] = []
        readers = [
            await RawWs.connect(srv.port, deflate=(i == clients - 1)) for i in range(clients)
        ]
        until = time.monotonic() + seconds
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_rss_series, srv, until, series)
            for ws in readers:
                nursery.start_soon(partial(paced_reader, ws, rate, until, ping_every=20.0))
        dropped = sum(ws.closed_at is not None for ws in readers)
        return {
            "clients": clients,
            "rate_bytes_s": rate,
            "seconds": seconds,
            "rss_start_mib": series[0][1],
            "rss_end_mib": series[-1][1],
            "rss_max_mib": max(r for _, r in series),
            "rss_slope_second_half_mib_s": _slope(series),
            "bytes_read_per_client": [ws.received for ws in readers],
            "dropped": dropped,
        }


# --- 2. a steady 10 KB/s reader ---


async def steady_reader(seconds: float, rate: float = 10_000) -> Figures:
    """The reader with its kernel's default receive buffer (128 KiB, which it reads
    too slowly for autotuning to grow it), at the default write deadline (30 s) and at
    the former default 10 s, then with a 16 KiB receive buffer at the default."""
    return {
        "default": await _steady(seconds, rate, [], None),
        "write_timeout_10": await _steady(seconds, rate, ["--write-timeout", "10"], None),
        "rcvbuf_16k": await _steady(seconds, rate, [], 16 * 1024),
    }


async def _steady(seconds: float, rate: float, args: list[str], rcvbuf: int | None) -> Figures:
    with server(["--synthetic-topics", "1000", *args]) as srv:
        await trio.sleep(3)
        ws = await RawWs.connect(srv.port, rcvbuf=rcvbuf)
        start = time.monotonic()
        until = start + seconds
        dropped: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_drop, srv, until, dropped)
            await paced_reader(ws, rate, until, ping_every=20.0)
        return {
            "rate_bytes_s": rate,
            "seconds": seconds,
            "kept": not dropped,
            "dropped_after_s": dropped[0] - start if dropped else None,
            "bytes_read": ws.received,
            "server_log_tail": srv.log.decode(errors="replace")[-300:],
        }


async def _watch_drop(srv: ServerProcess, until: float, dropped: list[float]) -> None:
    """When the server unregisters its only client (the client itself may read what its
    kernel still buffers for a while before it sees the end)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.port}") as http:
        while time.monotonic() < until and not dropped:
            text = (await http.get("/metrics")).text
            if "\ntakhin_ws_clients 0.0\n" in text:
                dropped.append(time.monotonic())
            await trio.sleep(0.5)


# --- 3. views of groups that do not exist ---


async def views(seconds: float, clients: int = 400) -> Figures:
    """Each attacker connects with ``?channels=`` naming its own unknown group views:
    256 each (the issue's figure), then 8 (the default per-connection limit)."""
    return {f"{n}_per_client": await _views(seconds, clients, n) for n in (256, 8)}


async def _views(seconds: float, clients: int, per_client: int) -> Figures:
    with server([]) as srv:
        await trio.sleep(3)
        rss_before = srv.rss_mib()
        probe = ProbeProcess()
        async with trio.open_nursery() as nursery:
            await nursery.start(probe.run, srv.port, "metrics", 0.2)
            cpu_before = srv.cpu()
            start = time.monotonic()
            attackers: list[RawWs] = []
            refused: list[str] = []
            for i in range(clients):
                ids = ",".join(f"metrics:group:ghost-{i}-{j}" for j in range(per_client))
                try:
                    attackers.append(await RawWs.connect(srv.port, f"channels={ids}"))
                except ConnectionError as exc:
                    refused.append(str(exc))
            until = time.monotonic() + seconds
            for ws in attackers:
                nursery.start_soon(discard, ws, until)
            await trio.sleep(seconds)
            end = time.monotonic()
            figures = {
                "clients": clients,
                "views_per_client": per_client,
                "seconds": seconds,
                "connects_refused": len(refused),
                "refusal": refused[0] if refused else None,
                "rss_before_mib": rss_before,
                "rss_after_mib": srv.rss_mib(),
                "server_cpu_pct": 100 * (srv.cpu() - cpu_before) / (end - start),
                **probe.figures(start, end),
            }
            nursery.cancel_scope.cancel()
        return figures


# --- 4. subscribe/unsubscribe churn ---


async def churn(seconds: float) -> Figures:
    """1 and 3 clients churning an unknown topic's view, then an existing topic's."""
    out: Figures = {"seconds": seconds}
    with server(["--synthetic-topics", "10000"]) as srv:
        await trio.sleep(3)
        existing = await _first_topic(srv.port)
        out["baseline"] = await _churn(srv, existing, 0, seconds)  # nobody churning
        for label, channel in (("unknown", "metrics:topic:nope"), ("existing", existing)):
            for churners in (1, 3):
                out[f"{label}_x{churners}"] = await _churn(srv, channel, churners, seconds)
    return out


async def _churn(srv: ServerProcess, channel: str, churners: int, seconds: float) -> Figures:
    conns = [await RawWs.connect(srv.port, "channels=topics") for _ in range(churners)]
    probe = ProbeProcess()
    async with trio.open_nursery() as nursery:
        # the prober reads `metrics`, no view: a view subscriber would keep the views busy
        await nursery.start(probe.run, srv.port, "metrics", 0.2)
        cpu_before = srv.cpu()
        start = time.monotonic()
        until = start + seconds
        async with trio.open_nursery() as churning:
            churning.start_soon(trio.sleep, seconds)  # with nobody churning too
            for ws in conns:
                churning.start_soon(_churn_one, ws, channel, until)
        end = time.monotonic()
        figures = {
            "channel": channel,
            "server_cpu_pct": 100 * (srv.cpu() - cpu_before) / (end - start),
            **probe.figures(start, end),
        }
        nursery.cancel_scope.cancel()
    for ws in conns:
        await ws.aclose()
    return figures


async def _first_topic(port: int) -> str:
    ws = await RawWs.connect(port, "channels=metrics:lean")
    try:
        while True:
            _, payload = await ws.read_frame()
            if payload.startswith(b'{"type":"metrics"'):
                name = json.loads(payload)["data"]["topicStats"][0]["name"]
                return f"metrics:topic:{name}"
    finally:
        await ws.aclose()


async def _churn_one(ws: RawWs, channel: str, until: float) -> None:
    """Subscribe, unsubscribe, ... at the server's sustained command rate (50/s by
    default; a faster sender would only be throttled), reading everything it is sent."""
    sub = json.dumps({"type": "subscribe", "data": channel}).encode()
    unsub = json.dumps({"type": "unsubscribe", "data": channel}).encode()
    async with trio.open_nursery() as nursery:
        # no pings of its own: its commands keep the heartbeat happy (one sender per socket)
        nursery.start_soon(partial(discard, ws, until, ping_every=float("inf")))
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while time.monotonic() < until:
                for command in (sub, unsub):
                    await ws.send_text(command)
                    await trio.sleep(1 / COMMAND_RATE)


# --- 5. retained events ---


async def retained(events: int = 100_000, batch: int = 500) -> Figures:
    args = ["--history-size", str(events), "--publish-key", PUBLISH_KEY]
    with server(args) as srv:
        await trio.sleep(3)
        reader = await RawWs.connect(srv.port, "channels=topics")
        sizes: list[int] = []
        rss_before = srv.rss_mib()
        base = f"http://127.0.0.1:{srv.port}"
        async with httpx.AsyncClient(base_url=base) as http, trio.open_nursery() as nursery:
            nursery.start_soon(_event_sizes, reader, sizes)
            for first in range(0, events, batch):
                body = [
                    {"type": "topic_created", "data": {"name": f"held-{i:07d}", "partitions": 3}}
                    for i in range(first, min(first + batch, events))
                ]
                response = await http.post(
                    "/api/events",
                    json=body,
                    headers={"Authorization": f"Bearer {PUBLISH_KEY}"},
                    timeout=120,
                )
                response.raise_for_status()
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
        await trio.sleep(2)
        rss_after = srv.rss_mib()
        json_bytes = statistics.mean(sizes) if sizes else float("nan")
        per_event = (rss_after - rss_before) * 2**20 / events
        return {
            "events": events,
            "rss_before_mib": rss_before,
            "rss_after_mib": rss_after,
            "rss_per_event_bytes": per_event,
            "event_json_bytes": json_bytes,
            "ratio": per_event / json_bytes,
        }


async def _event_sizes(ws: RawWs, sizes: list[int]) -> None:
    while True:
        opcode, payload = await ws.read_frame()
        if opcode == 0x8:
            return
        if payload.startswith(b'{"type":"topic_created"') and b"held-" in payload:
            sizes.append(len(payload))


# --- 6. a big batch ---


def _batch_body(n: int, tag: str) -> bytes:
    events = [
        {"type": "topic_created", "data": {"name": f"{tag}-{i:06d}", "partitions": 3}}
        for i in range(n)
    ]
    return json.dumps(events, separators=(",", ":")).encode()


async def batch(subscribers: int = 500, events: int = 14_000, at_limit: int = 1000) -> Figures:
    out: Figures = {"subscribers": subscribers}
    with server(["--publish-key", PUBLISH_KEY]) as srv:
        await trio.sleep(3)
        subs = [await RawWs.connect(srv.port) for _ in range(subscribers)]
        probe = ProbeProcess()
        base = f"http://127.0.0.1:{srv.port}"
        timeout = httpx.Timeout(BATCH_TIMEOUT)
        async with (
            httpx.AsyncClient(base_url=base, timeout=timeout) as http,
            trio.open_nursery() as n,
        ):
            await n.start(probe.run, srv.port, "metrics", 0.05)
            forever = time.monotonic() + 3600
            for ws in subs:
                n.start_soon(discard, ws, forever)
            await trio.sleep(2)
            start = time.monotonic()
            await trio.sleep(BASELINE_SECONDS)  # everyone's pings with no batch
            out["baseline"] = probe.figures(start, time.monotonic())
            for label, size in (("big", events), ("at_limit", at_limit)):
                body = _batch_body(size, label)
                key = f"retry-{label}"
                first = await _post(http, srv, probe, body, key)
                offset = await _topics_offset(http)
                retry = await _post(http, srv, probe, body, key)
                out[label] = {
                    "events": size,
                    "body_bytes": len(body),
                    "first": first,
                    "retry": retry,
                    "retry_same_answer": first.pop("body") == retry.pop("body"),
                    "published_twice": await _topics_offset(http) != offset,
                }
            out["chunked"] = await _chunked(srv, probe)
            n.cancel_scope.cancel()
    return out


async def _post(
    http: httpx.AsyncClient, srv: ServerProcess, probe: ProbeProcess, body: bytes, key: str
) -> Figures:
    cpu, start = srv.cpu(), time.monotonic()
    response = await http.post(
        "/api/events",
        content=body,
        headers={
            "Authorization": f"Bearer {PUBLISH_KEY}",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        },
    )
    answered = time.monotonic()
    await trio.sleep(1)  # the fan-out may outlast the answer; pings in flight come back
    return {
        "status": response.status_code,
        "answer_s": answered - start,
        "server_cpu_s": srv.cpu() - cpu,
        **probe.figures(start, answered),
        "body": response.content,
    }


async def _topics_offset(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith('takhin_ws_stream_offset{stream="topics"}'):
            return float(line.split()[-1])
    return float("nan")


async def _chunked(srv: ServerProcess, probe: ProbeProcess, chunks: int = 1_000_000) -> Figures:
    """One event padded with spaces to *chunks* bytes, sent one byte per chunk."""
    event = b'{"type":"topic_created","data":{"name":"chunky","partitions":1}}'
    body = event + b" " * (chunks - len(event))
    framed = b"".join(b"1\r\n" + body[i : i + 1] + b"\r\n" for i in range(len(body))) + b"0\r\n\r\n"
    head = (
        "POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {PUBLISH_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    cpu, start = srv.cpu(), time.monotonic()
    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(stream.send_all, head + framed)
        answer = b""
        while b"\r\n" not in answer:
            data = await stream.receive_some(4096)
            if not data:
                break
            answer += data
        nursery.cancel_scope.cancel()
    answered = time.monotonic()
    await trio.sleep(1)
    return {
        "chunks": chunks,
        "wire_bytes": len(head) + len(framed),
        "status": answer.split(b"\r\n")[0].decode(errors="replace"),
        "answer_s": answered - start,
        "server_cpu_s": srv.cpu() - cpu,
        **probe.figures(start, answered),
    }


# --- command line ---

SCENARIOS: Final = ("slow-readers", "steady-reader", "views", "churn", "retained", "batch")


async def run(
    names: list[str], short: bool, steady_seconds: float = STEADY_SECONDS
) -> dict[str, Figures]:
    scale = 1 / 3 if short else 1.0
    results: dict[str, Figures] = {}
    for name in names:
        started = time.monotonic()
        if name == "slow-readers":
            figures = await slow_readers(90 * scale)
        elif name == "steady-reader":
            figures = await steady_reader(max(steady_seconds * scale, 20))
        elif name == "views":
            figures = await views(30 * scale)
        elif name == "churn":
            figures = await churn(30 * scale)
        elif name == "retained":
            figures = await retained(100_000)
        else:
            figures = await batch()
        figures["wall_s"] = time.monotonic() - started
        results[name] = figures
        print(json.dumps({name: figures}, default=str), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile", description=__doc__)
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--short", action="store_true", help="about a third of the time")
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    parser.add_argument(
        "--steady-seconds",
        type=float,
        default=STEADY_SECONDS,
        help=f"how long each steady reader reads (default {STEADY_SECONDS:g})",
    )
    args = parser.parse_args(argv)
    pin(0, 1)
    results = trio.run(run, args.scenarios, args.short, args.steady_seconds)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
