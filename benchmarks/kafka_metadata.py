"""``python -m benchmarks.kafka_metadata --bootstrap HOST:PORT``: what the ``kafka``
source's metadata read costs, over the Kafka protocol itself
(``sources/kafka/admin/metadata.py``) against librdkafka's ``list_topics``, on a broker
already set up (e.g. the one ``benchmarks/kafka_tick.py`` builds, or
``benchmarks/kafka_cluster.py``'s).

Two clients of the source, one with each path, read the whole metadata in turn
(ROUNDS times each, alternated, a pause between two); per read: the CPU of this whole
process (``time.process_time``: librdkafka's own threads included) and the wall time.
Both must give the same partitions.
"""

from __future__ import annotations

import argparse
import statistics
import time

import orjson

from takhin_ws.sources.kafka.admin.client import KafkaAdmin

#: Seconds each read may take.
DEADLINE = 10.0
#: Seconds between two reads (the broker's own work settles).
PAUSE = 0.2


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.kafka_metadata", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--bootstrap", required=True, help="the broker at HOST:PORT")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    clients = {
        "protocol": KafkaAdmin(args.bootstrap, describe_batch=1),
        "librdkafka": KafkaAdmin(args.bootstrap, describe_batch=1),
    }
    plain = clients["librdkafka"]
    if plain.direct is not None:
        plain.direct.close()
        plain.direct = None
    try:
        answers = {name: c.metadata(time.monotonic() + DEADLINE) for name, c in clients.items()}
        if answers["protocol"] != answers["librdkafka"]:
            raise SystemExit("the two paths gave different partitions")
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
        for _ in range(args.rounds):
            for name, client in clients.items():
                cpu, wall = time.process_time(), time.perf_counter()
                client.metadata(time.monotonic() + DEADLINE)
                times[name].append(
                    ((time.process_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000)
                )
                time.sleep(PAUSE)
    finally:
        for client in clients.values():
            client.close()
    partitions = sum(len(ids) for ids in answers["protocol"].values())
    for name, rows in times.items():
        cpu_ms = [c for c, _ in rows]
        wall_ms = [w for _, w in rows]
        summary = {
            "path": name,
            "topics": len(answers[name]),
            "partitions": partitions,
            "rounds": args.rounds,
            "cpu_ms": {"median": statistics.median(cpu_ms), "max": max(cpu_ms)},
            "wall_ms": {"median": statistics.median(wall_ms), "max": max(wall_ms)},
        }
        print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    main()
