"""What a sender can see of a slow reader: TCP_INFO while a steady reader's window is shut.

``python -m benchmarks.zero_window [--seconds 40] [--rate 10000]`` connects a reader
(the kernel's default receive buffer) that takes ``--rate`` bytes/s in 1,000-byte reads,
to a sender that keeps a 256 KiB send buffer (the server's ``--send-buffer-size``) full
with non-blocking ``send`` calls, both over loopback. Every 50 ms the sender reads
TCP_INFO (Linux) from its socket: bytes acknowledged by the peer, the window the peer
advertises, zero-window probes. It prints one line a second and, at the end, the longest
time neither ``send`` took a byte nor ``tcpi_bytes_acked`` moved: whether a progress
signal better than ``send`` exists for the write deadline (issue 21 item 2).
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import threading
import time
from typing import Final

#: The server's default per-client send buffer (``--send-buffer-size``).
SEND_BUFFER: Final = 256 * 1024
READ_SIZE: Final = 1000
SAMPLE_EVERY: Final = 0.05
#: Offsets in Linux's ``struct tcp_info`` (include/uapi/linux/tcp.h).
_PROBES, _BACKOFF, _BYTES_ACKED, _NOTSENT, _SND_WND = 3, 4, 120, 144, 228
_TCP_INFO_SIZE: Final = 256


def tcp_info(sock: socket.socket) -> dict[str, int]:
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    return {
        "bytes_acked": struct.unpack_from("Q", raw, _BYTES_ACKED)[0],
        "snd_wnd": struct.unpack_from("I", raw, _SND_WND)[0] if len(raw) > _SND_WND else -1,
        "notsent": struct.unpack_from("I", raw, _NOTSENT)[0],
        "probes": raw[_PROBES],
        "backoff": raw[_BACKOFF],
    }


def _reader(port: int, rate: float, until: float, received: list[int]) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        start = time.monotonic()
        while time.monotonic() < until:
            time.sleep(max(0.0, start + received[0] / rate - time.monotonic()))
            data = sock.recv(READ_SIZE)
            if not data:
                return
            received[0] += len(data)


def run(seconds: float, rate: float) -> dict[str, float]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        until = time.monotonic() + seconds
        received = [0]
        port = listener.getsockname()[1]
        thread = threading.Thread(target=_reader, args=(port, rate, until, received))
        thread.start()
        sock, _ = listener.accept()
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        sock.setblocking(False)
        chunk = b"x" * 65536
        t0 = last_send = last_ack = next_print = time.monotonic()
        acked = sent = 0
        worst_send = worst_ack = 0.0
        while time.monotonic() < until:
            try:
                n = sock.send(chunk)
            except BlockingIOError:
                n = 0
            now = time.monotonic()
            if n:
                sent += n
                worst_send = max(worst_send, now - last_send)
                last_send = now
            info = tcp_info(sock)
            if info["bytes_acked"] != acked:
                worst_ack = max(worst_ack, now - last_ack)
                acked, last_ack = info["bytes_acked"], now
            if now >= next_print:
                line = {"t": round(now - t0, 1), "sent": sent, "read": received[0], **info}
                print(json.dumps(line), flush=True)
                next_print += 1.0
            time.sleep(SAMPLE_EVERY)
    thread.join()
    return {
        "seconds": seconds,
        "rate_bytes_s": rate,
        "read": received[0],
        "longest_without_send_progress_s": round(worst_send, 1),
        "longest_without_bytes_acked_moving_s": round(worst_ack, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.zero_window", description=__doc__)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--rate", type=float, default=10_000.0, help="bytes/s the reader takes")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.seconds, args.rate)))


if __name__ == "__main__":
    main()
