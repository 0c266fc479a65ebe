// The Node.js peer: the `ws` package's WebSocketServer, driven over stdin/stdout with
// the JSON-lines protocol of the Python benchmark servers (benchmarks/server_*.py).
// Started by benchmarks/server_node.py, which passes the payload template (the same
// metrics envelope the other servers send) as the first argument.
//
// Ops: publish {run, count, rate} (per message: the marker filled in, JSON.stringify
// once, ws.send of the string to every client), stats, quit. Compression off, as for
// the other servers; no keepalive pings (none of the runs is long enough to need one).
"use strict";
const { WebSocketServer } = require("ws");
const readline = require("readline");

const template = JSON.parse(process.argv[2]);

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function monotonicUs() {
  return process.hrtime.bigint() / 1000n; // CLOCK_MONOTONIC, as Python's time.monotonic()
}

function marker(run, seq, plannedUs) {
  const pad = (v, n) => String(v).padStart(n, "0");
  return `bm:${pad(run % 10000, 4)}:${pad(seq, 6)}:${pad(plannedUs, 16)}`;
}

const wss = new WebSocketServer({
  host: "127.0.0.1",
  port: 0,
  backlog: 4096,
  perMessageDeflate: false,
  maxPayload: 64 * 1024,
});
wss.on("connection", (ws) => ws.on("error", () => {}));

let offset = 0;

function send(run, seq, plannedUs) {
  template.data.topicStats[0].name = marker(run, seq, plannedUs);
  offset += 1;
  template.offset = offset;
  template.timestamp = Math.floor(Date.now() / 1000);
  const payload = JSON.stringify(template);
  for (const client of wss.clients) client.send(payload);
}

async function publish(run, count, rate) {
  const start = monotonicUs() + 5000n;
  let maxLate = 0;
  let first = start;
  let last = start;
  for (let seq = 0; seq < count; seq++) {
    let planned;
    if (rate > 0) {
      planned = start + BigInt(Math.round((seq / rate) * 1e6));
      const wait = Number(planned - monotonicUs()) / 1000;
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      maxLate = Math.max(maxLate, Number(monotonicUs() - planned) / 1000);
    } else {
      planned = monotonicUs();
    }
    send(run, seq, planned);
    if (seq === 0) first = planned;
    last = monotonicUs();
    if (rate <= 0) await new Promise((resolve) => setImmediate(resolve));
  }
  return {
    published: count,
    t_first: Number(first) / 1e6,
    t_last: Number(last) / 1e6,
    max_late_ms: maxLate,
  };
}

wss.on("listening", () => {
  reply({ ready: true, port: wss.address().port, pid: process.pid });
  const lines = readline.createInterface({ input: process.stdin });
  let queue = Promise.resolve();
  lines.on("line", (line) => {
    if (!line.trim()) return;
    const cmd = JSON.parse(line);
    queue = queue.then(async () => {
      if (cmd.op === "publish") {
        reply(await publish(Number(cmd.run), Number(cmd.count), Number(cmd.rate)));
      } else if (cmd.op === "stats") {
        reply({ clients: wss.clients.size });
      } else if (cmd.op === "quit") {
        reply({ bye: true });
        process.exit(0);
      } else {
        reply({ error: `unknown op ${cmd.op}` });
      }
    });
  });
  lines.on("close", () => process.exit(0));
});
