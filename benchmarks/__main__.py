"""``python -m benchmarks``: run the fan-out matrix and write benchmarks/results/.

Examples (from the repository root)::

    .venv/bin/python -m benchmarks                 # full matrix: 100, 1k, 5k, 10k clients
    .venv/bin/python -m benchmarks --quick         # ~1 min smoke run
    .venv/bin/python -m benchmarks --clients 1000 5000 --servers takhin-ws websockets
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks import report
from benchmarks.common import pin, raise_nofile
from benchmarks.harness import (
    CLIENT_CPU,
    DEFAULT_SERVERS,
    SERVERS,
    WORKLOADS,
    Cell,
    Config,
    build_engine,
    run_group,
)
from benchmarks.procs import kill_all

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--clients",
        type=int,
        nargs="+",
        default=None,
        help="client counts (default 100 1000 5000 10000)",
    )
    parser.add_argument(
        "--servers",
        nargs="+",
        choices=list(SERVERS),
        default=list(DEFAULT_SERVERS),
        help="servers to run (takhin-ws-asgi: the ASGI app behind Hypercorn, on request)",
    )
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--quick", action="store_true", help="a ~1 minute smoke run")
    parser.add_argument("--burst-count", type=int, default=None, help="broadcasts per burst (200)")
    parser.add_argument("--steady-seconds", type=float, default=None, help="steady length (10 s)")
    parser.add_argument("--steady-rate", type=float, default=20.0, help="steady events/s (20)")
    parser.add_argument(
        "--clients-per-proc", type=int, default=2500, help="connections per load-client process"
    )
    parser.add_argument(
        "--engine",
        choices=("auto", "c", "python"),
        default="auto",
        help="the load client's receive loop: c (benchmarks/wsload.c, compiled at start, "
        "needs cc), python, or auto (c if it compiles, else python)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure burst and steady N times and report the quietest trial (the one "
        "during which other processes used the least CPU); all trials go to the JSON",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="before each run wait up to this many seconds for other processes to leave "
        "the two cores idle (for shared machines; default 0: do not wait)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="output directory")
    return parser.parse_args(argv)


def make_config(args: argparse.Namespace) -> Config:
    if args.quick:
        cfg = Config(
            clients=args.clients or [100, 1000],
            servers=args.servers,
            workloads=args.workloads,
            burst_count=200,
            burst_min_deliveries=20_000,
            burst_max_reps=2,
            steady_seconds=2.0,
            slow_close_wait=0.0,
            stagnation=3.0,
            settle=0.5,
        )
    else:
        cfg = Config(
            clients=args.clients or [100, 1000, 5000, 10000],
            servers=args.servers,
            workloads=args.workloads,
        )
    if args.burst_count:
        cfg.burst_count = args.burst_count
    if args.steady_seconds:
        cfg.steady_seconds = args.steady_seconds
    cfg.steady_rate = args.steady_rate
    cfg.clients_per_proc = args.clients_per_proc
    cfg.quiet_wait = args.quiet_wait
    cfg.repeat = args.repeat
    cfg.engine = "python" if args.engine == "python" else "c"
    cfg.log_dir = args.out / "tmp"
    return cfg


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("takhin-ws", "trio", "trio-websocket", "websockets", "orjson"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "?"
    return out


def git_state() -> str:
    """The commit the server code comes from, and whether src/ had local changes."""
    import subprocess

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=RESULTS.parent.parent,
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "src")
    return f"{head}{' + uncommitted changes in src/' if dirty else ''}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    cfg = make_config(args)
    nofile = raise_nofile()
    pin(CLIENT_CPU)  # the harness shares core 1 with the load clients
    console = Console()
    need = max(cfg.clients) + 100
    if nofile < need:
        console.print(f"[yellow]fd limit {nofile} is below {need}; large cells may fail")
    command = "python -m benchmarks" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    meta: dict[str, Any] = {
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": f"{platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "versions": versions(),
        "git": git_state(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()},
        "nofile": nofile,
    }
    if cfg.engine == "c":
        lib, why = build_engine(cfg.log_dir)
        if lib is None:
            if args.engine == "c":
                console.print(f"[red]cannot build the C load client: {why}")
                return 2
            console.print(f"[yellow]C load client unavailable ({why}); using the Python one")
            cfg.engine = "python"
        cfg.engine_lib = lib
    meta["client_engine"] = cfg.engine
    meta["config"]["engine"] = cfg.engine
    cells: list[Cell] = []
    groups = [(n, s) for n in cfg.clients for s in cfg.servers]
    started = time.monotonic()
    progress = Progress(
        TextColumn("[bold]{task.fields[cell]:<26}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
    )
    try:
        with progress:
            task = progress.add_task("", total=len(groups) * len(cfg.workloads), cell="")
            for n, server in groups:
                label = f"{server} x {n:,}"

                def say(text: str, label: str = label) -> None:
                    progress.update(task, description=text, cell=label)

                def done(cell: Cell) -> None:
                    progress.advance(task)
                    console.print(report.summary_line(cell.as_json()))

                cells += run_group(cfg, server, n, say, done)
                # write what we have after every group: a crash later loses nothing
                report.write(args.out, meta | {"partial": True}, [c.as_json() for c in cells])
    except KeyboardInterrupt:
        console.print("[red]interrupted: stopping every child process")
        kill_all()
        if cells:
            meta["interrupted"] = True
            report.write(args.out, meta, [c.as_json() for c in cells])
        return 130
    finally:
        kill_all()
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    paths = report.write(args.out, meta, [c.as_json() for c in cells])
    console.print()
    console.print((args.out / "results.md").read_text())
    for path in paths:
        console.print(f"wrote {path}")
    failed = sum(1 for c in cells if c.status != "ok")
    if failed:
        console.print(f"[red]{failed} cell(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
