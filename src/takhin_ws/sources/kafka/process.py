"""The collector process: ``python -m takhin_ws.sources.kafka.process``.

The ``kafka`` source runs librdkafka here, in a child of the server
(:mod:`takhin_ws.sources.kafka.worker` starts, watches and restarts it), so that an abort, a
hang or a leak in the client library never touches a WebSocket connection, and a tick's
CPU never holds the server's event loop. It reads frames
(:mod:`takhin_ws.sources.kafka.pipe`) from its standard input: first its settings
(answered ``{"ready": true}``, or ``{"fatal": "..."}`` for client properties librdkafka
refuses), then one request per tick, answered in order on its standard output with the snapshot
(in pieces) or the error. Its log lines go the same way, to the server's loggers.
Anything else written to its standard output goes to its standard error, which the
server logs; so does the Python stack of every thread when it aborts (a failed
assertion in librdkafka) or crashes on a Python thread (:mod:`faulthandler`; a
segmentation fault on one of librdkafka's own threads, which block signals, leaves
nothing but the signal). It exits when its standard input closes, or after a tick
that left it above :data:`MAX_RSS` bytes of memory (exit code :data:`EXIT_MEMORY`: a
leak is cut short by a new process).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import Any, BinaryIO, Final

from .pipe import FrameError, FrameReader, frame, snapshot_frames

__all__ = ["EXIT_MEMORY", "EXIT_REFUSED", "MAX_RSS", "main"]

#: Resident memory (bytes) above which the collector ends itself after a tick.
MAX_RSS: Final = 1024 * 1024 * 1024
#: Its exit code then.
EXIT_MEMORY: Final = 75
#: Its exit code when the client's settings are refused (after saying why).
EXIT_REFUSED: Final = 2
#: Bytes read from the standard input at once.
_READ: Final = 65536


class FrameWriter:
    """Frames to the server, whole and in order from any thread (librdkafka logs from
    its own threads)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def send(self, *frames: bytes) -> None:
        with self._lock:
            for data in frames:
                self._out.write(data)
            self._out.flush()


class FrameLog(logging.Handler):
    """Log records as ``{"log": [logger, level, message]}`` frames."""

    def __init__(self, writer: FrameWriter) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            self._writer.send(frame({"log": [record.name, record.levelno, message]}))
        except Exception:  # a log line that cannot be sent must not end the tick
            self.handleError(record)


def _requests(stdin: BinaryIO) -> Iterator[dict[str, Any]]:
    reader = FrameReader()
    while True:
        message = reader.next()
        if message is not None:
            yield message
            continue
        data = stdin.read1(_READ) if hasattr(stdin, "read1") else stdin.read(_READ)
        if not data:
            return
        reader.feed(data)


def _rss() -> int:
    """Resident memory of this process in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def serve(stdin: BinaryIO, writer: FrameWriter) -> int:
    """Answer ticks until the standard input closes; the exit code."""
    from .collector import KafkaCollector  # confluent-kafka: here only
    from .errors import KafkaSourceError, is_incompatible

    requests = _requests(stdin)
    settings = next(requests, None)
    if settings is None:
        return 0
    for name, level in settings.pop("levels", {}).items():
        logging.getLogger(name).setLevel(level)
    try:
        collector = KafkaCollector(
            settings["bootstrap"],
            [tuple(pair) for pair in settings["config"]],
            show_internal_topics=settings["show_internal_topics"],
            describe_batch=settings["describe_batch"],
            reset_after=settings["reset_after"],
        )
    except ValueError as exc:  # a client property librdkafka refuses
        writer.send(frame({"fatal": str(exc)}))
        return EXIT_REFUSED
    writer.send(frame({"ready": True}))
    try:
        for request in requests:
            tick = request["tick"]
            try:
                snapshot = collector.collect(request["timeout"])
            except KafkaSourceError as exc:
                incompatible = is_incompatible(exc)
                writer.send(frame({"tick": tick, "error": str(exc), "incompatible": incompatible}))
            except Exception as exc:  # a bug: said, and the next tick tries again
                logging.getLogger("takhin_ws.metrics").exception("kafka collector tick failed")
                writer.send(frame({"tick": tick, "error": f"kafka collector failed: {exc!r}"}))
            else:
                writer.send(*snapshot_frames(tick, snapshot))
            if _rss() > MAX_RSS:
                logging.getLogger("takhin_ws.metrics").warning(
                    "kafka collector process uses %d MiB, over its %d MiB: ending it (a new "
                    "one is started)",
                    _rss() >> 20,
                    MAX_RSS >> 20,
                )
                return EXIT_MEMORY
    finally:
        collector.close()
    return 0


def main() -> int:
    # the frames own the standard output; anything else written there goes to stderr
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    # a crash in C (librdkafka) says where every thread was, in the server's log
    faulthandler.enable(sys.stderr, all_threads=True)
    writer = FrameWriter(out)
    root = logging.getLogger()
    root.handlers[:] = [FrameLog(writer)]
    root.setLevel(logging.WARNING)  # the server's own levels, per logger, come with the settings
    # the server decides when this process ends (its input closing, or a kill): a Ctrl-C
    # at a terminal, sent to the whole process group, is the server's to handle
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return serve(sys.stdin.buffer, writer)
    except (BrokenPipeError, FrameError) as exc:  # the server went away, or a bug
        print(f"kafka collector process: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
