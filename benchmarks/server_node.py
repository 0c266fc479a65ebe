"""The Node.js peer: the ``ws`` package's ``WebSocketServer`` (``benchmarks/node/``).

``python -m benchmarks.server_node --cpu 0`` pins itself, then replaces itself with
``node benchmarks/node/server.js <payload template>`` (so the process the harness
measures is node's), which speaks the same stdin/stdout protocol as the other
benchmark servers. Needs ``node`` and, once, ``npm install`` in ``benchmarks/node``
(``ws`` pinned in its ``package.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from benchmarks.common import child_setup, template_envelope_dict

NODE_DIR = Path(__file__).resolve().parent / "node"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    child_setup(args.cpu)
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "ws").is_dir():
        sys.stdout.write(
            json.dumps({"error": "needs node and `npm install` in benchmarks/node"}) + "\n"
        )
        sys.stdout.flush()
        return
    template = json.dumps(template_envelope_dict())
    os.execv(node, [node, str(NODE_DIR / "server.js"), template])


if __name__ == "__main__":
    main()
