// A Socket.IO server with connection-state recovery, doing what the hub does in the
// churn scenario: clients join `provider-N` rooms; once started, it makes CHANGES
// changes at RATE per second round-robin over the rooms, each a versioned
// `availabilityUpdated` event stamped with the time it was made.
//
//   PORT=9100 node server.js
//   curl -X POST 'http://127.0.0.1:9100/start?changes=1500&rate=25&providers=10'
const http = require("node:http");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 9100);
const now_us = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (req.method !== "POST" || url.pathname !== "/start") {
    res.writeHead(404).end();
    return;
  }
  const changes = Number(url.searchParams.get("changes") || 1500);
  const rate = Number(url.searchParams.get("rate") || 25);
  const providers = Number(url.searchParams.get("providers") || 10);
  res.writeHead(202).end();
  const versions = new Array(providers).fill(0);
  const started = performance.now();
  let made = 0;
  const tick = () => {
    // Catch up with the schedule, as eventide-load's writers do.
    const due = Math.min(changes, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
    while (made < due) {
      const p = made % providers;
      versions[p] += 1;
      const room = `provider-${p + 1}`;
      io.to(room).emit("availabilityUpdated", { room, version: versions[p], n: made, t: now_us() });
      made += 1;
    }
    if (made < changes) setTimeout(tick, 1000 / rate / 2);
  };
  tick();
});

const io = new Server(server, {
  transports: ["websocket"],
  // The default window (2 minutes); middlewares are skipped on recovery, as the
  // Socket.IO documentation suggests.
  connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000, skipMiddlewares: true },
});

io.on("connection", (socket) => {
  socket.on("joinRoom", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack();
  });
});

server.listen(port, "127.0.0.1", () => console.log(`listening on ${port}`));
