"""What filtered metrics cost: one snapshot published to clients restricted by tokens.

``python -m benchmarks.filtered [--clients 1000] [--sets 1 10 100]
[--sizes 200x6x50 1000x12x300] [--repeat 5]`` publishes one snapshot of each cluster
size (``benchmarks.wire``'s, topics x partitions x groups) through a hub whose
``--clients`` subscribers (no-op ``offer``: the hub's own work only) are

- all unrestricted (no token, an API key, or a claim that grants everything), and
- spread round-robin over S distinct permission sets (S in ``--sets``), each granting
  ``metrics``, a tenth of the topics (``topic:orders.region-0<k>*``) and a tenth of the
  groups (``group:consumer-group-0<k>*``);

and reports the best CPU time (``time.process_time``) of ``--repeat`` publishes, and
the extra cost per distinct set. The filtered message is built once per set per publish
(checked: the hub holds exactly S filtered snapshots after each), never per client.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.micro import NoopSubscriber
from benchmarks.wire import snapshot
from takhin_ws import Hub, MonitoringMetrics
from takhin_ws.core.access.permissions import Permissions

DEFAULT_SIZES = ("200x6x50", "1000x12x300")


def permission_sets(count: int) -> list[Permissions]:
    """*count* distinct claims, each about a tenth of the topics and groups."""
    out = []
    for k in range(count):
        digit, rest = k % 10, k // 10
        tail = f"-{rest}" if rest else ""  # sets beyond ten differ by an extra pattern
        patterns = ["metrics", f"topic:orders.region-0{digit}*", f"group:consumer-group-0{digit}*"]
        if tail:
            patterns.append(f"group:unused{tail}")
        out.append(Permissions(patterns))
    return out


def publish_ms(metrics: MonitoringMetrics, clients: int, sets: int, repeat: int) -> float:
    """Best CPU ms of one ``publish`` to *clients* over *sets* permission sets (0: none)."""
    hub = Hub(max_clients=clients + 1)
    claims = permission_sets(sets)
    for i in range(clients):
        permissions = claims[i % sets] if sets else None
        hub.add_client(NoopSubscriber(), ["metrics"], permissions=permissions)
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        hub.publish("metrics", metrics)
        best = min(best, time.process_time() - start)
        built = len(hub._filtered)
        assert built == sets, f"{built} filtered snapshots for {sets} sets"
    return best * 1000


def measure(size: str, clients: int, sets: list[int], repeat: int) -> dict[str, Any]:
    topics, partitions, groups = (int(n) for n in size.split("x"))
    metrics = snapshot(topics, partitions, groups)
    base = publish_ms(metrics, clients, 0, repeat)
    row: dict[str, Any] = {"size": size, "unrestricted": base}
    for count in sets:
        row[count] = publish_ms(metrics, clients, count, repeat)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--sets", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    header = " | ".join(f"{s} sets ms (per set)" for s in args.sets)
    print(f"| cluster | {args.clients} clients unrestricted ms | {header} |")
    print("|---|---:|" + "---:|" * len(args.sets))
    for size in args.sizes:
        row = measure(size, args.clients, args.sets, args.repeat)
        base = row["unrestricted"]
        cells = " | ".join(f"{row[s]:.2f} ({(row[s] - base) / s:.2f})" for s in args.sets)
        print(f"| {size} | {base:.2f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
