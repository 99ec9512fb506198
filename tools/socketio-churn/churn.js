// The reconnect-churn scenario of `eventide-load cluster --drop-every-secs …` against
// server.js: SUBSCRIBERS Socket.IO clients, subscriber i in room provider-(i % P + 1);
// once all have joined, the server makes the changes; every client drops its
// transport every DROP_EVERY s (± DROP_JITTER) for DROP_FOR s and reconnects, and
// Socket.IO's connection-state recovery replays what it missed. Prints one RESULT
// line: rejoin latency (opening again → `connect` with `recovered`), delivery latency,
// and what was lost, repeated or out of order.
//
//   node churn.js --url http://127.0.0.1:9100 --subscribers 1000 --providers 10 \
//     --changes 1500 --rate 25 --drop-every-secs 10 --drop-jitter 0.5 --drop-for-secs 2
const { io } = require("socket.io-client");

const arg = (name, fallback) => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? process.argv[at + 1] : fallback;
};
const url = arg("url", "http://127.0.0.1:9100");
const subscribers = Number(arg("subscribers", 1000));
const providers = Number(arg("providers", 10));
const changes = Number(arg("changes", 1500));
const rate = Number(arg("rate", 25));
const dropEvery = Number(arg("drop-every-secs", 10));
const dropJitter = Number(arg("drop-jitter", 0.5));
const dropFor = Number(arg("drop-for-secs", 2));
const settle = Number(arg("settle-secs", 10));

const now_us = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const percentile = (sorted, p) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : 0;
const summary = (name, values) => {
  const sorted = Float64Array.from(values).sort();
  return {
    [`${name}_count`]: sorted.length,
    [`${name}_p50_us`]: percentile(sorted, 50),
    [`${name}_p99_us`]: percentile(sorted, 99),
    [`${name}_max_us`]: sorted.length ? sorted[sorted.length - 1] : 0,
  };
};

const rejoin = [];
const delivery = [];
const counts = { joined: 0, reconnects: 0, not_recovered: 0, duplicated: 0, reordered: 0, connect_errors: 0 };
let stopping = false;
const clients = [];

for (let i = 0; i < subscribers; i++) {
  const room = `provider-${(i % providers) + 1}`;
  const client = { room, last: 0, seen: new Set(), reopened: 0, joined: false };
  const socket = io(url, { transports: ["websocket"], reconnection: false, forceNew: true });
  client.socket = socket;
  clients.push(client);
  socket.on("connect", () => {
    if (client.reopened) {
      if (socket.recovered) rejoin.push(now_us() - client.reopened);
      else counts.not_recovered += 1;
      client.reopened = 0;
    }
    if (!socket.recovered) {
      socket.emit("joinRoom", room, () => {
        if (!client.joined) counts.joined += 1;
        client.joined = true;
      });
    }
    if (dropEvery > 0 && !stopping) {
      const f = 1 + dropJitter * (2 * Math.random() - 1);
      setTimeout(() => {
        if (stopping) return;
        // A dropped transport, not a goodbye: recovery applies to the former only.
        socket.io.engine.close();
        counts.reconnects += 1;
        setTimeout(() => {
          client.reopened = now_us();
          socket.connect();
        }, dropFor * 1000);
      }, dropEvery * f * 1000);
    }
  });
  socket.on("connect_error", () => {
    counts.connect_errors += 1;
    setTimeout(() => socket.connect(), 500);
  });
  socket.on("availabilityUpdated", (event) => {
    delivery.push(now_us() - event.t);
    if (client.seen.has(event.version)) counts.duplicated += 1;
    else if (event.version < client.last) counts.reordered += 1;
    client.seen.add(event.version);
    client.last = Math.max(client.last, event.version);
  });
}

const started = Date.now();
const waitJoined = setInterval(async () => {
  if (counts.joined < subscribers) {
    if (Date.now() - started > 120000) {
      console.error(`only ${counts.joined} of ${subscribers} joined`);
      process.exit(1);
    }
    return;
  }
  clearInterval(waitJoined);
  await fetch(`${url}/start?changes=${changes}&rate=${rate}&providers=${providers}`, { method: "POST" });
  setTimeout(finish, (changes / rate + settle) * 1000);
}, 100);

function finish() {
  stopping = true;
  const perRoom = Math.floor(changes / providers);
  let lost = 0;
  for (const client of clients) {
    for (let v = 1; v <= perRoom; v++) if (!client.seen.has(v)) lost += 1;
    client.socket.disconnect();
  }
  const result = {
    command: "socketio-churn",
    url,
    subscribers,
    providers,
    changes,
    rate_per_sec: rate,
    drop_every_secs: dropEvery,
    drop_jitter: dropJitter,
    drop_for_secs: dropFor,
    expected: perRoom * subscribers,
    lost,
    ...counts,
    ...summary("rejoin", rejoin),
    ...summary("delivery", delivery),
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
  process.exit(0);
}
