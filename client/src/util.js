/**
 * What the client decides without any state: its defaults and limits, the error it
 * rejects with, token timing, URLs, which closes are final, and the backoff.
 * @module eventide/util
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
export const STABLE_AFTER_MS = 5_000; // a connection open this long resets the backoff
export const REFRESH_AHEAD_MS = 30_000; // ask for a new token this long before `exp` (at most half its life)
export const REFRESH_FLOOR_MS = 5_000; // never refresh sooner than this: the hub limits frames per second
// Handshakes refused while HTTP accepts the token, this many in a row over at least
// this long: the origin (a hub draining for a restart answers HTTP for a few seconds
// on open connections while refusing new ones, so one or two prove nothing).
export const ORIGIN_SUSPECT_AFTER = 3;
export const ORIGIN_SUSPECT_FOR_MS = 10_000;
/** The close code the client reports when it gives up on a socket (silent, or never opened). */
export const CLOSE_HEARTBEAT_TIMEOUT = 4000;

/** App requests the hub may receive twice without harm, so they survive a reconnect. */
export const IDEMPOTENT = new Set(['joinRoom', 'leaveRoom', 'ping']);
/** Join errors that retrying cannot fix: the room is left with this reason. */
export const REFUSED = new Set(['forbidden', 'too_many_rooms', 'bad_request', 'unauthorized', 'unknown_event']);
/** The client's own events; a hub frame with one of these names only reaches `message`. */
export const LIFECYCLE = new Set(['state', 'room', 'resync', 'close', 'failed', 'left', 'message']);

/** The error a request rejects with; `code` is the hub's error code or the client's own. */
export class EventideError extends Error {
  constructor(code, message, data) {
    super(message);
    this.name = 'EventideError';
    this.code = code;
    this.data = data;
  }
}

/** Reads a claim (seconds) from a JWT payload, unverified: only used to time refreshes. */
export function jwtClaim(token, claim) {
  try {
    const b64 = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const value = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)))[claim];
    return typeof value === 'number' ? value : undefined;
  } catch { return undefined; }
}

/** When to ask for a new token: REFRESH_AHEAD_MS (at most half its life) before `exp`, never sooner than the floor. */
export function refreshDelay(token, now) {
  const exp = jwtClaim(token, 'exp');
  if (exp === undefined) return undefined;
  const iat = jwtClaim(token, 'iat') ?? now / 1000;
  const ahead = Math.min(REFRESH_AHEAD_MS, Math.max(0, (exp - iat) * 500));
  return Math.max(REFRESH_FLOOR_MS, exp * 1000 - ahead - now);
}

export const expiresSoon = (token) => (jwtClaim(token, 'exp') ?? Infinity) * 1000 - Date.now() < REFRESH_AHEAD_MS;

/** Resolves the URL against the page (when there is one) and maps http(s) to ws(s), or back. */
export function resolveUrl(url, http = false) {
  const base = globalThis.location?.href;
  if (url == null && !base) throw new TypeError('connect: options.url is required outside a browser');
  const u = new URL(url ?? '/ws', base);
  const map = http ? { 'ws:': 'http:', 'wss:': 'https:' } : { 'http:': 'ws:', 'https:': 'wss:' };
  u.protocol = map[u.protocol] ?? u.protocol;
  return u.href;
}

/** The HTTP status of a refused handshake, when the implementation tells (`ws` does; browsers never). */
export function handshakeStatus(ev) {
  const match = /Unexpected server response: (\d{3})/.exec(String(ev?.message ?? ev?.error?.message ?? ''));
  return match ? Number(match[1]) : undefined;
}

/** Why a close ends the client instead of reconnecting, or undefined when it is transient. */
export function fatalClose(code, reason, canRefresh) {
  if (code === 1008) return { reason: 'policy', message: `the hub closed the connection for policy (${reason || 'flooding'})` };
  if (code === 4003) return { reason: 'revoked', message: 'the hub revoked this connection' };
  if (code === 4001 && !canRefresh) return { reason: 'token_expired', message: 'the token expired; no onTokenRefresh to renew it' };
  return undefined;
}

/** Full jitter: a delay drawn from [0, min(max, min · 2^n)). */
export const backoff = (opt, n) => Math.random() * Math.min(opt.maxBackoffMs, opt.minBackoffMs * 2 ** Math.min(n, 30));

