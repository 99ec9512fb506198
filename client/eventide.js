/**
 * Eventide hub client: a dependency-free ES module over the browser's WebSocket or
 * any implementation passed as `options.WebSocket` (`ws` in Node). This file is the
 * connection; `src/rooms.js` the rooms, `src/positions.js` their storage. The hub
 * serves them built into one file at `/eventide.js` (minified at `/eventide.min.js`);
 * `eventide.d.ts` documents every option, method and event.
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

import { positions } from './src/positions.js';
import { roomTable } from './src/rooms.js';
import {
  CLOSE_HEARTBEAT_TIMEOUT, DEFAULTS, EventideError, IDEMPOTENT, LIFECYCLE, ORIGIN_SUSPECT_AFTER,
  ORIGIN_SUSPECT_FOR_MS, REFRESH_FLOOR_MS, STABLE_AFTER_MS, backoff, expiresSoon, fatalClose,
  handshakeStatus, jwtClaim, refreshDelay, resolveUrl,
} from './src/util.js';

export { CLOSE_HEARTBEAT_TIMEOUT, DEFAULTS, EventideError };

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

  const rooms = roomTable({
    opt, store, emit,
    request: (event, data, how) => request(event, data, how),
    isOpen: () => sockOpen,
    onRejoined: () => setState('live'),
  });

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
      if (!rooms.opened()) setState('live');
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
    rooms.dropped();
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
    rooms.stopped(why ? 'failed' : 'closed', err);
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
    } else rooms.unsolicited(frame);
    const position = rooms.check(frame);
    if (position.verdict === 'drop') return console.debug('[eventide] dropped duplicate', frame);
    emit('message', frame);
    if (!LIFECYCLE.has(frame.event)) emit(frame.event, frame.data, frame);
    rooms.delivered(frame, position);
  }

  const client = {
    get state() { return state; },
    get failure() { return failure; },
    get rooms() { return rooms.versions(); },
    room(name) { return rooms.info(name); },
    /** @param {string} room @param {{ since?: number, epoch?: string }} [at] */
    join(room, at = {}) {
      const closed = !closing ? undefined
        : failure ? new EventideError('failed', failure.message, failure) : new EventideError('closed', 'client is closed');
      return rooms.join(room, at, closed);
    },
    leave(room) {
      rooms.leave(room);
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
