/**
 * Eventide hub client: a dependency-free ES module over the browser's WebSocket or
 * any implementation passed as `options.WebSocket` (`ws` in Node). The hub serves this
 * file at `/eventide.js`; `eventide.d.ts` documents every option, method and event.
 * - The token travels as the subprotocol `bearer.<jwt>`, never in a URL (logs keep URLs).
 * - Transient failures reconnect forever (exponential backoff, full jitter); closes a
 *   retry cannot fix (`fatalClose`, refused handshakes) stop and say why in `failed`.
 * - Rooms are rejoined with `since`; seen updates are dropped; a version hole emits `resync`.
 * - Browsers hide protocol pings from pages, so a half-open socket would look alive
 *   forever; an application-level `ping` after a quiet spell exposes it.
 * @module eventide
 */

/** Defaults of the tunable options (milliseconds and counts). */
export const DEFAULTS = Object.freeze({
  requestTimeoutMs: 10_000,
  minBackoffMs: 500,
  maxBackoffMs: 15_000,
  pingIntervalMs: 20_000,
  pongTimeoutMs: 10_000,
  maxFailedHandshakes: 10,
  storageKey: 'eventide:versions',
});
const STABLE_AFTER_MS = 5_000; // a connection open this long resets the backoff
const REFRESH_AHEAD_MS = 30_000; // ask for a new token this long before `exp`
const REFRESH_RETRY_MS = 5_000; // retry a failed refresh this often while the token lasts
/** The close code the client reports when it gives up on a socket that went silent. */
export const CLOSE_HEARTBEAT_TIMEOUT = 4000;

/** Requests the hub may receive twice without harm, so they survive a reconnect. */
const IDEMPOTENT = new Set(['joinRoom', 'leaveRoom', 'refreshToken', 'ping']);
/** The client's own events; a hub frame with one of these names only reaches `message`. */
const LIFECYCLE = new Set(['state', 'resync', 'close', 'failed', 'left', 'message']);

/** The error a request rejects with; `code` is the hub's error code or the client's own. */
export class EventideError extends Error {
  constructor(code, message, data) {
    super(message);
    Object.assign(this, { name: 'EventideError', code, data });
  }
}

/** Reads `exp` (seconds) from a JWT payload, unverified: only used to time refreshes. */
function jwtExp(token) {
  try {
    const b64 = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const exp = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4))).exp;
    return typeof exp === 'number' ? exp : undefined;
  } catch { return undefined; }
}

const expiresSoon = (token) => (jwtExp(token) ?? Infinity) * 1000 - Date.now() < REFRESH_AHEAD_MS;

/** Resolves the URL against the page (when there is one) and maps http(s) to ws(s). */
function socketUrl(url) {
  const base = globalThis.location?.href;
  if (url == null && !base) throw new TypeError('connect: options.url is required outside a browser');
  const u = new URL(url ?? '/ws', base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
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

/** Opens a connection to the hub and keeps it open until `close()` or a fatal failure. */
export function connect(options) {
  if (!options || options.token == null) throw new TypeError('connect: options.token is required');
  const WS = options.WebSocket ?? globalThis.WebSocket;
  if (typeof WS !== 'function') throw new TypeError('connect: no WebSocket here; pass options.WebSocket');
  socketUrl(options.url); // fail fast on a malformed URL
  const opt = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS)) if (options[key] != null) opt[key] = options[key];
  const storage = options.storage ?? null;

  const listeners = new Map(); // event name → Set of handlers
  const rooms = new Map(); // room → { version: number | undefined, confirmed: boolean }
  // The persisted versions: also rooms not (yet) rejoined since a reload, so joining
  // one room does not erase what is stored for another.
  const stored = readStored();
  const queue = []; // requests waiting for a live socket
  const inflight = new Map(); // ref → request sent on the current socket
  let ws = null;
  let state = 'connecting';
  let closing = false;
  let failure = null;
  let attempt = 0; // backoff exponent; reset once a connection is stable
  let failedHandshakes = 0; // consecutive sockets that never opened
  let seq = 0;
  let activeToken; // token of the current connection
  let refreshedToken; // from onTokenRefresh; preferred for reconnects while valid
  let reconnectTimer, stableTimer, refreshTimer, heartbeatTimer;

  function emit(event, ...args) {
    for (const handler of [...(listeners.get(event) ?? [])]) {
      try { handler(...args); } catch (err) { console.error(`[eventide] "${event}" handler threw`, err); }
    }
  }

  const isLive = () => state === 'live' && ws !== null;
  const setState = (next) => state !== next && emit('state', (state = next));

  function log(dir, frame, quiet = false) {
    if (!quiet) console.debug(dir === 'in' ? '[eventide] ⇐' : '[eventide] ⇒', frame);
    try { options.log?.(dir, frame); } catch (err) { console.error('[eventide] log callback threw', err); }
  }

  function readStored() {
    try {
      const value = JSON.parse(storage?.getItem(opt.storageKey) ?? '{}');
      return value && typeof value === 'object' ? value : {};
    } catch { return {}; }
  }

  /** Records a room's version (or forgets the room) in `storage`, when there is one. */
  function persist(room, version) {
    if (!storage) return;
    if (version === undefined) delete stored[room];
    else stored[room] = version;
    try { storage.setItem(opt.storageKey, JSON.stringify(stored)); } catch { /* full or unavailable: memory only */ }
  }

  function setVersion(room, entry, version) {
    entry.version = version;
    persist(room, version);
  }

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
    let sock;
    try {
      activeToken = await resolveToken();
      if (closing) return;
      sock = ws = new WS(socketUrl(options.url), ['eventide', `bearer.${activeToken}`]);
    } catch (err) {
      emit('error', { code: 'connect_failed', message: String(err?.message ?? err) });
      return scheduleReconnect();
    }
    let opened = false;
    let status;
    sock.onopen = () => {
      if (sock !== ws) return;
      opened = true;
      failedHandshakes = 0;
      setState('live');
      stableTimer = setTimeout(() => (attempt = 0), STABLE_AFTER_MS);
      heard();
      scheduleRefresh();
      resubscribe();
      flush();
    };
    sock.onerror = (ev) => (status ??= handshakeStatus(ev));
    sock.onmessage = (ev) => sock === ws && receive(ev.data);
    sock.onclose = (ev) => sock === ws && dropped({ code: ev.code, reason: ev.reason, wasClean: ev.wasClean }, opened, status);
  }

  /** Gives up on a socket that cannot be trusted any more, without waiting for its close. */
  function abandon(sock, code, reason) {
    const ignore = () => {};
    sock.onopen = sock.onmessage = sock.onclose = sock.onerror = ignore;
    try { typeof sock.terminate === 'function' ? sock.terminate() : sock.close(code, reason); } catch { /* closing */ }
    dropped({ code, reason, wasClean: false }, true);
  }

  function dropped(info, opened, status) {
    ws = null;
    for (const timer of [stableTimer, refreshTimer, heartbeatTimer]) clearTimeout(timer);
    const lost = [...inflight.values()];
    inflight.clear();
    for (const req of lost) clearTimeout(req.timer);
    // Internal requests (rejoin, refresh) are redone anyway; the app's are sent again
    // only when the hub may see them twice without harm.
    queue.unshift(...lost.filter((req) => req.resend));
    for (const req of lost.filter((r) => !r.resend)) {
      const why = IDEMPOTENT.has(req.event) ? 'connection closed before the reply'
        : `connection closed before the reply to ${req.event}; not sent again, since it may already have been applied`;
      req.reject(new EventideError('disconnected', why));
    }
    emit('close', info);
    if (closing) return setState('closed');
    let fatal = fatalClose(info.code, info.reason, !!options.onTokenRefresh);
    if (!opened && ++failedHandshakes >= opt.maxFailedHandshakes) {
      const refusal = status ? ` (HTTP ${status})` : '';
      fatal = {
        reason: 'handshake_failed',
        message: `the hub refused or could not be reached for ${failedHandshakes} handshakes in a row${refusal}`,
        attempts: failedHandshakes,
        ...(status ? { status } : {}),
      };
    }
    if (fatal) shutdown({ ...fatal, code: info.code });
    else scheduleReconnect();
  }

  /** Ends the client: no reconnect, every pending request rejects. */
  function shutdown(why) {
    closing = true;
    failure = why ?? null;
    for (const timer of [reconnectTimer, stableTimer, refreshTimer, heartbeatTimer]) clearTimeout(timer);
    const err = why ? new EventideError('failed', why.message, why) : new EventideError('closed', 'client closed');
    for (const req of [...queue, ...inflight.values()]) {
      clearTimeout(req.timer);
      req.reject(err);
    }
    queue.length = 0;
    inflight.clear();
    if (why) emit('failed', why);
    setState('closed');
  }

  function scheduleReconnect() {
    if (closing) return;
    setState('reconnecting');
    const cap = Math.min(opt.maxBackoffMs, opt.minBackoffMs * 2 ** attempt);
    attempt = Math.min(attempt + 1, 30);
    reconnectTimer = setTimeout(open, Math.random() * cap); // "full jitter"
  }

  /** Any frame proves the connection alive; after a quiet spell, ask with `ping`. */
  function heard() {
    clearTimeout(heartbeatTimer);
    if (opt.pingIntervalMs > 0 && ws) heartbeatTimer = setTimeout(probe, opt.pingIntervalMs);
  }

  function probe() {
    const sock = ws;
    if (!sock || !isLive()) return;
    const frame = { event: 'ping', ref: `hb${++seq}` };
    log('out', frame, true);
    sock.send(JSON.stringify(frame));
    heartbeatTimer = setTimeout(() => {
      if (sock === ws) abandon(sock, CLOSE_HEARTBEAT_TIMEOUT, `no frame within ${opt.pongTimeoutMs} ms of a ping`);
    }, opt.pongTimeoutMs);
  }

  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    const exp = jwtExp(activeToken);
    if (!options.onTokenRefresh || exp === undefined) return;
    const delay = Math.max(0, exp * 1000 - REFRESH_AHEAD_MS - Date.now());
    refreshTimer = setTimeout(refresh, Math.min(delay, 2 ** 31 - 1));
  }

  async function refresh() {
    try {
      const token = await options.onTokenRefresh();
      if (closing) return;
      if (isLive()) await request('refreshToken', { token }, { resend: false });
      refreshedToken = activeToken = token;
      scheduleRefresh();
    } catch (err) {
      if (closing || err?.code === 'disconnected') return; // the next socket schedules its own
      emit('error', { code: 'token_refresh_failed', message: String(err?.message ?? err) });
      // Keep trying while the current token lasts; after that the server closes 4001.
      clearTimeout(refreshTimer);
      if ((jwtExp(activeToken) ?? 0) * 1000 > Date.now()) refreshTimer = setTimeout(refresh, REFRESH_RETRY_MS);
    }
  }

  function request(event, data, { room, resend = IDEMPOTENT.has(event), onReply } = {}) {
    if (closing) return Promise.reject(failure ? new EventideError('failed', failure.message, failure) : new EventideError('closed', 'client is closed'));
    return new Promise((resolve, reject) => {
      const build = typeof data === 'function' ? data : () => data;
      const req = { event, build, room, resend, onReply, resolve, reject };
      if (isLive()) transmit(req);
      else queue.push(req);
    });
  }

  function transmit(req) {
    req.ref = `r${++seq}`;
    const frame = { event: req.event, data: req.build(), ref: req.ref };
    inflight.set(req.ref, req);
    req.timer = setTimeout(() => {
      if (inflight.get(req.ref) !== req) return;
      inflight.delete(req.ref);
      req.reject(new EventideError('timeout', `no reply to ${req.event} within ${opt.requestTimeoutMs} ms`));
    }, opt.requestTimeoutMs);
    log('out', frame.event === 'refreshToken' ? { ...frame, data: { token: '[redacted]' } } : frame, frame.event === 'ping');
    ws.send(JSON.stringify(frame));
  }

  function flush() {
    while (queue.length && isLive()) transmit(queue.shift());
  }

  /** Sends `joinRoom`, with `since` = the last version seen when there is one. */
  function joinRequest(room, resend) {
    let since;
    const build = () => {
      since = rooms.get(room)?.version;
      return since === undefined ? { room } : { room, since };
    };
    return request('joinRoom', build, { room, resend, onReply: (data) => onJoined(room, since, data) });
  }

  function onJoined(room, since, data) {
    const entry = rooms.get(room);
    if (!entry) return; // left while the join was in flight
    entry.confirmed = true;
    const version = data?.version;
    if (typeof version !== 'number') return; // rooms without a version stream
    if (since === undefined) {
      setVersion(room, entry, Math.max(entry.version ?? version, version));
    } else if (data.recovered === false || version < since) {
      // History no longer reaches back to `since` (or the stream restarted): the
      // replay is incomplete, so the app must reload the snapshot.
      setVersion(room, entry, version);
      emit('resync', { room, version });
    } // else: the replay that follows brings entry.version up to date
  }

  /** After a reconnect: rejoin every room, unless a queued join/leave for it is about to go. */
  function resubscribe() {
    for (const room of rooms.keys()) {
      if (queue.some((req) => req.room === room)) continue;
      joinRequest(room, false).catch((err) => {
        if (['disconnected', 'closed', 'failed'].includes(err.code)) return;
        if (err.code !== 'timeout') forget(room); // refused: forget it, tell the app
        emit('error', { code: err.code, message: err.message, room });
      });
    }
  }

  function forget(room) {
    rooms.delete(room);
    persist(room, undefined);
  }

  /** A room event's position in its room's stream, or undefined for unversioned events. */
  function versionOf(frame) {
    if (typeof frame.room !== 'string') return undefined;
    const version = frame.event === 'availabilityUpdated' ? frame.data?.version : frame.version;
    return typeof version === 'number' ? version : undefined;
  }

  /** Classifies a room event: 'drop' (seen before, or a room left), 'gap', or 'ok'. */
  function checkVersion(frame) {
    const version = versionOf(frame);
    if (version === undefined) return 'ok';
    const entry = rooms.get(frame.room);
    if (!entry) return 'drop'; // a straggler from a room we left
    const last = entry.version;
    if (last !== undefined && version <= last) return 'drop';
    setVersion(frame.room, entry, version);
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
      forget(frame.data.room);
      emit('left', { room: frame.data.room, reason: frame.data.reason });
    }
    const verdict = checkVersion(frame);
    if (verdict === 'drop') return console.debug('[eventide] dropped duplicate', frame);
    emit('message', frame);
    if (!LIFECYCLE.has(frame.event)) emit(frame.event, frame.data, frame);
    if (verdict === 'gap') emit('resync', { room: frame.room, version: versionOf(frame) });
  }

  const client = {
    get state() { return state; },
    get failure() { return failure; },
    get rooms() { return new Map([...rooms].map(([room, entry]) => [room, entry.version])); },
    join(room, { since } = {}) {
      if (!rooms.has(room)) rooms.set(room, { version: undefined, confirmed: false });
      const entry = rooms.get(room);
      if (since != null) entry.version = since;
      else if (entry.version === undefined && typeof stored[room] === 'number') entry.version = stored[room];
      return joinRequest(room, true).catch((err) => {
        // A join that never succeeded is forgotten, so reconnects do not retry it.
        if (rooms.get(room) === entry && !entry.confirmed) forget(room);
        throw err;
      });
    },
    leave(room) {
      forget(room);
      return request('leaveRoom', { room }, { room });
    },
    async ping() {
      const started = Date.now();
      await request('ping');
      return Date.now() - started;
    },
    request(event, data) {
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
      attempt = failedHandshakes = 0;
      setState('connecting');
      open();
    },
    close() {
      if (closing) return;
      const sock = ws;
      ws = null; // detached at once, so a reconnect() right after cannot meet its close
      shutdown();
      if (!sock) return;
      sock.onmessage = () => {};
      sock.onclose = (ev) => emit('close', { code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
      sock.close(1000, 'client closed');
    },
  };

  open();
  return client;
}
