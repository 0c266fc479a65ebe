"""The matrix: for each client count and server, one server process and its load clients.

Per (server, clients) the harness starts the server pinned to core 0, measures its RSS
with no client, starts the load-client processes pinned to core 1, connects every
client (the set-up rate), measures the RSS again (per-connection memory), then runs the
workloads in order on the same connections:

- ``burst``: 200 broadcasts as fast as the server can (one event-loop turn between
  them), repeated until at least ``burst_min_deliveries`` deliveries were measured so
  that CPU accounting in 10 ms ticks is precise at small client counts;
- ``steady``: 20 messages/s for 10 s on a drift-free schedule, latency measured
  against each message's planned send time;
- ``slow``: every 20th client (5%) is replaced by one that completes the handshake and
  then never reads; then the steady load again. The others must lose nothing; the
  harness then watches the server close the stalled ones (the write deadline).

Server CPU is the server process's own user+system time (psutil) from just before the
publish command to the moment every reading client has everything (or progress
stopped), divided by the deliveries the clients counted.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import WS_PATH
from benchmarks.procs import Child, ChildError
from benchmarks.stats import merge_hist, percentile

SERVERS: dict[str, str] = {
    "takhin-ws": "benchmarks.server_takhin",
    "websockets": "benchmarks.server_websockets",
    "raw-floor": "benchmarks.server_raw",
    # takhin-ws as an ASGI app behind Hypercorn's Trio worker (not run by default)
    "takhin-ws-asgi": "benchmarks.server_asgi",
    # the Node.js `ws` package (benchmarks/node; not run by default)
    "node-ws": "benchmarks.server_node",
}
#: The servers a run compares unless --servers names others.
DEFAULT_SERVERS = ("takhin-ws", "websockets", "raw-floor")
#: The write deadline the takhin-ws servers run with here (``--write-timeout``; the
#: server's default is 30 s): the ``slow`` workload expects its stalled readers closed
#: within its watch (``slow_close_wait`` after a 10 s run, stalled ~5.5 s into it).
BENCH_WRITE_TIMEOUT = 10.0
#: The servers that take ``--write-timeout``.
WRITE_TIMEOUT_SERVERS = frozenset({"takhin-ws", "takhin-ws-asgi"})
WORKLOADS = ("burst", "steady", "slow")
SERVER_CPU = 0
CLIENT_CPU = 1


@dataclass
class Config:
    clients: list[int]
    servers: list[str]
    workloads: list[str]
    burst_count: int = 200
    burst_min_deliveries: int = 200_000
    burst_max_reps: int = 10
    steady_rate: float = 20.0
    steady_seconds: float = 10.0
    slow_every: int = 20
    #: how long to watch for the server closing stalled clients after the slow run
    slow_close_wait: float = 15.0
    clients_per_proc: int = 2500
    connect_concurrency: int = 200
    stagnation: float = 5.0
    #: the load client's receive loop: "c" (wsload.c via ctypes) or "python"
    engine: str = "python"
    engine_lib: str | None = None
    #: measure burst and steady this many times; report the quietest (see Group.run)
    repeat: int = 1
    settle: float = 1.0
    #: before each measured run, wait up to this long for other processes to use less
    #: than ``quiet_threshold`` of either core (the machine may be shared)
    quiet_wait: float = 0.0
    quiet_threshold: float = 0.15
    log_dir: Path = field(default_factory=lambda: Path("benchmarks/results/tmp"))


Progress = Callable[[str], None]


@dataclass
class Cell:
    server: str
    clients: int
    workload: str
    status: str = "ok"
    error: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    hist: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "clients": self.clients,
            "workload": self.workload,
            "status": self.status,
            "error": self.error,
            **self.figures,
            "latency_hist": self.hist,
        }


class Group:
    """One server process and its load clients for one client count."""

    def __init__(self, cfg: Config, server: str, clients: int, progress: Progress) -> None:
        self.cfg = cfg
        self.server_name = server
        self.n = clients
        self.progress = progress
        self.server: Child | None = None
        self.loaders: list[Child] = []
        self.port = 0
        self.run_id = 0
        self.common: dict[str, Any] = {}

    # --- lifecycle ---

    def start(self) -> None:
        cfg = self.cfg
        tag = f"{self.server_name}-{self.n}"
        self.progress("starting server")
        server_args = ["--cpu", str(SERVER_CPU)]
        if self.server_name in WRITE_TIMEOUT_SERVERS:
            server_args += ["--write-timeout", str(BENCH_WRITE_TIMEOUT)]
        self.server = Child(f"{tag}-server", SERVERS[self.server_name], server_args, cfg.log_dir)
        hello = self.server.receive(timeout=30)
        self.port = int(hello["port"])
        time.sleep(cfg.settle)
        rss0 = self.server.rss()
        procs = max(1, math.ceil(self.n / cfg.clients_per_proc))
        for i in range(procs):
            args = ["--cpu", str(CLIENT_CPU), "--engine", cfg.engine]
            if cfg.engine_lib:
                args += ["--lib", cfg.engine_lib]
            child = Child(f"{tag}-client{i}", "benchmarks.loadclient", args, cfg.log_dir)
            self.loaders.append(child)
        for child in self.loaders:
            child.receive(timeout=30)
        self.progress(f"connecting {self.n} clients")
        cpu0, sched0 = self.server.cpu_seconds(), self.server.sched_seconds()
        per = _split(self.n, procs)
        first = 0
        for child, count in zip(self.loaders, per, strict=True):
            child.send(
                {
                    "op": "connect",
                    "host": "127.0.0.1",
                    "port": self.port,
                    "path": WS_PATH,
                    "count": count,
                    "first_index": first,
                    "concurrency": cfg.connect_concurrency,
                }
            )
            first += count
        answers = [c.receive(timeout=60 + self.n / 100) for c in self.loaders]
        connected = sum(a["connected"] for a in answers)
        failed = sum(a["failed"] for a in answers)
        errors: dict[str, int] = {}
        for a in answers:
            for k, v in a["errors"].items():
                errors[k] = errors.get(k, 0) + v
        t0 = min(a["t_start"] for a in answers)
        t1 = max(a["t_last"] for a in answers)
        if failed or connected != self.n:
            raise ChildError(f"{failed} of {self.n} connections failed: {errors}")
        self._wait_server_clients(self.n, timeout=30)
        cpu1, sched1 = self.server.cpu_seconds(), self.server.sched_seconds()
        time.sleep(cfg.settle)
        rss = self.server.rss()
        self.common = {
            "handshake_cpu_us": (cpu1 - cpu0) / self.n * 1e6,
            "handshake_sched_us": (sched1 - sched0) / self.n * 1e6,
            "connect_rate": self.n / max(t1 - t0, 1e-6),
            "connect_seconds": t1 - t0,
            "rss0_mb": rss0 / 2**20,
            "rss_mb": rss / 2**20,
            "rss_per_conn_kb": (rss - rss0) / self.n / 1024,
            "client_procs": procs,
        }

    def _children(self) -> list[Child]:
        return [*self.loaders, *([self.server] if self.server else [])]

    def close(self) -> None:
        """Clients first (their sockets close), then the server; each bounded."""
        for child in self._children():
            child.close(timeout=15)

    def kill(self) -> None:
        for child in self._children():
            child.kill()

    # --- helpers ---

    def _stats(self) -> dict[str, Any]:
        assert self.server is not None
        return self.server.request({"op": "stats"}, timeout=30)

    def _wait_server_clients(self, want: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            have = int(self._stats()["clients"])
            if have == want or time.monotonic() > deadline:
                return have
            time.sleep(0.1)

    def _our_cpu(self) -> dict[int, float]:
        """CPU seconds of our processes, by the core they are pinned to."""
        assert self.server is not None
        t = os.times()
        clients = sum(c.cpu_seconds() for c in self.loaders) + t.user + t.system
        return {SERVER_CPU: self.server.cpu_seconds(), CLIENT_CPU: clients}

    def _others(self, busy0: dict[int, float], ours0: dict[int, float], wall: float) -> list[float]:
        """Fraction of each core used by processes outside the benchmark since the marks."""
        busy1, ours1 = core_busy(), self._our_cpu()
        out = []
        for core in (SERVER_CPU, CLIENT_CPU):
            used = busy1.get(core, 0.0) - busy0.get(core, 0.0)
            mine = ours1[core] - ours0[core]
            out.append(max(0.0, used - mine) / max(wall, 1e-9))
        return out

    def _wait_quiet(self) -> float:
        """Wait (bounded) until other processes leave both cores nearly idle."""
        cfg = self.cfg
        deadline = time.monotonic() + cfg.quiet_wait
        while True:
            busy0, ours0, t0 = core_busy(), self._our_cpu(), time.monotonic()
            time.sleep(0.5)
            other = max(self._others(busy0, ours0, time.monotonic() - t0))
            if other <= cfg.quiet_threshold or time.monotonic() >= deadline:
                return other
            self.progress(f"waiting for a quiet machine (others use {other:.0%} of a core)")

    def _all(self, obj: dict[str, Any], timeout: float = 30) -> list[dict[str, Any]]:
        for child in self.loaders:
            child.send(obj)
        return [child.receive(timeout) for child in self.loaders]

    # --- workloads ---

    def run(self, workload: str) -> Cell:
        cell = Cell(self.server_name, self.n, workload)
        cfg = self.cfg
        extra: dict[str, Any] = {}
        if workload == "burst":
            per_rep = cfg.burst_count * self.n
            reps = max(1, min(cfg.burst_max_reps, math.ceil(cfg.burst_min_deliveries / per_rep)))
            count, rate = cfg.burst_count, 0.0
        else:
            reps = 1
            count, rate = round(cfg.steady_rate * cfg.steady_seconds), cfg.steady_rate
        if workload == "slow":
            self.progress("stalling 5% of the clients")
            answers = self._all({"op": "stall", "every": cfg.slow_every}, timeout=120)
            stalled = sum(a["connected"] for a in answers)
            failed = sum(a["failed"] for a in answers)
            if failed:
                raise ChildError(f"{failed} slow-reader reconnects failed")
            self._wait_server_clients(self.n, timeout=30)
            extra["stalled"] = stalled
            before = self._stats()
        # a shared machine: measure `repeat` times and keep the quietest measurement
        # (least CPU used by other processes), never the best-looking one
        trials = 1 if workload == "slow" else max(1, cfg.repeat)
        measured = []
        for trial in range(trials):
            if cfg.quiet_wait > 0:
                self._wait_quiet()
            runs = [
                self._one_run(workload, count, rate, rep, reps, trial, trials)
                for rep in range(reps)
            ]
            measured.append(_combine(runs))
        figures = min(measured, key=lambda f: f["other_core0_pct"] + f["other_core1_pct"])
        figures["trials"] = [
            {k: f[k] for k in _TRIAL_KEYS} | {"chosen": f is figures} for f in measured
        ]
        figures.update(self.common)
        figures.update(extra)
        figures["reps"] = reps
        figures["messages"] = count
        figures["rate"] = rate
        if workload == "slow":
            figures.update(self._watch_stalled(before, int(extra["stalled"])))
        cell.hist = figures.pop("hist")
        cell.figures = figures
        return cell

    def _one_run(
        self, workload: str, count: int, rate: float, rep: int, reps: int, trial: int, trials: int
    ) -> dict[str, Any]:
        assert self.server is not None
        self.run_id += 1
        run = self.run_id
        label = workload if reps == 1 else f"{workload} {rep + 1}/{reps}"
        if trials > 1:
            label += f" (trial {trial + 1}/{trials})"
        self._all({"op": "begin", "run": run, "expected": count})
        busy0, ours0 = core_busy(), self._our_cpu()
        cpu0 = self.server.cpu_seconds()
        sched0 = self.server.sched_seconds()
        t_cmd = time.monotonic()
        self.server.send({"op": "publish", "run": run, "count": count, "rate": rate})
        self.progress(f"{label}: publishing")
        # generous: 200 us per delivery (contended machine) on top of the schedule
        budget = 60 + (count / rate if rate else 0) + count * self.n * 200e-6
        pub = self.server.receive(timeout=budget)
        # drain: until every reading client has all messages, or progress stops
        last_total = -1
        last_change = time.monotonic()
        while True:
            status = self._all({"op": "status"})
            total = sum(s["received"] for s in status)
            reading = sum(s["reading"] for s in status)
            complete = sum(s["complete"] for s in status)
            now = time.monotonic()
            if complete >= reading:
                break
            if total != last_total:
                last_total, last_change = total, now
            elif now - last_change > self.cfg.stagnation:
                break
            want = max(1, reading * count)
            self.progress(f"{label}: draining {100 * total / want:.0f}%")
            time.sleep(0.05)
        t_done = time.monotonic()
        cpu1 = self.server.cpu_seconds()
        sched1 = self.server.sched_seconds()
        other0, other1 = self._others(busy0, ours0, t_done - t_cmd)
        ends = self._all({"op": "end"}, timeout=60)
        received = sum(e["received"] for e in ends)
        return {
            "deliveries": received,
            "expected": count * sum(e["reading"] + e["closed"] for e in ends),
            "lost": sum(e["lost"] for e in ends),
            "lost_clients": sum(e["lost_clients"] for e in ends),
            "gaps": sum(e["gaps"] for e in ends),
            "disorder": sum(e["disorder"] for e in ends),
            "closed": sum(e["closed"] for e in ends),
            "server_cpu_s": cpu1 - cpu0,
            "server_sched_s": sched1 - sched0,
            "client_cpu_s": sum(e["cpu"] for e in ends),
            "duration_s": t_done - pub["t_first"],
            "wall_s": t_done - t_cmd,
            "publish_s": pub["t_last"] - pub["t_first"],
            "max_late_ms": pub["max_late_ms"],
            "hist": merge_hist([e["hist"] for e in ends]),
            "lat_max": max(e["lat_max"] for e in ends),
            "lat_sum": sum(e["lat_sum"] for e in ends),
            "lat_count": sum(e["lat_count"] for e in ends),
            "other_core0_s": other0 * (t_done - t_cmd),
            "other_core1_s": other1 * (t_done - t_cmd),
        }

    def _watch_stalled(self, before: dict[str, Any], stalled: int) -> dict[str, Any]:
        """After the slow run: how many stalled clients the server closed, and when."""
        t0 = time.monotonic()
        deadline = t0 + self.cfg.slow_close_wait
        stats = self._stats()
        while int(stats["clients"]) > self.n - stalled and time.monotonic() < deadline:
            self.progress("slow: waiting for the server to close stalled clients")
            time.sleep(0.25)
            stats = self._stats()
        out: dict[str, Any] = {
            "stalled_closed": max(0, self.n - int(stats["clients"])),
            "stalled_close_wait_s": time.monotonic() - t0,
        }
        if "dropped" in stats:
            out["server_dropped"] = int(stats["dropped"]) - int(before.get("dropped", 0))
        return out


def build_engine(out_dir: Path) -> tuple[str | None, str]:
    """Compile wsload.c into a shared library; (path, "") or (None, why not)."""
    source = Path(__file__).with_name("wsload.c")
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return None, "no C compiler found"
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / "libwsload.so"
    cmd = [compiler, "-O2", "-Wall", "-shared", "-fPIC", "-o", str(lib), str(source)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{compiler} failed: {exc}"
    if done.returncode != 0:
        return None, f"{compiler} failed: {done.stderr.strip()[-400:]}"
    return str(lib.resolve()), ""


def core_busy() -> dict[int, float]:
    """Busy seconds per CPU since boot (/proc/stat: everything but idle and iowait)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu":
                continue
            values = [int(v) for v in fields[:8]]
            idle = values[3] + values[4]
            out[int(name[3:])] = (sum(values) - idle) / tick
    return out


_TRIAL_KEYS = (
    "cpu_us_per_delivery",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "lost",
    "other_core0_pct",
    "other_core1_pct",
)


def _split(n: int, parts: int) -> list[int]:
    base, extra = divmod(n, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the repetitions of one workload into the cell's figures."""
    sums = {
        k: sum(r[k] for r in runs)
        for k in (
            "deliveries",
            "expected",
            "lost",
            "gaps",
            "disorder",
            "closed",
            "server_cpu_s",
            "server_sched_s",
            "client_cpu_s",
            "duration_s",
            "wall_s",
            "lat_sum",
            "lat_count",
            "other_core0_s",
            "other_core1_s",
        )
    }
    hist = merge_hist([r["hist"] for r in runs])
    deliveries = max(1, sums["deliveries"])
    duration = max(sums["duration_s"], 1e-9)
    out: dict[str, Any] = dict(sums)
    out.update(
        {
            "lost_clients": max(r["lost_clients"] for r in runs),
            "deliveries_per_s": sums["deliveries"] / duration,
            "cpu_us_per_delivery": sums["server_cpu_s"] / deliveries * 1e6,
            "sched_us_per_delivery": sums["server_sched_s"] / deliveries * 1e6,
            "server_core_pct": 100 * sums["server_cpu_s"] / max(sums["wall_s"], 1e-9),
            "client_core_pct": 100 * sums["client_cpu_s"] / max(sums["wall_s"], 1e-9),
            "other_core0_pct": 100 * sums["other_core0_s"] / max(sums["wall_s"], 1e-9),
            "other_core1_pct": 100 * sums["other_core1_s"] / max(sums["wall_s"], 1e-9),
            "p50_ms": percentile(hist, 50) * 1000,
            "p99_ms": percentile(hist, 99) * 1000,
            "max_ms": max(r["lat_max"] for r in runs) * 1000,
            "mean_ms": sums["lat_sum"] / max(1, sums["lat_count"]) * 1000,
            "max_late_ms": max(r["max_late_ms"] for r in runs),
            "publish_s": sum(r["publish_s"] for r in runs),
            "hist": hist,
        }
    )
    return out


def run_group(
    cfg: Config, server: str, clients: int, progress: Progress, done: Callable[[Cell], None]
) -> list[Cell]:
    """All workloads of one (server, clients). A failed workload becomes a failed cell
    and the server and its clients are restarted for the next one (a child that missed
    a deadline may answer late, so it is not trusted again)."""
    cells: list[Cell] = []
    group: Group | None = None
    try:
        for workload in cfg.workloads:
            if group is None:
                group = Group(cfg, server, clients, progress)
                try:
                    group.start()
                except (ChildError, OSError, KeyError, ValueError) as exc:
                    cell = Cell(server, clients, workload, "failed", f"set-up: {exc}")
                    cells.append(cell)
                    done(cell)
                    progress("stopping")
                    group.close()
                    group = None
                    continue
            try:
                cell = group.run(workload)
            except (ChildError, OSError, KeyError, ValueError) as exc:
                cell = Cell(server, clients, workload, "failed", str(exc))
                progress("stopping after a failure")
                group.close()
                group = None
            cells.append(cell)
            done(cell)
    except BaseException:
        if group is not None:
            group.kill()
            group = None
        raise
    finally:
        if group is not None:
            progress("stopping")
            group.close()
    return cells
