"""A stand-in for the collector process (``python tests/fake_collector.py``) that speaks
its frames without Kafka, so the server's side (``sources/kafka/worker.py``) can be tested
against every way a collector can behave. Its settings frame says how to behave:

- ``"behave": "ok"``: answers every tick with a snapshot whose timestamp is the number
  of requests it has read; ``"delay"`` seconds late if given; logs one line per tick;
  ``"start_delay"``: with any behaviour, that many seconds before it reads its first
  request (a start on a loaded machine);
- ``"hang"``: reads requests and answers none after the first ``"answers"`` (0 if not
  given);
- ``"garbage"``: answers with bytes that are not a frame;
- ``"refuse"``: says its settings are refused;
- ``"abort"``: writes a last line on stderr and aborts at once.
"""

from __future__ import annotations

import os
import sys
import time

from takhin_ws import MonitoringMetrics, Snapshot
from takhin_ws.sources.kafka.pipe import FrameReader, frame, snapshot_frames


def main() -> None:
    out = sys.stdout.buffer
    reader = FrameReader()
    requests = 0
    settings = None
    while True:
        data = os.read(0, 65536)
        if not data:
            return
        reader.feed(data)
        while (message := reader.next()) is not None:
            if settings is None:
                settings = message
                behave = settings["behave"]
                if behave == "abort":
                    sys.stderr.write("assertion failed: eonce->refcnt > 0\n")
                    sys.stderr.flush()
                    os.abort()
                if behave == "refuse":
                    out.write(frame({"fatal": "kafka client config refused: no.such.property"}))
                    out.flush()
                    sys.exit(2)
                out.write(frame({"ready": True}))
                out.flush()
                continue
            if not requests:
                time.sleep(settings.get("start_delay", 0))
            requests += 1
            if behave == "hang" and requests > settings.get("answers", 0):
                continue
            if behave == "garbage":
                out.write(b"\x00\x00\x00\x05oops!")
                out.flush()
                continue
            time.sleep(settings.get("delay", 0))
            snapshot = Snapshot(metrics=MonitoringMetrics(timestamp=requests))
            out.write(frame({"log": ["takhin_ws.metrics", 20, f"tick {message['tick']}"]}))
            for piece in snapshot_frames(message["tick"], snapshot):
                out.write(piece)
            out.flush()


if __name__ == "__main__":
    main()
