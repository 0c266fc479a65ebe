"""Results: JSON, a Markdown table with the ratios and goals of issue 6, and PNG plots."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from benchmarks.stats import cdf

_NUMBER_LIST = re.compile(r"\[\s*-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*\s*\]")
TAKHIN = "takhin-ws"
PEER = "websockets"
FLOOR = "raw-floor"
#: Goal ratios from issue 6.
CPU_GOAL = 0.75
P99_GOAL = 0.75
SLOW_CPU_RISE_GOAL = 0.10


def _find(cells: list[dict[str, Any]], server: str, clients: int, workload: str) -> dict[str, Any]:
    for cell in cells:
        key = (cell["server"], cell["clients"], cell["workload"])
        if key == (server, clients, workload) and cell["status"] == "ok":
            return cell
    return {}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def ratios(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    keys = sorted({(c["clients"], c["workload"]) for c in cells}, key=_order)
    for clients, workload in keys:
        t = _find(cells, TAKHIN, clients, workload)
        p = _find(cells, PEER, clients, workload)
        f = _find(cells, FLOOR, clients, workload)
        if not t:
            continue
        row: dict[str, Any] = {"clients": clients, "workload": workload}
        for name, other in (("peer", p), ("floor", f)):
            row[f"cpu_vs_{name}"] = _ratio(
                t.get("cpu_us_per_delivery"), other.get("cpu_us_per_delivery")
            )
            row[f"p99_vs_{name}"] = _ratio(t.get("p99_ms"), other.get("p99_ms"))
            row[f"rss_vs_{name}"] = _ratio(t.get("rss_per_conn_kb"), other.get("rss_per_conn_kb"))
        out.append(row)
    return out


def _order(key: tuple[int, str]) -> tuple[int, int]:
    order = {"burst": 0, "steady": 1, "slow": 2}
    return key[0], order.get(key[1], 9)


def goals(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each goal of issue 6 with the measured value and whether it is met."""
    out: list[dict[str, Any]] = []
    counts = sorted({c["clients"] for c in cells})

    def add(goal: str, value: str, met: bool | None) -> None:
        out.append({"goal": goal, "measured": value, "met": met})

    for workload in ("burst", "steady"):
        for n in counts:
            t = _find(cells, TAKHIN, n, workload)
            p = _find(cells, PEER, n, workload)
            r = _ratio(t.get("cpu_us_per_delivery"), p.get("cpu_us_per_delivery"))
            add(
                f"CPU/delivery <= {CPU_GOAL}x peer, {workload}, {n:,} clients",
                f"{_x(r)} ({_fmt(t.get('cpu_us_per_delivery'), 2)} vs "
                f"{_fmt(p.get('cpu_us_per_delivery'), 2)} us)",
                None if r is None else r <= CPU_GOAL,
            )
    n_max = max(counts) if counts else 0
    t = _find(cells, TAKHIN, n_max, "steady")
    if t:
        period_ms = 1000 / t["rate"]
        on_time = t["p99_ms"] <= period_ms and t["max_late_ms"] <= period_ms and t["lost"] == 0
        add(
            f"steady {t['rate']:g}/s to {n_max:,} clients on schedule "
            f"(p99 and publisher lateness <= {period_ms:g} ms, nothing lost)",
            f"p99 {_fmt(t['p99_ms'])} ms, max {_fmt(t['max_ms'])} ms, publisher late "
            f"<= {_fmt(t['max_late_ms'])} ms, lost {t['lost']:,}",
            on_time,
        )
    for workload in ("steady", "burst"):
        n = 5000 if 5000 in counts else n_max
        t = _find(cells, TAKHIN, n, workload)
        p = _find(cells, PEER, n, workload)
        r = _ratio(t.get("p99_ms"), p.get("p99_ms"))
        add(
            f"p99 latency <= {P99_GOAL}x peer at {n:,} clients ({workload})",
            f"{_x(r)} ({_fmt(t.get('p99_ms'))} vs {_fmt(p.get('p99_ms'))} ms)",
            None if r is None else r <= P99_GOAL,
        )
    for n in counts:
        t = _find(cells, TAKHIN, n, "burst") or _find(cells, TAKHIN, n, "steady")
        p = _find(cells, PEER, n, "burst") or _find(cells, PEER, n, "steady")
        r = _ratio(t.get("rss_per_conn_kb"), p.get("rss_per_conn_kb"))
        add(
            f"RSS/connection <= peer, {n:,} clients",
            f"{_x(r)} ({_fmt(t.get('rss_per_conn_kb'))} vs {_fmt(p.get('rss_per_conn_kb'))} KB)",
            None if r is None else r <= 1.0,
        )
    for n in counts:
        s = _find(cells, TAKHIN, n, "slow")
        b = _find(cells, TAKHIN, n, "steady")
        if not s:
            continue
        rise = _ratio(s.get("cpu_us_per_delivery"), b.get("cpu_us_per_delivery"))
        add(
            f"slow readers, {n:,} clients: others lose nothing",
            f"lost {s['lost']:,}",
            s["lost"] == 0,
        )
        add(
            f"slow readers, {n:,} clients: CPU/delivery rises < {SLOW_CPU_RISE_GOAL:.0%}",
            "-"
            if rise is None
            else f"{(rise - 1) * 100:+.1f}% "
            f"({_fmt(s['cpu_us_per_delivery'], 2)} vs {_fmt(b.get('cpu_us_per_delivery'), 2)} us)",
            None if rise is None else rise - 1 < SLOW_CPU_RISE_GOAL,
        )
        add(
            f"slow readers, {n:,} clients: stalled ones closed at the write deadline",
            f"{s.get('stalled_closed', 0):,} of {s.get('stalled', 0):,} closed within "
            f"{_fmt(s.get('stalled_close_wait_s'))} s after the run; "
            f"{s.get('server_dropped', 0):,} messages dropped for them",
            None if not s.get("stalled") else s.get("stalled_closed", 0) == s.get("stalled"),
        )
    return out


def markdown(meta: dict[str, Any], cells: list[dict[str, Any]]) -> str:
    lines = [
        f"Run: `{meta['command']}` on {meta['date']} ({meta['host']}; code {meta.get('git', '?')})",
        "",
        "| clients | workload | server | deliveries/s | CPU us/delivery (schedstat) | p50 ms "
        "| p99 ms | max ms | lost | gaps | RSS/conn KB | conn/s | server core % "
        "| client core % | other load % core0/core1 |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in sorted(cells, key=lambda c: (*_order((c["clients"], c["workload"])), c["server"])):
        if c["status"] != "ok":
            lines.append(
                f"| {c['clients']:,} | {c['workload']} | {c['server']} | FAILED: "
                f"{(c['error'] or '').replace('|', '/')[:160]} ||||||||||||"
            )
            continue
        lines.append(
            "| "
            + " | ".join(
                [
                    f"{c['clients']:,}",
                    c["workload"],
                    c["server"],
                    _fmt(c["deliveries_per_s"]),
                    f"{_fmt(c['cpu_us_per_delivery'], 2)} ({_fmt(c['sched_us_per_delivery'], 2)})",
                    _fmt(c["p50_ms"]),
                    _fmt(c["p99_ms"]),
                    _fmt(c["max_ms"]),
                    _fmt(c["lost"]),
                    _fmt(c["gaps"]),
                    _fmt(c["rss_per_conn_kb"]),
                    _fmt(c["connect_rate"]),
                    _fmt(c["server_core_pct"], 0),
                    _fmt(c["client_core_pct"], 0),
                    f"{c['other_core0_pct']:.0f}/{c['other_core1_pct']:.0f}",
                ]
            )
            + " |"
        )
    lines += [
        "",
        "Ratios (takhin-ws / other; below 1 is better for takhin-ws):",
        "",
        "| clients | workload | CPU/deliv vs peer | vs floor | p99 vs peer | vs floor "
        "| RSS/conn vs peer | vs floor |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in ratios(cells):
        lines.append(
            f"| {r['clients']:,} | {r['workload']} | {_x(r['cpu_vs_peer'])} | "
            f"{_x(r['cpu_vs_floor'])} | {_x(r['p99_vs_peer'])} | {_x(r['p99_vs_floor'])} | "
            f"{_x(r['rss_vs_peer'])} | {_x(r['rss_vs_floor'])} |"
        )
    lines += ["", "Goals of issue 6:", "", "| goal | measured | met |", "|---|---|---|"]
    for g in goals(cells):
        met = {True: "yes", False: "**no**", None: "n/a"}[g["met"]]
        lines.append(f"| {g['goal']} | {g['measured']} | {met} |")
    slow = [c for c in cells if c["workload"] == "slow" and c["status"] == "ok"]
    if slow:
        lines += [
            "",
            "Slow readers (5% stalled; figures above are for the others):",
            "",
            "| clients | server | stalled | closed by server | within s | dropped for them |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for c in sorted(slow, key=lambda c: (c["clients"], c["server"])):
            lines.append(
                f"| {c['clients']:,} | {c['server']} | {c.get('stalled', 0):,} | "
                f"{c.get('stalled_closed', 0):,} | {_fmt(c.get('stalled_close_wait_s'))} | "
                f"{_fmt(c.get('server_dropped'))} |"
            )
    return "\n".join(lines) + "\n"


def write(out_dir: Path, meta: dict[str, Any], cells: list[dict[str, Any]]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "cells": cells, "ratios": ratios(cells), "goals": goals(cells)}
    paths = [out_dir / "results.json", out_dir / "results.md"]
    text = json.dumps(data, indent=1)
    # lists of numbers (the latency histograms) on one line each
    text = _NUMBER_LIST.sub(
        lambda m: "[" + ", ".join(t.strip(",") for t in m.group(0)[1:-1].split()) + "]", text
    )
    paths[0].write_text(text + "\n")
    paths[1].write_text(markdown(meta, cells))
    paths += plots(out_dir, cells)
    return paths


def plots(out_dir: Path, cells: list[dict[str, Any]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [c for c in cells if c["status"] == "ok"]
    if not ok:
        return []
    colors = {TAKHIN: "tab:blue", PEER: "tab:orange", FLOOR: "tab:gray"}
    paths = []

    workloads = [w for w in ("burst", "steady", "slow") if any(c["workload"] == w for c in ok)]
    counts = sorted({c["clients"] for c in ok})
    fig, axes = plt.subplots(
        len(workloads),
        len(counts),
        figsize=(3.6 * len(counts), 2.9 * len(workloads)),
        squeeze=False,
    )
    for i, workload in enumerate(workloads):
        for j, n in enumerate(counts):
            ax = axes[i][j]
            for server in (TAKHIN, PEER, FLOOR):
                cell = _find(ok, server, n, workload)
                if cell:
                    xs, ys = cdf(cell["latency_hist"])
                    ax.step(
                        [x * 1000 for x in xs], ys, where="post", label=server, color=colors[server]
                    )
            ax.set_xscale("log")
            ax.set_ylim(0, 1.01)
            ax.grid(True, which="both", alpha=0.3)
            ax.set_title(f"{workload}, {n:,} clients", fontsize=9)
            if i == len(workloads) - 1:
                ax.set_xlabel("latency (ms)")
            if j == 0:
                ax.set_ylabel("fraction of deliveries")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Publish-to-receive latency CDF")
    fig.tight_layout()
    path = out_dir / "latency_cdf.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    paths.append(path)

    fig, axes = plt.subplots(1, len(workloads), figsize=(4.5 * len(workloads), 3.6), squeeze=False)
    for k, workload in enumerate(workloads):
        ax = axes[0][k]
        for server in (TAKHIN, PEER, FLOOR):
            pts = [
                (c["clients"], c["cpu_us_per_delivery"])
                for c in ok
                if c["server"] == server and c["workload"] == workload
            ]
            pts.sort()
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=server, color=colors[server])
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(workload)
        ax.set_xlabel("clients")
        if k == 0:
            ax.set_ylabel("server CPU us per delivery")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "cpu_per_delivery.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    paths.append(path)
    return paths


def summary_line(cell: dict[str, Any]) -> str:
    if cell["status"] != "ok":
        head = f"{cell['server']:>10} {cell['clients']:>6,} {cell['workload']:<6}"
        return f"{head} FAILED {cell['error']}"
    return (
        f"{cell['server']:>10} {cell['clients']:>6,} {cell['workload']:<6} "
        f"{cell['cpu_us_per_delivery']:6.2f} us/deliv  p50 {cell['p50_ms']:8.1f} ms  "
        f"p99 {cell['p99_ms']:8.1f} ms  lost {cell['lost']:<6} gaps {cell['gaps']:<4} "
        f"RSS/conn {cell['rss_per_conn_kb']:5.1f} KB  client core {cell['client_core_pct']:3.0f}%  "
        f"others {cell['other_core0_pct']:.0f}/{cell['other_core1_pct']:.0f}%"
    )
