"""Hold N WebSocket connections to a server open, from a process of its own (so that
what the server's process allocates for them can be measured alone):
``python hold_connections.py PORT N``. Each connection sends a plain upgrade request
and reads up to the end of the ``101`` head; then ``open`` is printed, and every
connection is closed once stdin reaches its end."""

from __future__ import annotations

import base64
import os
import socket
import sys


def upgrade(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET /api/monitoring/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n" % (port, key)
    )


def main() -> None:
    port, count = int(sys.argv[1]), int(sys.argv[2])
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(upgrade(port))
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(65536)
            if not data:
                sys.exit(f"closed during the handshake: {head[:80]!r}")
            head += data
        if not head.startswith(b"HTTP/1.1 101 "):
            sys.exit(f"refused: {head[:80]!r}")
        held.append(sock)
    print("open", flush=True)
    sys.stdin.read()
    for sock in held:
        sock.close()


if __name__ == "__main__":
    main()
