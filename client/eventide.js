/**
 * Eventide hub browser client: a small, dependency-free ES module over the native
 * `WebSocket`. It authenticates with the subprotocol pair `["eventide", "bearer.<jwt>"]`,
 * which keeps the token out of URLs (and so out of consoles and access logs), reconnects with exponential
 * backoff and full jitter, rejoins every room with `since` so no availability update
 * is lost, drops duplicates, and correlates requests and replies by `ref`.
 *
 * @example
 * import { connect } from '/eventide.js';
 * const client = connect({ token: () => localStorage.getItem('token') });
 * client.on('availabilityUpdated', (data, frame) => console.log(frame.room, data.action, data.slot));
 * client.on('resync', ({ room }) => reloadSnapshot(room));
 * await client.join('provider-42');
 *
 * @module eventide
 */

const REQUEST_TIMEOUT_MS = 10_000; // a request without a reply by then rejects
const STABLE_AFTER_MS = 5_000; // a connection open this long resets the backoff
const REFRESH_AHEAD_MS = 30_000; // ask for a new token this long before `exp`
const REFRESH_RETRY_MS = 5_000; // retry a failed refresh this often while the token lasts

/** @typedef {'connecting' | 'live' | 'reconnecting' | 'closed'} ConnectionState */

/**
 * @typedef {object} ConnectOptions
 * @property {string} [url] WebSocket URL; default `ws(s)://<location.host>/ws`. Relative
 *   and http(s) URLs are resolved against the page and mapped to ws(s).
 * @property {string | (() => string | Promise<string>)} token JWT, or a function called
 *   before every (re)connect to get one.
 * @property {() => Promise<string>} [onTokenRefresh] called ~30 s before the token's `exp`
 *   (read from the JWT payload); the new token is sent as `refreshToken` and used for
 *   later reconnects. Also called before a reconnect whose token is about to expire.
 * @property {number} [minBackoffMs=500] first reconnect delay cap
 * @property {number} [maxBackoffMs=15000] largest reconnect delay cap
 * @property {(dir: 'in' | 'out', frame: object | string) => void} [log] sees every frame
 *   (tokens redacted), in addition to `console.debug`
 */

/**
 * @typedef {object} EventideClient
 * @property {ConnectionState} state current connection state (starts as `'connecting'`)
 * @property {Map<string, number | undefined>} rooms copy of the joined rooms and the
 *   last version seen in each
 * @property {(room: string) => Promise<{room: string, version?: number, recovered?: boolean}>} join
 *   joins a room (resolves with the `joinedRoom` data); it is rejoined after reconnects
 * @property {(room: string) => Promise<{room: string}>} leave leaves a room
 * @property {(event: string, data?: any) => Promise<any>} request sends any client event
 *   and resolves with the reply's data
 * @property {(event: string, handler: Function) => () => void} on subscribes; returns
 *   the unsubscribe function
 * @property {() => void} close closes for good: no reconnect; pending requests reject
 */

/**
 * The error a request rejects with. `code` is the server's error code (`bad_request`,
 * `unknown_event`, `forbidden`, `unauthorized`, `too_many_rooms`, `rate_limited`) or
 * one of the client's own: `timeout`, `closed`, `disconnected`.
 */
export class EventideError extends Error {
  /**
   * @param {string} code machine-readable code
   * @param {string} message human-readable text
   * @param {any} [data] the `error` frame's data, when there was one
   */
  constructor(code, message, data) {
    super(message);
    this.name = 'EventideError';
    this.code = code;
    this.data = data;
  }
}

/** Reads `exp` (seconds) from a JWT payload, unverified: only used to time refreshes. */
function jwtExp(token) {
  try {
    const b64 = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const exp = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4))).exp;
    return typeof exp === 'number' ? exp : undefined;
  } catch {
    return undefined;
  }
}

const expiresSoon = (token) => {
  const exp = jwtExp(token);
  return exp !== undefined && exp * 1000 - Date.now() < REFRESH_AHEAD_MS;
};

/** Builds the socket URL: resolves it against the page and maps http(s) to ws(s). */
function socketUrl(url) {
  const u = new URL(url ?? '/ws', globalThis.location?.href);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  return u.href;
}

/** The subprotocols that carry the token; the hub selects `eventide` and never echoes it. */
const subprotocols = (token) => ['eventide', `bearer.${token}`];

/**
 * Opens a connection to the hub and keeps it open until `close()`.
 *
 * Events for `on()`: every server event by name, handler `(data, frame)` — e.g.
 * `availabilityUpdated` (deduplicated per room by `data.version`), custom emitted
 * events, replies such as `joinedRoom`, and `error` for error frames that answer no
 * pending request (those reject the request instead) and for client-side failures
 * (`token_refresh_failed`, a refused rejoin with `room`). Lifecycle: `state`
 * (ConnectionState), `resync` (`{room, version}`: reload that room's snapshot over
 * REST), `close` (`{code, reason, wasClean}` for every socket that closes).
 *
 * @param {ConnectOptions} options
 * @returns {EventideClient}
 */
export function connect(options) {
  if (!options || options.token == null) throw new TypeError('connect: options.token is required');
  socketUrl(options.url); // fail fast on a malformed URL
  const minBackoff = options.minBackoffMs ?? 500;
  const maxBackoff = options.maxBackoffMs ?? 15_000;

  const listeners = new Map(); // event name → Set of handlers
  const rooms = new Map(); // room → { version: number | undefined, confirmed: boolean }
  const queue = []; // requests waiting for a live socket
  const inflight = new Map(); // ref → request sent on the current socket
  let ws = null;
  let state = 'connecting';
  let closing = false;
  let attempt = 0;
  let seq = 0;
  let activeToken; // token of the current connection
  let refreshedToken; // from onTokenRefresh; preferred for reconnects while valid
  let reconnectTimer, stableTimer, refreshTimer;

  function emit(event, ...args) {
    for (const handler of [...(listeners.get(event) ?? [])]) {
      try {
        handler(...args);
      } catch (err) {
        console.error(`[eventide] "${event}" handler threw`, err);
      }
    }
  }

  const isLive = () => state === 'live' && ws !== null;

  function setState(next) {
    if (state !== next) emit('state', (state = next));
  }

  function log(dir, frame) {
    console.debug(dir === 'in' ? '[eventide] ⇐' : '[eventide] ⇒', frame);
    try {
      options.log?.(dir, frame);
    } catch (err) {
      console.error('[eventide] log callback threw', err);
    }
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
      sock = ws = new WebSocket(socketUrl(options.url), subprotocols(activeToken));
    } catch (err) {
      emit('error', { code: 'connect_failed', message: String(err?.message ?? err) });
      return scheduleReconnect();
    }
    sock.onopen = () => {
      if (sock !== ws) return;
      setState('live');
      stableTimer = setTimeout(() => (attempt = 0), STABLE_AFTER_MS);
      scheduleRefresh();
      resubscribe();
      flush();
    };
    sock.onmessage = (ev) => sock === ws && receive(ev.data);
    sock.onclose = (ev) => sock === ws && handleClose(ev);
  }

  function handleClose(ev) {
    ws = null;
    clearTimeout(stableTimer);
    clearTimeout(refreshTimer);
    // Requests that went out on the dead socket got no reply: user requests are sent
    // again on the next socket; internal ones (rejoin, refresh) are redone anyway.
    const lost = [...inflight.values()];
    inflight.clear();
    for (const req of lost) clearTimeout(req.timer);
    queue.unshift(...lost.filter((req) => req.resend));
    for (const req of lost.filter((r) => !r.resend)) {
      req.reject(new EventideError('disconnected', 'connection closed before the reply'));
    }
    emit('close', { code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
    if (closing) setState('closed');
    else scheduleReconnect();
  }

  function scheduleReconnect() {
    if (closing) return;
    setState('reconnecting');
    const cap = Math.min(maxBackoff, minBackoff * 2 ** attempt);
    attempt = Math.min(attempt + 1, 30);
    reconnectTimer = setTimeout(open, Math.random() * cap); // "full jitter"
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

  function request(event, data, { room, resend = true, onReply } = {}) {
    if (closing) return Promise.reject(new EventideError('closed', 'client is closed'));
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
      req.reject(new EventideError('timeout', `no reply to ${req.event} within ${REQUEST_TIMEOUT_MS / 1000} s`));
    }, REQUEST_TIMEOUT_MS);
    log('out', frame.event === 'refreshToken' ? { ...frame, data: { token: '[redacted]' } } : frame);
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
      entry.version = Math.max(entry.version ?? version, version);
    } else if (data.recovered === false || version < since) {
      // History no longer reaches back to `since` (or the stream restarted): the
      // replay is incomplete, so the app must reload the snapshot.
      entry.version = version;
      emit('resync', { room, version });
    } // else: the replay that follows brings entry.version up to date
  }

  /** After a reconnect: rejoin every room, unless a queued join/leave for it is about to go. */
  function resubscribe() {
    for (const room of rooms.keys()) {
      if (queue.some((req) => req.room === room)) continue;
      joinRequest(room, false).catch((err) => {
        if (err.code === 'disconnected' || err.code === 'closed') return;
        if (err.code !== 'timeout') rooms.delete(room); // refused: forget it, tell the app
        emit('error', { code: err.code, message: err.message, room });
      });
    }
  }

  /** Classifies an availabilityUpdated frame: 'drop' (duplicate/old), 'gap', or 'ok'. */
  function checkUpdate(frame) {
    const version = frame.data?.version;
    if (frame.room === undefined || typeof version !== 'number') return 'ok';
    const entry = rooms.get(frame.room);
    if (!entry) return 'drop'; // a straggler from a room we left
    const last = entry.version;
    if (last !== undefined && version <= last) return 'drop';
    entry.version = version;
    // Versions rise by exactly 1; a hole means something was missed.
    return last !== undefined && version > last + 1 ? 'gap' : 'ok';
  }

  function receive(raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return log('in', raw);
    }
    log('in', frame);
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
    }
    const verdict = frame.event === 'availabilityUpdated' ? checkUpdate(frame) : 'ok';
    if (verdict === 'drop') return console.debug('[eventide] dropped duplicate', frame);
    emit(frame.event, frame.data, frame);
    if (verdict === 'gap') emit('resync', { room: frame.room, version: frame.data.version });
  }

  /** @type {EventideClient} */
  const client = {
    get state() {
      return state;
    },
    get rooms() {
      return new Map([...rooms].map(([room, entry]) => [room, entry.version]));
    },
    join(room) {
      if (!rooms.has(room)) rooms.set(room, { version: undefined, confirmed: false });
      const entry = rooms.get(room);
      return joinRequest(room, true).catch((err) => {
        // A join that never succeeded is forgotten, so reconnects do not retry it.
        if (rooms.get(room) === entry && !entry.confirmed) rooms.delete(room);
        throw err;
      });
    },
    leave(room) {
      rooms.delete(room);
      return request('leaveRoom', { room }, { room });
    },
    request(event, data) {
      return request(event, data);
    },
    on(event, handler) {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event).add(handler);
      return () => listeners.get(event)?.delete(handler);
    },
    close() {
      if (closing) return;
      closing = true;
      clearTimeout(reconnectTimer);
      clearTimeout(stableTimer);
      clearTimeout(refreshTimer);
      const err = new EventideError('closed', 'client closed');
      for (const req of [...queue, ...inflight.values()]) {
        clearTimeout(req.timer);
        req.reject(err);
      }
      queue.length = 0;
      inflight.clear();
      setState('closed');
      ws?.close(1000, 'client closed'); // its close event is still reported
    },
  };

  open();
  return client;
}
