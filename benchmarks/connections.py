"""What a connection costs: memory per idle client and server CPU per handshake.

``python -m benchmarks.connections --clients 1000 10000 --repeat 3`` starts, for each
round, client count and server (interleaved, so that every server of a round sees the
same machine), the server pinned to core 0 and the load clients on core 1 exactly as
the fan-out matrix does (``benchmarks/harness.py``, ``Group.start``): RSS with no
client, N plain upgrade requests (200 in flight per load-client process), RSS again
one second after the last handshake. Per cell it reports

- ``RSS/conn KB``: (RSS with N idle clients - RSS with none) / N;
- ``CPU us/handshake``: the server process's CPU time from the first connect to the
  moment it counts N registered clients, / N (accept, request, upgrade, the first
  frames: for takhin-ws the ``welcome`` and the latest snapshot), from the scheduler's
  ns-resolution accounting (``/proc/PID/task/*/schedstat``; psutil's user+system
  time, in 10 ms ticks, is in the JSON as ``handshake_cpu_us``);
- ``conn/s``: N / (last handshake - first connect).

Each figure is the median over the rounds; ``vs peer`` is the ratio to the
``websockets`` peer *within each round*, then the median of those ratios (the machine
is shared: a ratio within one round is what can be compared). Results go to
``--out`` (JSON and Markdown).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import pin, raise_nofile
from benchmarks.harness import CLIENT_CPU, SERVERS, Config, Group, build_engine, core_busy
from benchmarks.procs import ChildError, kill_all

PEER = "websockets"
FIGURES = ("rss_per_conn_kb", "handshake_sched_us", "handshake_cpu_us", "connect_rate")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.connections", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--servers",
        nargs="+",
        choices=list(SERVERS),
        default=["takhin-ws", "websockets", "raw-floor"],
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="before each cell wait up to this many seconds for the other processes "
        "to leave both cores idle",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/connections"))
    return parser.parse_args(argv)


def measure(cfg: Config, server: str, clients: int) -> dict[str, Any]:
    if cfg.quiet_wait > 0:
        wait_idle(cfg.quiet_wait, cfg.quiet_threshold)
    group = Group(cfg, server, clients, lambda text: None)
    try:
        group.start()
        return {k: group.common[k] for k in FIGURES}
    finally:
        group.close()


def wait_idle(limit: float, threshold: float) -> float:
    """Wait (at most *limit* s) until both cores are busier than *threshold* no more
    (nothing of ours runs between two cells); return the busiest core's share."""
    deadline = time.monotonic() + limit
    while True:
        busy0, t0 = core_busy(), time.monotonic()
        time.sleep(0.5)
        busy1, wall = core_busy(), time.monotonic() - t0
        share = max((busy1[c] - busy0.get(c, 0.0)) / wall for c in busy1)
        if share <= threshold or time.monotonic() >= deadline:
            return share


def summarise(rounds: list[dict[str, dict[int, dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Median per (server, clients) and, per round, the ratio to the peer."""
    rows = []
    servers = list(rounds[0])
    counts = sorted({n for r in rounds for s in r.values() for n in s})
    for n in counts:
        for server in servers:
            cells = [r[server][n] for r in rounds if n in r.get(server, {})]
            if not cells:
                continue
            row: dict[str, Any] = {"server": server, "clients": n, "rounds": len(cells)}
            for key in FIGURES:
                values = [c[key] for c in cells]
                row[key] = statistics.median(values)
                row[key + "_all"] = values
                ratios = [
                    r[server][n][key] / r[PEER][n][key]
                    for r in rounds
                    if n in r.get(server, {}) and n in r.get(PEER, {}) and r[PEER][n][key]
                ]
                row[key + "_vs_peer"] = statistics.median(ratios) if ratios else None
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        f"command: `{command}`",
        "",
        "| clients | server | RSS/conn KB | vs peer | CPU us/handshake | vs peer | conn/s |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        rss_all = "/".join(f"{v:.1f}" for v in row["rss_per_conn_kb_all"])
        cpu_all = "/".join(f"{v:.0f}" for v in row["handshake_sched_us_all"])
        lines.append(
            f"| {row['clients']:,} | {row['server']} "
            f"| {row['rss_per_conn_kb']:.1f} ({rss_all}) | {_x(row['rss_per_conn_kb_vs_peer'])} "
            f"| {row['handshake_sched_us']:.0f} ({cpu_all}) "
            f"| {_x(row['handshake_sched_us_vs_peer'])} "
            f"| {row['connect_rate']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    raise_nofile()
    pin(CLIENT_CPU)
    cfg = Config(clients=args.clients, servers=args.servers, workloads=[])
    cfg.log_dir = args.out / "tmp"
    cfg.quiet_wait = args.quiet_wait
    lib, why = build_engine(cfg.log_dir)
    if lib is not None:
        cfg.engine, cfg.engine_lib = "c", lib
    else:
        print(f"C load client unavailable ({why}); using the Python one", file=sys.stderr)
    command = "python -m benchmarks.connections " + " ".join(sys.argv[1:] if argv is None else argv)
    rounds: list[dict[str, dict[int, dict[str, Any]]]] = []
    try:
        for round_no in range(args.repeat):
            figures: dict[str, dict[int, dict[str, Any]]] = {s: {} for s in args.servers}
            for n in args.clients:
                for server in args.servers:
                    try:
                        cell = measure(cfg, server, n)
                    except ChildError as exc:
                        print(f"round {round_no + 1}: {server} x {n}: FAILED {exc}", flush=True)
                        continue
                    figures[server][n] = cell
                    print(
                        f"round {round_no + 1}: {server:>10} x {n:>6,}: "
                        f"{cell['rss_per_conn_kb']:5.1f} KB/conn, "
                        f"{cell['handshake_sched_us']:5.0f} us/handshake, "
                        f"{cell['connect_rate']:7,.0f} conn/s",
                        flush=True,
                    )
                    time.sleep(1.0)
            rounds.append(figures)
    except KeyboardInterrupt:
        kill_all()
        return 130
    finally:
        kill_all()
    rows = summarise(rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps({"command": command, "rows": rows, "rounds": rounds}, indent=1)
    )
    text = markdown(rows, command)
    (args.out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
