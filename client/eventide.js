/**
 * Eventide hub client: a dependency-free ES module over the browser's WebSocket or
 * any implementation passed as `options.WebSocket` (`ws` in Node). The hub serves this
 * file at `/eventide.js` (minified at `/eventide.min.js`); `eventide.d.ts` documents
 * every option, method and event.
 * - The token travels as the subprotocol `bearer.<jwt>`, never in a URL (logs keep URLs).
 * - Network failures are retried forever (full-jitter backoff, capped); only what the hub
 *   refuses for good (401 without `onTokenRefresh`, a refused origin, 1008, 4003) stops
 *   the client with `failed`. Browsers hide a refused handshake's status, so after one
 *   the client asks `/ws` over plain HTTP why.
 * - Every room has a state (joining, live, recovering, resyncing, left). A room's
 *   position moves forward only past what was handed to the app, and is stored (per
 *   room, merged with other tabs) only once the app's `resync` handlers have settled.
 * - Browsers hide protocol pings from pages, so a half-open socket would look alive
 *   forever; an application-level `ping` after a quiet spell exposes it.
 * @module eventide
 */

/** Defaults of the tunable options (milliseconds). */
export const DEFAULTS = Object.freeze({
  requestTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
  minBackoffMs: 500,
  maxBackoffMs: 15_000,
  pingIntervalMs: 20_000,
  pongTimeoutMs: 10_000,
  storageKey: 'eventide:position',
});
const STABLE_AFTER_MS = 5_000; // a connection open this long resets the backoff
const REFRESH_AHEAD_MS = 30_000; // ask for a new token this long before `exp` (at most half its life)
const REFRESH_FLOOR_MS = 5_000; // never refresh sooner than this: the hub limits frames per second
// Handshakes refused while HTTP accepts the token, this many in a row over at least
// this long: the origin (a hub draining for a restart answers HTTP for a few seconds
// on open connections while refusing new ones, so one or two prove nothing).
const ORIGIN_SUSPECT_AFTER = 3;
const ORIGIN_SUSPECT_FOR_MS = 10_000;
/** The close code the client reports when it gives up on a socket (silent, or never opened). */
export const CLOSE_HEARTBEAT_TIMEOUT = 4000;

/** App requests the hub may receive twice without harm, so they survive a reconnect. */
const IDEMPOTENT = new Set(['joinRoom', 'leaveRoom', 'ping']);
/** Join errors that retrying cannot fix: the room is left with this reason. */
const REFUSED = new Set(['forbidden', 'too_many_rooms', 'bad_request', 'unauthorized', 'unknown_event']);
/** The client's own events; a hub frame with one of these names only reaches `message`. */
const LIFECYCLE = new Set(['state', 'room', 'resync', 'close', 'failed', 'left', 'message']);

/** The error a request rejects with; `code` is the hub's error code or the client's own. */
export class EventideError extends Error {
  constructor(code, message, data) {
    super(message);
    Object.assign(this, { name: 'EventideError', code, data });
  }
}

/** Reads a claim (seconds) from a JWT payload, unverified: only used to time refreshes. */
function jwtClaim(token, claim) {
  try {
    const b64 = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const value = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)))[claim];
    return typeof value === 'number' ? value : undefined;
  } catch { return undefined; }
}

/** When to ask for a new token: REFRESH_AHEAD_MS (at most half its life) before `exp`, never sooner than the floor. */
function refreshDelay(token, now) {
  const exp = jwtClaim(token, 'exp');
  if (exp === undefined) return undefined;
  const iat = jwtClaim(token, 'iat') ?? now / 1000;
  const ahead = Math.min(REFRESH_AHEAD_MS, Math.max(0, (exp - iat) * 500));
  return Math.max(REFRESH_FLOOR_MS, exp * 1000 - ahead - now);
}

const expiresSoon = (token) => (jwtClaim(token, 'exp') ?? Infinity) * 1000 - Date.now() < REFRESH_AHEAD_MS;

/** Resolves the URL against the page (when there is one) and maps http(s) to ws(s), or back. */
function resolveUrl(url, http = false) {
  const base = globalThis.location?.href;
  if (url == null && !base) throw new TypeError('connect: options.url is required outside a browser');
  const u = new URL(url ?? '/ws', base);
  const map = http ? { 'ws:': 'http:', 'wss:': 'https:' } : { 'http:': 'ws:', 'https:': 'wss:' };
  u.protocol = map[u.protocol] ?? u.protocol;
  return u.href;
}

/** The HTTP status of a refused handshake, when the implementation tells (`ws` does; browsers never). */
function handshakeStatus(ev) {
  const match = /Unexpected server response: (\d{3})/.exec(String(ev?.message ?? ev?.error?.message ?? ''));
  return match ? Number(match[1]) : undefined;
}

/** Why a close ends the client instead of reconnecting, or undefined when it is transient. */
function fatalClose(code, reason, canRefresh) {
  if (code === 1008) return { reason: 'policy', message: `the hub closed the connection for policy (${reason || 'flooding'})` };
  if (code === 4003) return { reason: 'revoked', message: 'the hub revoked this connection' };
  if (code === 4001 && !canRefresh) return { reason: 'token_expired', message: 'the token expired; no onTokenRefresh to renew it' };
  return undefined;
}

/** Full jitter: a delay drawn from [0, min(max, min · 2^n)). */
const backoff = (opt, n) => Math.random() * Math.min(opt.maxBackoffMs, opt.minBackoffMs * 2 ** Math.min(n, 30));

/**
 * A room's stored position, `{version, epoch?}`, under its own key so that tabs
 * sharing the storage touch only the rooms they write, and merge on each write.
 */
function positions(storage, prefix) {
  const key = (room) => `${prefix}:${room}`;
  const read = (room) => {
    try {
      const value = JSON.parse(storage?.getItem(key(room)) ?? 'null');
      return typeof value?.version === 'number' ? value : undefined;
    } catch { return undefined; }
  };
  return {
    read,
    /** Read-merge-write: another tab further along the same epoch keeps its position, unless `force`. */
    write(room, version, epoch, force = false) {
      if (!storage || version === undefined) return;
      const theirs = read(room);
      if (!force && theirs && theirs.epoch === epoch && theirs.version >= version) return;
      try { storage.setItem(key(room), JSON.stringify(epoch === undefined ? { version } : { version, epoch })); } catch { /* full: memory only */ }
    },
    remove(room) {
      try { storage?.removeItem?.(key(room)); } catch { /* unavailable */ }
    },
  };
}

/** Opens a connection to the hub and keeps it open until `close()` or a refusal for good. */
export function connect(options) {
  if (!options || options.token == null) throw new TypeError('connect: options.token is required');
  const WS = options.WebSocket ?? globalThis.WebSocket;
  if (typeof WS !== 'function') throw new TypeError('connect: no WebSocket here; pass options.WebSocket');
  resolveUrl(options.url); // fail fast on a malformed URL
  const opt = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS)) if (options[key] != null) opt[key] = options[key];
  const store = positions(options.storage ?? null, opt.storageKey);
  const win = options.window ?? globalThis.window;
  const fetchFn = options.fetch ?? globalThis.fetch;

  const listeners = new Map(); // event name → Set of handlers
  /**
   * room → entry. `version` is the last position handed to the app in this room;
   * it only moves forward, except when the hub says the stream restarted (resync).
   * `awaiting`: no joinedRoom yet on the current socket. `resyncs`: resync handlers
   * not yet settled; while any run, or one failed (`stale`), nothing is stored.
   */
  const rooms = new Map();
  const rejoining = new Set(); // rooms the current socket has not heard joinedRoom for
  const queue = []; // app requests waiting for an open socket
  const inflight = new Map(); // ref → request sent on the current socket
  let ws = null;
  let sockOpen = false;
  let phase = 'opening'; // 'opening' | 'open' | 'backoff' | 'closed'
  let state = 'connecting';
  let closing = false;
  let failure = null;
  let gen = 0; // each open() and close() starts a generation; stale ones stop at their next step
  let attempt = 0; // backoff exponent; reset once a connection is stable
  let originSuspect = 0; // handshakes refused in a row while HTTP accepted the token
  let originSuspectSince = 0; // when the first of them was
  let seq = 0;
  let activeToken; // token of the current connection
  let refreshedToken; // newest from onTokenRefresh or the app's refreshToken; preferred for reconnects
  let reconnectTimer, stableTimer, refreshTimer, heartbeatTimer, connectTimer;

  function emit(event, ...args) {
    const results = [];
    for (const handler of [...(listeners.get(event) ?? [])]) {
      try { results.push(handler(...args)); } catch (err) {
        console.error(`[eventide] "${event}" handler threw`, err);
        results.push(Promise.reject(err));
      }
    }
    return results;
  }

  const setState = (next) => state !== next && emit('state', (state = next));

  function log(dir, frame, quiet = false) {
    if (!quiet) console.debug(dir === 'in' ? '[eventide] ⇐' : '[eventide] ⇒', frame);
    try { options.log?.(dir, frame); } catch (err) { console.error('[eventide] log callback threw', err); }
  }

  // ---- rooms ----------------------------------------------------------------------

  function roomInfo(entry) {
    const info = { room: entry.room, state: entry.state, version: entry.version };
    if (entry.epoch !== undefined) info.epoch = entry.epoch;
    if (entry.reason !== undefined) info.reason = entry.reason;
    return info;
  }

  function setRoomState(entry, next, reason) {
    if (entry.state === next && entry.reason === reason) return;
    entry.state = next;
    entry.reason = reason;
    emit('room', roomInfo(entry));
  }

  /** The state a room is in, from what is known about it. */
  function settle(entry) {
    if (rooms.get(entry.room) !== entry) return;
    if (!sockOpen || entry.awaiting) setRoomState(entry, entry.joined ? 'recovering' : 'joining');
    else setRoomState(entry, entry.resyncs > 0 ? 'resyncing' : 'live');
  }

  function persist(entry, force = false) {
    if (entry.resyncs > 0 || entry.stale) return;
    store.write(entry.room, entry.version, entry.epoch, force);
  }

  /** Removes a room locally: `reason` for the app, the join's waiters rejected with `err`. */
  function drop(entry, reason, err) {
    if (rooms.get(entry.room) !== entry) return;
    rooms.delete(entry.room);
    clearTimeout(entry.retryTimer);
    doneRejoining(entry.room);
    for (const w of entry.waiters.splice(0)) w.reject(err);
    setRoomState(entry, 'left', reason);
  }

  function doneRejoining(room) {
    rejoining.delete(room);
    if (sockOpen && rejoining.size === 0) setState('live');
  }

  /** Sends `joinRoom` for a room the client wants, with its position when it has one. */
  function sendJoin(entry) {
    if (!sockOpen || entry.sending || rooms.get(entry.room) !== entry) return;
    const since = entry.version;
    const epoch = entry.epoch;
    const data = { room: entry.room };
    if (since !== undefined) Object.assign(data, { since }, epoch !== undefined ? { epoch } : {});
    entry.sending = true;
    request('joinRoom', data, {
      resend: false,
      onReply: (reply) => onJoined(entry, since, epoch, reply),
    }).catch((err) => onJoinFailed(entry, err));
  }

  function onJoined(entry, since, epoch, data) {
    entry.sending = false;
    if (rooms.get(entry.room) !== entry) return; // left while the join was in flight
    entry.awaiting = false;
    entry.failures = 0;
    const version = data?.version;
    if (typeof version === 'number') {
      const newEpoch = data.epoch ?? epoch;
      const epochChanged = epoch !== undefined && data.epoch !== undefined && data.epoch !== epoch;
      if (since === undefined) {
        entry.version = version;
        entry.epoch = newEpoch;
        persist(entry);
      } else if (data.recovered === false || epochChanged || version < since) {
        // History no longer reaches back to `since`, or the stream restarted: the
        // replay is incomplete, so the app must reload the snapshot.
        resync(entry, version, newEpoch);
      } else {
        entry.epoch = newEpoch; // the replay that follows brings the version up to date
      }
    }
    entry.joined = true;
    settle(entry);
    for (const w of entry.waiters.splice(0)) w.resolve(data);
    doneRejoining(entry.room);
  }

  function onJoinFailed(entry, err) {
    entry.sending = false;
    if (rooms.get(entry.room) !== entry || ['disconnected', 'closed', 'failed'].includes(err.code)) return;
    if (REFUSED.has(err.code)) return drop(entry, err.code, err);
    // Transient (timeout, unavailable, rate_limited): the room is kept and tried again;
    // the hub may hold the membership already, which a later join confirms.
    emit('error', { code: err.code, message: err.message, room: entry.room });
    clearTimeout(entry.retryTimer);
    entry.retryTimer = setTimeout(() => sendJoin(entry), backoff(opt, entry.failures++));
  }

  /** The room's updates were not all delivered: the app reloads; the position is stored once it has. */
  function resync(entry, version, epoch) {
    entry.version = version;
    if (epoch !== undefined) entry.epoch = epoch;
    entry.resyncs += 1;
    settle(entry);
    const info = { room: entry.room, version };
    if (entry.epoch !== undefined) info.epoch = entry.epoch;
    Promise.allSettled(emit('resync', info)).then((outcomes) => {
      entry.resyncs -= 1;
      const failed = outcomes.find((o) => o.status === 'rejected');
      if (failed) {
        // The app's view may still be old: keep the old stored position, so a reload replays.
        entry.stale = true;
        emit('error', { code: 'resync_failed', message: String(failed.reason?.message ?? failed.reason), room: entry.room });
      } else if (entry.resyncs === 0) {
        entry.stale = false;
      }
      if (rooms.get(entry.room) !== entry) return;
      if (entry.resyncs === 0) persist(entry, true);
      settle(entry);
    });
  }

  // ---- the connection -------------------------------------------------------------

  async function resolveToken() {
    let token = refreshedToken && !expiresSoon(refreshedToken) ? refreshedToken
      : typeof options.token === 'function' ? await options.token() : options.token;
    if (expiresSoon(token) && options.onTokenRefresh) {
      try {
        token = refreshedToken = await options.onTokenRefresh();
      } catch (err) {
        // Try the old token anyway: the server's clock, not ours, decides.
        emit('error', { code: 'token_refresh_failed', message: String(err?.message ?? err) });
      }
    }
    if (!token) throw new Error('no token available');
    return token;
  }

  async function open() {
    const my = ++gen;
    clearTimeout(reconnectTimer);
    phase = 'opening';
    let sock, token;
    try {
      token = await resolveToken();
      if (my !== gen || closing) return;
      activeToken = token;
      sock = ws = new WS(resolveUrl(options.url), ['eventide', `bearer.${token}`]);
    } catch (err) {
      if (my !== gen || closing) return;
      emit('error', { code: 'connect_failed', message: String(err?.message ?? err) });
      return scheduleReconnect();
    }
    let status;
    connectTimer = setTimeout(() => sock === ws && abandon(sock, CLOSE_HEARTBEAT_TIMEOUT, `not open within ${opt.connectTimeoutMs} ms`), opt.connectTimeoutMs);
    sock.onopen = () => {
      if (sock !== ws) return;
      clearTimeout(connectTimer);
      sockOpen = true;
      phase = 'open';
      originSuspect = 0;
      stableTimer = setTimeout(() => (attempt = 0), STABLE_AFTER_MS);
      heard();
      scheduleRefresh();
      for (const entry of rooms.values()) rejoining.add(entry.room);
      if (rejoining.size === 0) setState('live');
      for (const entry of [...rooms.values()]) sendJoin(entry);
      flush();
    };
    sock.onerror = (ev) => (status ??= handshakeStatus(ev));
    sock.onmessage = (ev) => sock === ws && receive(ev.data);
    sock.onclose = (ev) => sock === ws && dropped({ code: ev.code, reason: ev.reason, wasClean: ev.wasClean }, status, token);
  }

  /** Gives up on a socket that cannot be trusted any more, without waiting for its close. */
  function abandon(sock, code, reason) {
    const ignore = () => {};
    sock.onopen = sock.onmessage = sock.onclose = sock.onerror = ignore;
    try { typeof sock.terminate === 'function' ? sock.terminate() : sock.close(code, reason); } catch { /* closing */ }
    dropped({ code, reason, wasClean: false }, undefined, undefined, true);
  }

  /** A socket ended (or never opened): fail what cannot be re-sent, then decide what next. */
  function dropped(info, status, token, timedOut = false) {
    const opened = sockOpen;
    ws = null;
    sockOpen = false;
    rejoining.clear();
    for (const timer of [stableTimer, refreshTimer, heartbeatTimer, connectTimer]) clearTimeout(timer);
    const lost = [...inflight.values()];
    inflight.clear();
    for (const req of lost.reverse()) {
      if (req.resend) queue.unshift(req); // its timer keeps running
      else {
        clearTimeout(req.timer);
        const why = req.internal || IDEMPOTENT.has(req.event) ? 'connection closed before the reply'
          : `connection closed before the reply to ${req.event}; not sent again, since it may already have been applied`;
        req.reject(new EventideError('disconnected', why));
      }
    }
    for (const entry of rooms.values()) {
      clearTimeout(entry.retryTimer);
      entry.awaiting = true;
      settle(entry);
    }
    emit('close', info);
    if (closing) return;
    const fatal = fatalClose(info.code, info.reason, !!options.onTokenRefresh);
    if (fatal) return shutdown({ ...fatal, code: info.code });
    if (opened || timedOut) return scheduleReconnect();
    refused(status, token, info.code);
  }

  /**
   * A handshake that never opened. `ws` reports the status; browsers do not, so ask
   * `/ws` over HTTP with the same token: it answers 401 for a bad token and 400 for a
   * good one; a CORS refusal with the hub reachable means the origin is refused.
   */
  async function refused(status, token, code) {
    const my = gen;
    setState('reconnecting');
    phase = 'backoff';
    const probed = status === undefined;
    if (probed) status = await probe(token);
    if (my !== gen || closing) return;
    if (status === 401) {
      // Only a new token can help: ask the hook once; without one, this is final.
      const fresh = options.onTokenRefresh ? await options.onTokenRefresh().catch(() => undefined) : undefined;
      if (my !== gen || closing) return;
      if (!fresh || fresh === token) {
        const why = options.onTokenRefresh ? 'and onTokenRefresh gave no new one' : 'no onTokenRefresh to renew it';
        return shutdown({ reason: 'unauthorized', status, code, message: `the hub refused the token (HTTP 401); ${why}` });
      }
      refreshedToken = fresh;
    } else if (status === 403) {
      return shutdown({ reason: 'origin', status, code, message: 'the hub refused this origin (HTTP 403): it is not in EVENTIDE_ALLOWED_ORIGINS' });
    } else if (probed && status === 400) {
      if (originSuspect++ === 0) originSuspectSince = Date.now();
      const span = Date.now() - originSuspectSince;
      if (originSuspect >= ORIGIN_SUSPECT_AFTER && span >= ORIGIN_SUSPECT_FOR_MS) {
        return shutdown({ reason: 'origin', code, message: `the hub accepts the token over HTTP but refused ${originSuspect} WebSocket handshakes in a row over ${Math.round(span / 1000)} s: this origin is most likely not in EVENTIDE_ALLOWED_ORIGINS` });
      }
    }
    if (status !== 400) originSuspect = 0;
    scheduleReconnect();
  }

  async function probe(token) {
    if (typeof fetchFn !== 'function' || !token) return undefined;
    const url = resolveUrl(options.url, true);
    const abort = typeof AbortController === 'function' ? new AbortController() : undefined;
    const timer = setTimeout(() => abort?.abort(), opt.connectTimeoutMs);
    try {
      const res = await fetchFn(url, { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store', signal: abort?.signal });
      return res.status;
    } catch {
      // Unreachable, or refused by CORS: a no-cors request reaches the hub in the second case only.
      try {
        await fetchFn(url, { mode: 'no-cors', cache: 'no-store', signal: abort?.signal });
        return win?.document ? 403 : undefined;
      } catch { return undefined; }
    } finally { clearTimeout(timer); }
  }

  /** Ends the client: no reconnect, every pending request rejects. */
  function shutdown(why) {
    closing = true;
    phase = 'closed';
    gen += 1;
    failure = why ?? null;
    for (const timer of [reconnectTimer, stableTimer, refreshTimer, heartbeatTimer, connectTimer]) clearTimeout(timer);
    unwatch();
    const err = why ? new EventideError('failed', why.message, why) : new EventideError('closed', 'client closed');
    for (const req of [...queue, ...inflight.values()]) {
      clearTimeout(req.timer);
      req.reject(err);
    }
    queue.length = 0;
    inflight.clear();
    rejoining.clear();
    // Rooms never joined are dropped with their join; joined ones wait for reconnect().
    for (const entry of [...rooms.values()]) {
      clearTimeout(entry.retryTimer);
      entry.sending = false;
      if (!entry.joined) drop(entry, why ? 'failed' : 'closed', err);
    }
    setState('closed');
    if (why) emit('failed', why);
  }

  function scheduleReconnect() {
    if (closing) return;
    setState('reconnecting');
    phase = 'backoff';
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(open, backoff(opt, attempt));
    attempt = Math.min(attempt + 1, 30);
  }

  /** The network came back or the page is shown again: try now, or check the socket now. */
  function wake() {
    if (closing) return;
    if (phase === 'backoff') {
      attempt = 0;
      open();
    } else if (phase === 'open') probeSocket(ws);
  }
  function onVisibility() {
    if (win?.document?.visibilityState !== 'hidden') wake();
  }
  function watch() {
    win?.addEventListener?.('online', wake);
    win?.addEventListener?.('offline', wake);
    win?.addEventListener?.('pageshow', wake);
    win?.document?.addEventListener?.('visibilitychange', onVisibility);
  }
  function unwatch() {
    win?.removeEventListener?.('online', wake);
    win?.removeEventListener?.('offline', wake);
    win?.removeEventListener?.('pageshow', wake);
    win?.document?.removeEventListener?.('visibilitychange', onVisibility);
  }

  /** Any frame proves the connection alive; after a quiet spell, ask with `ping`. */
  function heard() {
    clearTimeout(heartbeatTimer);
    if (opt.pingIntervalMs > 0 && ws) heartbeatTimer = setTimeout(() => probeSocket(ws), opt.pingIntervalMs);
  }

  function probeSocket(sock) {
    if (!sock || sock !== ws || !sockOpen) return;
    clearTimeout(heartbeatTimer);
    const frame = { event: 'ping', ref: `hb${++seq}` };
    log('out', frame, true);
    sock.send(JSON.stringify(frame));
    heartbeatTimer = setTimeout(() => {
      if (sock === ws) abandon(sock, CLOSE_HEARTBEAT_TIMEOUT, `no frame within ${opt.pongTimeoutMs} ms of a ping`);
    }, opt.pongTimeoutMs);
  }

  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    const delay = refreshDelay(activeToken, Date.now());
    if (!options.onTokenRefresh || delay === undefined) return;
    refreshTimer = setTimeout(refresh, Math.min(delay, 2 ** 31 - 1));
  }

  async function refresh() {
    const my = gen;
    try {
      const token = await options.onTokenRefresh();
      if (closing || my !== gen) return;
      refreshedToken = token;
      if (sockOpen) await request('refreshToken', { token }, { resend: false, internal: true });
      activeToken = token;
      scheduleRefresh();
    } catch (err) {
      if (closing || my !== gen || err?.code === 'disconnected') return; // the next socket schedules its own
      emit('error', { code: 'token_refresh_failed', message: String(err?.message ?? err) });
      // Keep trying while the current token lasts; after that the server closes 4001.
      clearTimeout(refreshTimer);
      if ((jwtClaim(activeToken, 'exp') ?? 0) * 1000 > Date.now()) refreshTimer = setTimeout(refresh, REFRESH_FLOOR_MS);
    }
  }

  // ---- requests -------------------------------------------------------------------

  /**
   * Sends a request now or when a socket opens; it times out `requestTimeoutMs` after this call either way.
   * @param {string} event
   * @param {unknown} [data]
   * @param {{ resend?: boolean, internal?: boolean, onReply?: (data: any) => void }} [how]
   * @returns {Promise<any>}
   */
  function request(event, data, { resend = IDEMPOTENT.has(event), internal = false, onReply } = {}) {
    if (closing) return Promise.reject(failure ? new EventideError('failed', failure.message, failure) : new EventideError('closed', 'client is closed'));
    return new Promise((resolve, reject) => {
      const req = { event, data, resend, internal, onReply, resolve, reject };
      req.timer = setTimeout(() => {
        const at = queue.indexOf(req);
        if (at >= 0) queue.splice(at, 1);
        else if (inflight.get(req.ref) === req) inflight.delete(req.ref);
        else return;
        reject(new EventideError('timeout', `no reply to ${event} within ${opt.requestTimeoutMs} ms`));
      }, opt.requestTimeoutMs);
      if (sockOpen) transmit(req);
      else queue.push(req);
    });
  }

  function transmit(req) {
    req.ref = `r${++seq}`;
    const frame = req.data === undefined ? { event: req.event, ref: req.ref } : { event: req.event, data: req.data, ref: req.ref };
    inflight.set(req.ref, req);
    log('out', frame.event === 'refreshToken' ? { ...frame, data: { token: '[redacted]' } } : frame, frame.event === 'ping');
    ws.send(JSON.stringify(frame));
  }

  function flush() {
    while (queue.length && sockOpen) transmit(queue.shift());
  }

  // ---- frames ---------------------------------------------------------------------

  /** A room event's position in its room's stream, or undefined for unversioned events. */
  function versionOf(frame) {
    if (typeof frame.room !== 'string') return undefined;
    const version = frame.event === 'availabilityUpdated' ? frame.data?.version : frame.version;
    return typeof version === 'number' ? version : undefined;
  }

  /** Classifies a room event: 'drop' (seen before, or a room left), 'gap', or 'ok'. */
  function checkVersion(frame, version) {
    const entry = rooms.get(frame.room);
    if (!entry) return 'drop'; // a straggler from a room we left
    const last = entry.version;
    if (last !== undefined && version <= last) return 'drop';
    entry.version = version;
    // Versions rise by exactly 1; a hole means something was missed.
    return last !== undefined && version > last + 1 ? 'gap' : 'ok';
  }

  function receive(raw) {
    heard();
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return log('in', raw);
    }
    log('in', frame, frame?.event === 'pong');
    if (!frame || typeof frame.event !== 'string') return;
    const req = frame.ref != null ? inflight.get(frame.ref) : undefined;
    if (req) {
      inflight.delete(frame.ref);
      clearTimeout(req.timer);
      if (frame.event === 'error') {
        const { code = 'error', message = 'request failed' } = frame.data ?? {};
        return req.reject(new EventideError(code, message, frame.data));
      }
      req.onReply?.(frame.data); // synchronously, before any later frame is handled
      req.resolve(frame.data);
    } else if (frame.event === 'leftRoom' && rooms.has(frame.data?.room)) {
      // The hub removed us (e.g. a refreshed token may no longer join the room).
      const entry = rooms.get(frame.data.room);
      store.remove(entry.room);
      drop(entry, frame.data.reason ?? 'removed', new EventideError(frame.data.reason ?? 'left', 'the hub removed this client from the room'));
      emit('left', { room: frame.data.room, reason: frame.data.reason });
    } else if (frame.event === 'joinedRoom' && frame.data?.recovered === false && rooms.has(frame.data.room)
      && typeof frame.data.version === 'number') {
      // Unsolicited: the hub skipped versions or the stream restarted.
      resync(rooms.get(frame.data.room), frame.data.version, frame.data.epoch);
    }
    const version = versionOf(frame);
    const verdict = version === undefined ? 'ok' : checkVersion(frame, version);
    if (verdict === 'drop') return console.debug('[eventide] dropped duplicate', frame);
    emit('message', frame);
    if (!LIFECYCLE.has(frame.event)) emit(frame.event, frame.data, frame);
    if (verdict === 'gap') resync(rooms.get(frame.room), version);
    else if (version !== undefined && rooms.has(frame.room)) persist(rooms.get(frame.room)); // delivered: now it may be stored
  }

  const client = {
    get state() { return state; },
    get failure() { return failure; },
    get rooms() { return new Map([...rooms].map(([room, entry]) => [room, entry.version])); },
    room(name) {
      const entry = rooms.get(name);
      return entry ? roomInfo(entry) : undefined;
    },
    /** @param {string} room @param {{ since?: number, epoch?: string }} [at] */
    join(room, { since, epoch } = {}) {
      let entry = rooms.get(room);
      if (!entry) {
        const stored = since == null ? store.read(room) : undefined;
        entry = {
          room, state: undefined, reason: undefined, joined: false, awaiting: true, sending: false,
          version: since ?? stored?.version, epoch: since == null ? stored?.epoch : epoch,
          resyncs: 0, stale: false, failures: 0, waiters: [], retryTimer: undefined,
        };
        rooms.set(room, entry);
        settle(entry);
      } else if (since != null && entry.version === undefined) {
        entry.version = since;
        entry.epoch = epoch;
      } // a room already followed keeps its own, newer, position
      const joined = new Promise((resolve, reject) => entry.waiters.push({ resolve, reject }));
      if (closing) {
        // A room joined before stays for reconnect(); a new one is dropped with its join.
        const err = failure ? new EventideError('failed', failure.message, failure) : new EventideError('closed', 'client is closed');
        if (entry.joined) for (const w of entry.waiters.splice(0)) w.reject(err);
        else drop(entry, failure ? 'failed' : 'closed', err);
      } else if (!entry.awaiting) {
        // Joined already: ask again, so the promise carries a fresh answer.
        entry.awaiting = true;
        sendJoin(entry);
      } else sendJoin(entry);
      return joined;
    },
    leave(room) {
      const entry = rooms.get(room);
      if (entry) drop(entry, 'left', new EventideError('left', `left ${room} before it was joined`));
      store.remove(room);
      // A closed socket holds no membership, and the next one will not join the room.
      if (!sockOpen) return Promise.resolve({ room });
      return request('leaveRoom', { room });
    },
    async ping() {
      const started = Date.now();
      await request('ping');
      return Date.now() - started;
    },
    request(event, data) {
      if (event === 'refreshToken' && typeof data?.token === 'string') {
        // Newest first: later reconnects use it, and it is never re-sent over a newer one.
        refreshedToken = data.token;
        return request(event, data, { resend: false });
      }
      return request(event, data);
    },
    on(event, handler) {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event).add(handler);
      return () => listeners.get(event)?.delete(handler);
    },
    reconnect() {
      if (!closing) return;
      closing = false;
      failure = null;
      attempt = originSuspect = 0;
      setState('connecting');
      watch();
      open();
    },
    close() {
      if (closing) return;
      const sock = ws;
      ws = null; // detached at once, so a reconnect() right after cannot meet its close
      sockOpen = false;
      shutdown();
      if (!sock) return;
      sock.onopen = sock.onmessage = sock.onerror = () => {};
      sock.onclose = (ev) => emit('close', { code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
      try { sock.close(1000, 'client closed'); } catch { /* not open yet */ }
    },
  };

  watch();
  open();
  return client;
}
