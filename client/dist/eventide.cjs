"use strict";
var __defProp = Object.defineProperty;
var __getOwnPropDesc = Object.getOwnPropertyDescriptor;
var __getOwnPropNames = Object.getOwnPropertyNames;
var __hasOwnProp = Object.prototype.hasOwnProperty;
var __export = (target, all) => {
  for (var name in all)
    __defProp(target, name, { get: all[name], enumerable: true });
};
var __copyProps = (to, from, except, desc) => {
  if (from && typeof from === "object" || typeof from === "function") {
    for (let key of __getOwnPropNames(from))
      if (!__hasOwnProp.call(to, key) && key !== except)
        __defProp(to, key, { get: () => from[key], enumerable: !(desc = __getOwnPropDesc(from, key)) || desc.enumerable });
  }
  return to;
};
var __toCommonJS = (mod) => __copyProps(__defProp({}, "__esModule", { value: true }), mod);

// eventide.js
var eventide_exports = {};
__export(eventide_exports, {
  CLOSE_HEARTBEAT_TIMEOUT: () => CLOSE_HEARTBEAT_TIMEOUT,
  DEFAULTS: () => DEFAULTS,
  EventideError: () => EventideError,
  connect: () => connect
});
module.exports = __toCommonJS(eventide_exports);

// src/positions.js
function positions(storage, prefix) {
  const key = (room) => `${prefix}:${room}`;
  const read = (room) => {
    try {
      const value = JSON.parse(storage?.getItem(key(room)) ?? "null");
      return typeof value?.version === "number" ? value : void 0;
    } catch {
      return void 0;
    }
  };
  return {
    read,
    /** Read-merge-write: another tab further along the same epoch keeps its position, unless `force`. */
    write(room, version, epoch, force = false) {
      if (!storage || version === void 0) return;
      const theirs = read(room);
      if (!force && theirs && theirs.epoch === epoch && theirs.version >= version) return;
      try {
        storage.setItem(key(room), JSON.stringify(epoch === void 0 ? { version } : { version, epoch }));
      } catch {
      }
    },
    remove(room) {
      try {
        storage?.removeItem?.(key(room));
      } catch {
      }
    }
  };
}

// src/util.js
var DEFAULTS = Object.freeze({
  requestTimeoutMs: 1e4,
  connectTimeoutMs: 1e4,
  minBackoffMs: 500,
  maxBackoffMs: 15e3,
  pingIntervalMs: 2e4,
  pongTimeoutMs: 1e4,
  storageKey: "eventide:position"
});
var STABLE_AFTER_MS = 5e3;
var REFRESH_AHEAD_MS = 3e4;
var REFRESH_FLOOR_MS = 5e3;
var ORIGIN_SUSPECT_AFTER = 3;
var ORIGIN_SUSPECT_FOR_MS = 1e4;
var CLOSE_HEARTBEAT_TIMEOUT = 4e3;
var IDEMPOTENT = /* @__PURE__ */ new Set(["joinRoom", "leaveRoom", "ping"]);
var REFUSED = /* @__PURE__ */ new Set(["forbidden", "too_many_rooms", "bad_request", "unauthorized", "unknown_event"]);
var LIFECYCLE = /* @__PURE__ */ new Set(["state", "room", "resync", "close", "failed", "left", "message"]);
var EventideError = class extends Error {
  constructor(code, message, data) {
    super(message);
    this.name = "EventideError";
    this.code = code;
    this.data = data;
  }
};
function jwtClaim(token, claim) {
  try {
    const b64 = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const value = JSON.parse(atob(b64 + "=".repeat((4 - b64.length % 4) % 4)))[claim];
    return typeof value === "number" ? value : void 0;
  } catch {
    return void 0;
  }
}
function refreshDelay(token, now) {
  const exp = jwtClaim(token, "exp");
  if (exp === void 0) return void 0;
  const iat = jwtClaim(token, "iat") ?? now / 1e3;
  const ahead = Math.min(REFRESH_AHEAD_MS, Math.max(0, (exp - iat) * 500));
  return Math.max(REFRESH_FLOOR_MS, exp * 1e3 - ahead - now);
}
var expiresSoon = (token) => (jwtClaim(token, "exp") ?? Infinity) * 1e3 - Date.now() < REFRESH_AHEAD_MS;
function resolveUrl(url, http = false) {
  const base = globalThis.location?.href;
  if (url == null && !base) throw new TypeError("connect: options.url is required outside a browser");
  const u = new URL(url ?? "/ws", base);
  const map = http ? { "ws:": "http:", "wss:": "https:" } : { "http:": "ws:", "https:": "wss:" };
  u.protocol = map[u.protocol] ?? u.protocol;
  return u.href;
}
function handshakeStatus(ev) {
  const match = /Unexpected server response: (\d{3})/.exec(String(ev?.message ?? ev?.error?.message ?? ""));
  return match ? Number(match[1]) : void 0;
}
function fatalClose(code, reason, canRefresh) {
  if (code === 1008) return { reason: "policy", message: `the hub closed the connection for policy (${reason || "flooding"})` };
  if (code === 4003) return { reason: "revoked", message: "the hub revoked this connection" };
  if (code === 4001 && !canRefresh) return { reason: "token_expired", message: "the token expired; no onTokenRefresh to renew it" };
  return void 0;
}
var backoff = (opt, n) => Math.random() * Math.min(opt.maxBackoffMs, opt.minBackoffMs * 2 ** Math.min(n, 30));

// src/rooms.js
function roomTable({ opt, store, emit, request, isOpen, onRejoined }) {
  const rooms = /* @__PURE__ */ new Map();
  const rejoining = /* @__PURE__ */ new Set();
  function info(entry) {
    const out = { room: entry.room, state: entry.state, version: entry.version };
    if (entry.epoch !== void 0) out.epoch = entry.epoch;
    if (entry.reason !== void 0) out.reason = entry.reason;
    return out;
  }
  function setState(entry, next, reason) {
    if (entry.state === next && entry.reason === reason) return;
    entry.state = next;
    entry.reason = reason;
    emit("room", info(entry));
  }
  function settle(entry) {
    if (rooms.get(entry.room) !== entry) return;
    if (!isOpen() || entry.awaiting) setState(entry, entry.joined ? "recovering" : "joining");
    else setState(entry, entry.resyncs > 0 ? "resyncing" : "live");
  }
  function persist(entry, force = false) {
    if (entry.resyncs > 0 || entry.stale) return;
    store.write(entry.room, entry.version, entry.epoch, force);
  }
  function drop(entry, reason, err) {
    if (rooms.get(entry.room) !== entry) return;
    rooms.delete(entry.room);
    clearTimeout(entry.retryTimer);
    doneRejoining(entry.room);
    for (const w of entry.waiters.splice(0)) w.reject(err);
    setState(entry, "left", reason);
  }
  function doneRejoining(room) {
    rejoining.delete(room);
    if (isOpen() && rejoining.size === 0) onRejoined();
  }
  function sendJoin(entry) {
    if (!isOpen() || entry.sending || rooms.get(entry.room) !== entry) return;
    const since = entry.version;
    const epoch = entry.epoch;
    const data = { room: entry.room };
    if (since !== void 0) Object.assign(data, { since }, epoch !== void 0 ? { epoch } : {});
    entry.sending = true;
    request("joinRoom", data, {
      resend: false,
      onReply: (reply) => onJoined(entry, since, epoch, reply)
    }).catch((err) => onJoinFailed(entry, err));
  }
  function onJoined(entry, since, epoch, data) {
    entry.sending = false;
    if (rooms.get(entry.room) !== entry) return;
    entry.awaiting = false;
    entry.failures = 0;
    const version = data?.version;
    if (typeof version === "number") {
      const newEpoch = data.epoch ?? epoch;
      const epochChanged = !!epoch && data.epoch !== void 0 && data.epoch !== epoch;
      if (since === void 0) {
        entry.version = version;
        entry.epoch = newEpoch;
        persist(entry);
      } else if (data.recovered === false || epochChanged || version < since) {
        resync(entry, version, newEpoch);
      } else {
        entry.epoch = newEpoch;
      }
    }
    entry.joined = true;
    settle(entry);
    for (const w of entry.waiters.splice(0)) w.resolve(data);
    doneRejoining(entry.room);
  }
  function onJoinFailed(entry, err) {
    entry.sending = false;
    if (rooms.get(entry.room) !== entry || ["disconnected", "closed", "failed"].includes(err.code)) return;
    if (REFUSED.has(err.code)) return drop(entry, err.code, err);
    emit("error", { code: err.code, message: err.message, room: entry.room });
    clearTimeout(entry.retryTimer);
    entry.retryTimer = setTimeout(() => sendJoin(entry), backoff(opt, entry.failures++));
  }
  function resync(entry, version, epoch) {
    entry.version = version;
    if (epoch !== void 0) entry.epoch = epoch;
    entry.resyncs += 1;
    settle(entry);
    const about = { room: entry.room, version };
    if (entry.epoch !== void 0) about.epoch = entry.epoch;
    Promise.allSettled(emit("resync", about)).then((outcomes) => {
      entry.resyncs -= 1;
      const failed = outcomes.find((o) => o.status === "rejected");
      if (failed) {
        entry.stale = true;
        emit("error", { code: "resync_failed", message: String(failed.reason?.message ?? failed.reason), room: entry.room });
      } else if (entry.resyncs === 0) {
        entry.stale = false;
      }
      if (rooms.get(entry.room) !== entry) return;
      if (entry.resyncs === 0) persist(entry, true);
      settle(entry);
    });
  }
  function versionOf(frame) {
    if (typeof frame.room !== "string") return void 0;
    const version = frame.event === "availabilityUpdated" ? frame.data?.version : frame.version;
    return typeof version === "number" ? version : void 0;
  }
  return {
    versions: () => new Map([...rooms].map(([room, entry]) => [room, entry.version])),
    info: (room) => rooms.has(room) ? info(rooms.get(room)) : void 0,
    /** A socket opened: every room is rejoined; false when there is none to wait for. */
    opened() {
      for (const entry of rooms.values()) rejoining.add(entry.room);
      for (const entry of [...rooms.values()]) sendJoin(entry);
      return rejoining.size > 0;
    },
    /** The socket dropped: every room waits for the next one. */
    dropped() {
      rejoining.clear();
      for (const entry of rooms.values()) {
        clearTimeout(entry.retryTimer);
        entry.awaiting = true;
        settle(entry);
      }
    },
    /** The client stopped: rooms never joined go with `err`; joined ones wait for reconnect(). */
    stopped(reason, err) {
      rejoining.clear();
      for (const entry of [...rooms.values()]) {
        clearTimeout(entry.retryTimer);
        entry.sending = false;
        if (!entry.joined) drop(entry, reason, err);
      }
    },
    /**
     * Follows a room; resolves with its `joinedRoom` data.
     * @param {string} room
     * @param {{ since?: number, epoch?: string }} [at]
     * @param {EventideError} [closed] the error to reject with when the client is stopped
     */
    join(room, { since, epoch } = {}, closed = void 0) {
      let entry = rooms.get(room);
      if (!entry) {
        const stored = since == null ? store.read(room) : void 0;
        entry = {
          room,
          state: void 0,
          reason: void 0,
          joined: false,
          awaiting: true,
          sending: false,
          version: since ?? stored?.version,
          epoch: since == null ? stored?.epoch : epoch,
          resyncs: 0,
          stale: false,
          failures: 0,
          waiters: [],
          retryTimer: void 0
        };
        rooms.set(room, entry);
        settle(entry);
      } else if (since != null && entry.version === void 0) {
        entry.version = since;
        entry.epoch = epoch;
      }
      const joined = new Promise((resolve, reject) => entry.waiters.push({ resolve, reject }));
      if (closed) {
        if (entry.joined) for (const w of entry.waiters.splice(0)) w.reject(closed);
        else drop(entry, closed.code, closed);
      } else {
        entry.awaiting = true;
        sendJoin(entry);
      }
      return joined;
    },
    leave(room) {
      const entry = rooms.get(room);
      if (entry) drop(entry, "left", new EventideError("left", `left ${room} before it was joined`));
      store.remove(room);
    },
    /** Frames that are not replies: the hub removing us, or saying a stream restarted. */
    unsolicited(frame) {
      const room = frame.data?.room;
      if (frame.event === "leftRoom" && rooms.has(room)) {
        const reason = frame.data.reason;
        store.remove(room);
        drop(rooms.get(room), reason ?? "removed", new EventideError(reason ?? "left", "the hub removed this client from the room"));
        emit("left", { room, reason });
      } else if (frame.event === "joinedRoom" && frame.data.recovered === false && rooms.has(room) && typeof frame.data.version === "number") {
        resync(rooms.get(room), frame.data.version, frame.data.epoch);
      }
    },
    /**
     * Classifies a frame before it is delivered: 'drop' (seen before, or a room left),
     * 'gap', or 'ok'; `version` is its position (undefined for unversioned frames).
     */
    check(frame) {
      const version = versionOf(frame);
      if (version === void 0) return { verdict: "ok", version };
      const entry = rooms.get(frame.room);
      if (!entry) return { verdict: "drop", version };
      const last = entry.version;
      if (last !== void 0 && version <= last) return { verdict: "drop", version };
      entry.version = version;
      return { verdict: last !== void 0 && version > last + 1 ? "gap" : "ok", version };
    },
    /** The frame was delivered: now its position may be stored, or a hole resynced. */
    delivered(frame, { verdict, version }) {
      const entry = rooms.get(frame.room);
      if (!entry || version === void 0) return;
      if (verdict === "gap") resync(entry, version);
      else persist(entry);
    }
  };
}

// eventide.js
function connect(options) {
  if (!options || options.token == null) throw new TypeError("connect: options.token is required");
  const WS = options.WebSocket ?? globalThis.WebSocket;
  if (typeof WS !== "function") throw new TypeError("connect: no WebSocket here; pass options.WebSocket");
  resolveUrl(options.url);
  const opt = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS)) if (options[key] != null) opt[key] = options[key];
  const store = positions(options.storage ?? null, opt.storageKey);
  const win = options.window ?? globalThis.window;
  const fetchFn = options.fetch ?? globalThis.fetch;
  const listeners = /* @__PURE__ */ new Map();
  const queue = [];
  const inflight = /* @__PURE__ */ new Map();
  let ws = null;
  let sockOpen = false;
  let phase = "opening";
  let state = "connecting";
  let closing = false;
  let failure = null;
  let gen = 0;
  let attempt = 0;
  let originSuspect = 0;
  let originSuspectSince = 0;
  let seq = 0;
  let activeToken;
  let refreshedToken;
  let reconnectTimer, stableTimer, refreshTimer, heartbeatTimer, connectTimer;
  function emit(event, ...args) {
    const results = [];
    for (const handler of [...listeners.get(event) ?? []]) {
      try {
        results.push(handler(...args));
      } catch (err) {
        console.error(`[eventide] "${event}" handler threw`, err);
        results.push(Promise.reject(err));
      }
    }
    return results;
  }
  const setState = (next) => state !== next && emit("state", state = next);
  function log(dir, frame, quiet = false) {
    if (!quiet) console.debug(dir === "in" ? "[eventide] \u21D0" : "[eventide] \u21D2", frame);
    try {
      options.log?.(dir, frame);
    } catch (err) {
      console.error("[eventide] log callback threw", err);
    }
  }
  const rooms = roomTable({
    opt,
    store,
    emit,
    request: (event, data, how) => request(event, data, how),
    isOpen: () => sockOpen,
    onRejoined: () => setState("live")
  });
  async function resolveToken() {
    let token = refreshedToken && !expiresSoon(refreshedToken) ? refreshedToken : typeof options.token === "function" ? await options.token() : options.token;
    if (expiresSoon(token) && options.onTokenRefresh) {
      try {
        token = refreshedToken = await options.onTokenRefresh();
      } catch (err) {
        emit("error", { code: "token_refresh_failed", message: String(err?.message ?? err) });
      }
    }
    if (!token) throw new Error("no token available");
    return token;
  }
  async function open() {
    const my = ++gen;
    clearTimeout(reconnectTimer);
    phase = "opening";
    let sock, token;
    try {
      token = await resolveToken();
      if (my !== gen || closing) return;
      activeToken = token;
      sock = ws = new WS(resolveUrl(options.url), ["eventide", `bearer.${token}`]);
    } catch (err) {
      if (my !== gen || closing) return;
      emit("error", { code: "connect_failed", message: String(err?.message ?? err) });
      return scheduleReconnect();
    }
    let status;
    connectTimer = setTimeout(() => sock === ws && abandon(sock, CLOSE_HEARTBEAT_TIMEOUT, `not open within ${opt.connectTimeoutMs} ms`), opt.connectTimeoutMs);
    sock.onopen = () => {
      if (sock !== ws) return;
      clearTimeout(connectTimer);
      sockOpen = true;
      phase = "open";
      originSuspect = 0;
      stableTimer = setTimeout(() => attempt = 0, STABLE_AFTER_MS);
      heard();
      scheduleRefresh();
      if (!rooms.opened()) setState("live");
      flush();
    };
    sock.onerror = (ev) => status ?? (status = handshakeStatus(ev));
    sock.onmessage = (ev) => sock === ws && receive(ev.data);
    sock.onclose = (ev) => sock === ws && dropped({ code: ev.code, reason: ev.reason, wasClean: ev.wasClean }, status, token);
  }
  function abandon(sock, code, reason) {
    const ignore = () => {
    };
    sock.onopen = sock.onmessage = sock.onclose = sock.onerror = ignore;
    try {
      typeof sock.terminate === "function" ? sock.terminate() : sock.close(code, reason);
    } catch {
    }
    dropped({ code, reason, wasClean: false }, void 0, void 0, true);
  }
  function dropped(info, status, token, timedOut = false) {
    const opened = sockOpen;
    ws = null;
    sockOpen = false;
    for (const timer of [stableTimer, refreshTimer, heartbeatTimer, connectTimer]) clearTimeout(timer);
    const lost = [...inflight.values()];
    inflight.clear();
    for (const req of lost.reverse()) {
      if (req.resend) queue.unshift(req);
      else {
        clearTimeout(req.timer);
        const why = req.internal || IDEMPOTENT.has(req.event) ? "connection closed before the reply" : `connection closed before the reply to ${req.event}; not sent again, since it may already have been applied`;
        req.reject(new EventideError("disconnected", why));
      }
    }
    rooms.dropped();
    emit("close", info);
    if (closing) return;
    const fatal = fatalClose(info.code, info.reason, !!options.onTokenRefresh);
    if (fatal) return shutdown({ ...fatal, code: info.code });
    if (opened || timedOut) return scheduleReconnect();
    refused(status, token, info.code);
  }
  async function refused(status, token, code) {
    const my = gen;
    setState("reconnecting");
    phase = "backoff";
    const probed = status === void 0;
    if (probed) status = await probe(token);
    if (my !== gen || closing) return;
    if (status === 401) {
      const fresh = options.onTokenRefresh ? await options.onTokenRefresh().catch(() => void 0) : void 0;
      if (my !== gen || closing) return;
      if (!fresh || fresh === token) {
        const why = options.onTokenRefresh ? "and onTokenRefresh gave no new one" : "no onTokenRefresh to renew it";
        return shutdown({ reason: "unauthorized", status, code, message: `the hub refused the token (HTTP 401); ${why}` });
      }
      refreshedToken = fresh;
    } else if (status === 403) {
      return shutdown({ reason: "origin", status, code, message: "the hub refused this origin (HTTP 403): it is not in EVENTIDE_ALLOWED_ORIGINS" });
    } else if (probed && status === 400) {
      if (originSuspect++ === 0) originSuspectSince = Date.now();
      const span = Date.now() - originSuspectSince;
      if (originSuspect >= ORIGIN_SUSPECT_AFTER && span >= ORIGIN_SUSPECT_FOR_MS) {
        return shutdown({ reason: "origin", code, message: `the hub accepts the token over HTTP but refused ${originSuspect} WebSocket handshakes in a row over ${Math.round(span / 1e3)} s: this origin is most likely not in EVENTIDE_ALLOWED_ORIGINS` });
      }
    }
    if (status !== 400) originSuspect = 0;
    scheduleReconnect();
  }
  async function probe(token) {
    if (typeof fetchFn !== "function" || !token) return void 0;
    const url = resolveUrl(options.url, true);
    const abort = typeof AbortController === "function" ? new AbortController() : void 0;
    const timer = setTimeout(() => abort?.abort(), opt.connectTimeoutMs);
    try {
      const res = await fetchFn(url, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store", signal: abort?.signal });
      return res.status;
    } catch {
      try {
        await fetchFn(url, { mode: "no-cors", cache: "no-store", signal: abort?.signal });
        return win?.document ? 403 : void 0;
      } catch {
        return void 0;
      }
    } finally {
      clearTimeout(timer);
    }
  }
  function shutdown(why) {
    closing = true;
    phase = "closed";
    gen += 1;
    failure = why ?? null;
    for (const timer of [reconnectTimer, stableTimer, refreshTimer, heartbeatTimer, connectTimer]) clearTimeout(timer);
    unwatch();
    const err = why ? new EventideError("failed", why.message, why) : new EventideError("closed", "client closed");
    for (const req of [...queue, ...inflight.values()]) {
      clearTimeout(req.timer);
      req.reject(err);
    }
    queue.length = 0;
    inflight.clear();
    rooms.stopped(why ? "failed" : "closed", err);
    setState("closed");
    if (why) emit("failed", why);
  }
  function scheduleReconnect() {
    if (closing) return;
    setState("reconnecting");
    phase = "backoff";
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(open, backoff(opt, attempt));
    attempt = Math.min(attempt + 1, 30);
  }
  function wake() {
    if (closing) return;
    if (phase === "backoff") {
      attempt = 0;
      open();
    } else if (phase === "open") probeSocket(ws);
  }
  function onVisibility() {
    if (win?.document?.visibilityState !== "hidden") wake();
  }
  function watch() {
    win?.addEventListener?.("online", wake);
    win?.addEventListener?.("offline", wake);
    win?.addEventListener?.("pageshow", wake);
    win?.document?.addEventListener?.("visibilitychange", onVisibility);
  }
  function unwatch() {
    win?.removeEventListener?.("online", wake);
    win?.removeEventListener?.("offline", wake);
    win?.removeEventListener?.("pageshow", wake);
    win?.document?.removeEventListener?.("visibilitychange", onVisibility);
  }
  function heard() {
    clearTimeout(heartbeatTimer);
    if (opt.pingIntervalMs > 0 && ws) heartbeatTimer = setTimeout(() => probeSocket(ws), opt.pingIntervalMs);
  }
  function probeSocket(sock) {
    if (!sock || sock !== ws || !sockOpen) return;
    clearTimeout(heartbeatTimer);
    const frame = { event: "ping", ref: `hb${++seq}` };
    log("out", frame, true);
    sock.send(JSON.stringify(frame));
    heartbeatTimer = setTimeout(() => {
      if (sock === ws) abandon(sock, CLOSE_HEARTBEAT_TIMEOUT, `no frame within ${opt.pongTimeoutMs} ms of a ping`);
    }, opt.pongTimeoutMs);
  }
  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    const delay = refreshDelay(activeToken, Date.now());
    if (!options.onTokenRefresh || delay === void 0) return;
    refreshTimer = setTimeout(refresh, Math.min(delay, 2 ** 31 - 1));
  }
  async function refresh() {
    const my = gen;
    try {
      const token = await options.onTokenRefresh();
      if (closing || my !== gen) return;
      refreshedToken = token;
      if (sockOpen) await request("refreshToken", { token }, { resend: false, internal: true });
      activeToken = token;
      scheduleRefresh();
    } catch (err) {
      if (closing || my !== gen || err?.code === "disconnected") return;
      emit("error", { code: "token_refresh_failed", message: String(err?.message ?? err) });
      clearTimeout(refreshTimer);
      if ((jwtClaim(activeToken, "exp") ?? 0) * 1e3 > Date.now()) refreshTimer = setTimeout(refresh, REFRESH_FLOOR_MS);
    }
  }
  function request(event, data, { resend = IDEMPOTENT.has(event), internal = false, onReply } = {}) {
    if (closing) return Promise.reject(failure ? new EventideError("failed", failure.message, failure) : new EventideError("closed", "client is closed"));
    return new Promise((resolve, reject) => {
      const req = { event, data, resend, internal, onReply, resolve, reject };
      req.timer = setTimeout(() => {
        const at = queue.indexOf(req);
        if (at >= 0) queue.splice(at, 1);
        else if (inflight.get(req.ref) === req) inflight.delete(req.ref);
        else return;
        reject(new EventideError("timeout", `no reply to ${event} within ${opt.requestTimeoutMs} ms`));
      }, opt.requestTimeoutMs);
      if (sockOpen) transmit(req);
      else queue.push(req);
    });
  }
  function transmit(req) {
    req.ref = `r${++seq}`;
    const frame = req.data === void 0 ? { event: req.event, ref: req.ref } : { event: req.event, data: req.data, ref: req.ref };
    inflight.set(req.ref, req);
    log("out", frame.event === "refreshToken" ? { ...frame, data: { token: "[redacted]" } } : frame, frame.event === "ping");
    ws.send(JSON.stringify(frame));
  }
  function flush() {
    while (queue.length && sockOpen) transmit(queue.shift());
  }
  function receive(raw) {
    heard();
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return log("in", raw);
    }
    log("in", frame, frame?.event === "pong");
    if (!frame || typeof frame.event !== "string") return;
    const req = frame.ref != null ? inflight.get(frame.ref) : void 0;
    if (req) {
      inflight.delete(frame.ref);
      clearTimeout(req.timer);
      if (frame.event === "error") {
        const { code = "error", message = "request failed" } = frame.data ?? {};
        return req.reject(new EventideError(code, message, frame.data));
      }
      req.onReply?.(frame.data);
      req.resolve(frame.data);
    } else rooms.unsolicited(frame);
    const position = rooms.check(frame);
    if (position.verdict === "drop") return console.debug("[eventide] dropped duplicate", frame);
    emit("message", frame);
    if (!LIFECYCLE.has(frame.event)) emit(frame.event, frame.data, frame);
    rooms.delivered(frame, position);
  }
  const client = {
    get state() {
      return state;
    },
    get failure() {
      return failure;
    },
    get rooms() {
      return rooms.versions();
    },
    room(name) {
      return rooms.info(name);
    },
    /** @param {string} room @param {{ since?: number, epoch?: string }} [at] */
    join(room, at = {}) {
      const closed = !closing ? void 0 : failure ? new EventideError("failed", failure.message, failure) : new EventideError("closed", "client is closed");
      return rooms.join(room, at, closed);
    },
    leave(room) {
      rooms.leave(room);
      if (!sockOpen) return Promise.resolve({ room });
      return request("leaveRoom", { room });
    },
    async ping() {
      const started = Date.now();
      await request("ping");
      return Date.now() - started;
    },
    request(event, data) {
      if (event === "refreshToken" && typeof data?.token === "string") {
        refreshedToken = data.token;
        return request(event, data, { resend: false });
      }
      return request(event, data);
    },
    on(event, handler) {
      if (!listeners.has(event)) listeners.set(event, /* @__PURE__ */ new Set());
      listeners.get(event).add(handler);
      return () => listeners.get(event)?.delete(handler);
    },
    reconnect() {
      if (!closing) return;
      closing = false;
      failure = null;
      attempt = originSuspect = 0;
      setState("connecting");
      watch();
      open();
    },
    close() {
      if (closing) return;
      const sock = ws;
      ws = null;
      sockOpen = false;
      shutdown();
      if (!sock) return;
      sock.onopen = sock.onmessage = sock.onerror = () => {
      };
      sock.onclose = (ev) => emit("close", { code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
      try {
        sock.close(1e3, "client closed");
      } catch {
      }
    }
  };
  watch();
  open();
  return client;
}
