"""The reconnect storm: every client drops at once and comes back within a second.

``python -m benchmarks.storm --clients 1000 10000 --repeat 2`` runs, per round,
client count and server (interleaved, so both servers of a round see the same
machine), with the server on core 0 and every load client on core 1:

1. N *storm* clients and 100 *control* clients connect (plain upgrades: every channel,
   so each connect also gets ``welcome`` and the latest snapshot) and the server
   streams ``topic_created`` events on ``topics`` at ``--rate`` per second, each
   carrying the benchmark marker (sequence number, planned send time);
2. after ``--warmup`` seconds every storm client closes its connection at the same
   moment (the drop) and reconnects at a random moment within ``--spread`` seconds,
   each on its own timer (``benchmarks/stormclient.py``): against takhin-ws with
   ``?since=topics:<offset of the last event it received>``, so the server replays
   what it missed; against the ``websockets`` peer, which keeps no history, with the
   plain URL (its own way back: a plain reconnect). A 503 is retried after its
   ``Retry-After``;
3. a client has *resumed* once it has every event published before it reconnected:
   from takhin-ws, up to the offset its ``welcome`` names (the replay comes in the
   same write as the 101); from the peer, which has nothing to replay, once it is
   open. Holes in a client's sequence are events it never got (lost). The storm ends
   when every storm client has resumed (or after ``--timeout`` s).

Reported per cell: the time from the drop until every client had resumed (and the
median and 99th percentile client), the server's CPU from the drop to that moment
(and per reconnect), events lost (holes: takhin-ws must have none; the peer loses what
was published while a client was away) and received twice, 503s, and the delivery
latency of the control group (which stayed connected) before and during the storm:
whether the storm delays everyone else. ``vs peer`` is the ratio of the all-resumed
times within a round, then the median over rounds.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import WS_PATH, pin, raise_nofile
from benchmarks.harness import CLIENT_CPU, SERVER_CPU, SERVERS, build_engine, core_busy
from benchmarks.procs import Child, ChildError, kill_all
from benchmarks.stats import percentile

PEER = "websockets"
#: Servers that resume with ``?since=`` (the others reconnect plainly).
RESUMING = frozenset({"takhin-ws"})


@dataclass
class StormConfig:
    clients: list[int]
    servers: list[str]
    rate: float = 2.0
    warmup: float = 3.0
    spread: float = 1.0
    control: int = 100
    timeout: float = 60.0
    tail: float = 1.0
    clients_per_proc: int = 2500
    server_args: list[str] = field(default_factory=list)
    engine_lib: str = ""
    log_dir: Path = field(default_factory=lambda: Path("benchmarks/results/storm/tmp"))


def _split(n: int, parts: int) -> list[int]:
    base, extra = divmod(n, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _latency(end: dict[str, Any]) -> dict[str, float]:
    hist = end["hist"]
    return {
        "p50_ms": percentile(hist, 50) * 1000,
        "p99_ms": percentile(hist, 99) * 1000,
        "max_ms": end["lat_max"] * 1000,
        "received": end["received"],
    }


class Storm:
    """One server, its control and storm load clients, one storm."""

    def __init__(self, cfg: StormConfig, server: str, n: int) -> None:
        self.cfg = cfg
        self.name = server
        self.n = n
        tag = f"storm-{server}-{n}"
        args = ["--cpu", str(SERVER_CPU), *cfg.server_args]
        self.server = Child(f"{tag}-server", SERVERS[server], args, cfg.log_dir)
        self.children = [self.server]
        client_args = ["--cpu", str(CLIENT_CPU), "--lib", cfg.engine_lib]
        self.control = self._client(f"{tag}-control", client_args)
        procs = max(1, math.ceil(n / cfg.clients_per_proc))
        self.storm = [self._client(f"{tag}-storm{i}", client_args) for i in range(procs)]

    def _client(self, name: str, args: list[str]) -> Child:
        child = Child(name, "benchmarks.stormclient", args, self.cfg.log_dir)
        self.children.append(child)
        return child

    def close(self) -> None:
        for child in reversed(self.children):
            child.close(timeout=15)

    def _all(self, children: list[Child], cmd: dict[str, Any], timeout: float = 30) -> list[Any]:
        for child in children:
            child.send(cmd)
        return [child.receive(timeout) for child in children]

    def _connect(self, port: int) -> None:
        cfg = self.cfg
        counts = [(self.control, cfg.control, 0)]
        first = cfg.control
        for child, count in zip(self.storm, _split(self.n, len(self.storm)), strict=True):
            counts.append((child, count, first))
            first += count
        for child, count, first_index in counts:
            child.send(
                {
                    "op": "connect",
                    "host": "127.0.0.1",
                    "port": port,
                    "path": WS_PATH,
                    "count": count,
                    "first_index": first_index,
                    "concurrency": 200,
                }
            )
        answers = [child.receive(60 + self.n / 100) for child, _, _ in counts]
        failed = sum(a["failed"] for a in answers)
        if failed:
            raise ChildError(f"{failed} connections failed: {answers[0]['errors']}")
        deadline = time.monotonic() + 30
        want = self.n + cfg.control
        while self.server.request({"op": "stats"}, 30)["clients"] < want:
            if time.monotonic() > deadline:
                raise ChildError("the server did not register every client")
            time.sleep(0.1)

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        hello = self.server.receive(timeout=30)
        for child in self.children[1:]:
            child.receive(timeout=30)
        port = int(hello["port"])
        self._connect(port)
        base = int(self.server.request({"op": "offset"}, 30)["offset"])
        loaders = [self.control, *self.storm]
        run = 1
        self._all(loaders, {"op": "begin", "run": run, "expected": 0})
        self._all(loaders, {"op": "track", "expect": 0})
        limit = math.ceil(cfg.rate * (cfg.warmup + cfg.timeout + cfg.tail + 10))
        self.server.request({"op": "stream", "run": run, "rate": cfg.rate, "limit": limit}, 30)
        time.sleep(cfg.warmup)
        before = _latency(self.control.request({"op": "end"}, 60))
        self.control.request({"op": "begin", "run": run, "expected": 0}, 30)
        busy0, ours0 = core_busy(), self._ours()
        cpu0 = self.server.cpu_seconds()
        drops = self._all(self.storm, {"op": "drop"})
        t_drop = min(d["t_drop"] for d in drops)
        dropped = sum(d["dropped"] for d in drops)
        reconnect = {
            "op": "reconnect",
            "host": "127.0.0.1",
            "port": port,
            "path": WS_PATH,
            "spread": cfg.spread,
            "since_base": base if self.name in RESUMING else None,
            "t_drop": t_drop,
        }
        self._all(self.storm, reconnect)
        status: list[dict[str, Any]] = []
        while time.monotonic() - t_drop < cfg.timeout:
            status = self._all(self.storm, {"op": "storm_status"})
            if sum(s["resumed"] for s in status) >= dropped:
                break
            time.sleep(0.1)
        cpu1 = self.server.cpu_seconds()
        t_end = time.monotonic()
        others = [
            (core_busy()[c] - busy0[c] - (self._ours()[c] - ours0[c])) / (t_end - t_drop)
            for c in (SERVER_CPU, CLIENT_CPU)
        ]
        resumed = sum(s["resumed"] for s in status)
        t_all = max(s["t_last_resumed"] for s in status)
        time.sleep(cfg.tail)
        streamed = self.server.request({"op": "stream_stop"}, 30)["streamed"]
        during = _latency(self.control.request({"op": "end"}, 60))
        control = self.control.request({"op": "storm_status"}, 30)
        final = self._all(self.storm, {"op": "storm_status"})
        times = sorted(
            t - t_drop
            for answer in self._all(self.storm, {"op": "resume_times"})
            for t in answer["times"]
            if t > 0
        )
        return {
            "server": self.name,
            "clients": self.n,
            "dropped": dropped,
            "resumed": resumed,
            "all_resumed_s": (t_all - t_drop) if resumed >= dropped else None,
            "resume_p50_s": _pick(times, 0.50),
            "resume_p99_s": _pick(times, 0.99),
            "server_cpu_s": cpu1 - cpu0,
            "cpu_us_per_reconnect": (cpu1 - cpu0) / max(1, dropped) * 1e6,
            "lost": sum(s["holes"] for s in final),
            "duplicated": sum(s["dups"] for s in final),
            "refusals": sum(s["refusals"] for s in final),
            "failures": sum(s["failures"] for s in final),
            "control_before": before,
            "control_during": during,
            "control_lost": control["holes"],
            "events": streamed,
            "rate": cfg.rate,
            "spread": cfg.spread,
            "other_core0_pct": 100 * others[0],
            "other_core1_pct": 100 * others[1],
        }

    def _ours(self) -> dict[int, float]:
        clients = sum(c.cpu_seconds() for c in self.children[1:])
        return {SERVER_CPU: self.server.cpu_seconds(), CLIENT_CPU: clients}


def _pick(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


def storm(cfg: StormConfig, server: str, n: int) -> dict[str, Any]:
    cell = Storm(cfg, server, n)
    try:
        return cell.run()
    finally:
        cell.close()


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(cells: list[dict[str, Any]], command: str) -> str:
    lines = [
        f"command: `{command}`",
        "",
        "| clients | server | all resumed s | vs peer | p50 / p99 client s | server CPU s "
        "| us/reconnect | lost | dup | 503s | control p99 ms before / during "
        "| control max ms during | other load % |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        lines.append(
            f"| {c['clients']:,} | {c['server']} | {_s(c['all_resumed_s'])} "
            f"| {c.get('vs_peer') or '-'} "
            f"| {_s(c['resume_p50_s'])} / {_s(c['resume_p99_s'])} "
            f"| {c['server_cpu_s']:.2f} | {c['cpu_us_per_reconnect']:.0f} "
            f"| {c['lost']:,} | {c['duplicated']:,} | {c['refusals']:,} "
            f"| {c['control_before']['p99_ms']:.1f} / {c['control_during']['p99_ms']:.1f} "
            f"| {c['control_during']['max_ms']:.0f} "
            f"| {c['other_core0_pct']:.0f}/{c['other_core1_pct']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _ratios(cells: list[dict[str, Any]]) -> None:
    """Per round and client count, each server's all-resumed time over the peer's."""
    for c in cells:
        peer = next(
            (
                p
                for p in cells
                if p["server"] == PEER and p["clients"] == c["clients"] and p["round"] == c["round"]
            ),
            None,
        )
        if peer and peer["all_resumed_s"] and c["all_resumed_s"]:
            c["vs_peer"] = f"{c['all_resumed_s'] / peer['all_resumed_s']:.2f}x"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.storm", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--servers", nargs="+", choices=["takhin-ws", PEER], default=["takhin-ws", PEER]
    )
    parser.add_argument("--rate", type=float, default=2.0, help="events per second (2)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the drop")
    parser.add_argument("--spread", type=float, default=1.0, help="reconnects within (1 s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="longest storm (60 s)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (1)")
    parser.add_argument(
        "--server-args",
        default="",
        help="extra arguments for the takhin-ws server process (e.g. '--handshake-rate 3000')",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/storm"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    raise_nofile()
    pin(CLIENT_CPU)
    cfg = StormConfig(
        clients=args.clients,
        servers=args.servers,
        rate=args.rate,
        warmup=args.warmup,
        spread=args.spread,
        timeout=args.timeout,
    )
    cfg.log_dir = args.out / "tmp"
    lib, why = build_engine(cfg.log_dir)
    if lib is None:
        print(f"the storm needs the C load client: {why}", file=sys.stderr)
        return 2
    cfg.engine_lib = lib
    command = "python -m benchmarks.storm " + " ".join(sys.argv[1:] if argv is None else argv)
    cells: list[dict[str, Any]] = []
    try:
        for round_no in range(1, args.repeat + 1):
            for n in args.clients:
                for server in args.servers:
                    cfg.server_args = args.server_args.split() if server == "takhin-ws" else []
                    try:
                        cell = storm(cfg, server, n)
                    except ChildError as exc:
                        print(f"round {round_no}: {server} x {n}: FAILED {exc}", flush=True)
                        continue
                    cell["round"] = round_no
                    cells.append(cell)
                    print(
                        f"round {round_no}: {server:>10} x {n:>6,}: all resumed in "
                        f"{_s(cell['all_resumed_s'])} s (p99 {_s(cell['resume_p99_s'])}), "
                        f"server CPU {cell['server_cpu_s']:.2f} s, lost {cell['lost']}, "
                        f"503s {cell['refusals']}, control p99 "
                        f"{cell['control_before']['p99_ms']:.1f} -> "
                        f"{cell['control_during']['p99_ms']:.1f} ms",
                        flush=True,
                    )
                    time.sleep(2.0)
    except KeyboardInterrupt:
        kill_all()
        return 130
    finally:
        kill_all()
    _ratios(cells)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps({"command": command, "cells": cells}, indent=1)
    )
    text = markdown(cells, command)
    (args.out / "results.md").write_text(text)
    print(text)
    if len(cells) > 1:
        for n in args.clients:
            ratios = [
                float(c["vs_peer"][:-1])
                for c in cells
                if c["clients"] == n and c["server"] != PEER and c.get("vs_peer")
            ]
            if ratios:
                median = statistics.median(ratios)
                print(f"{n:,} clients: all-resumed time vs peer, median {median:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
