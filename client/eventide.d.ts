/**
 * Eventide hub client. `connect()` opens a WebSocket to the hub and keeps it open:
 * it reconnects after transient failures, rejoins every room with `since`, drops
 * updates it has already seen, notices dead connections with `ping`/`pong`, and stops
 * with a `failed` event when retrying cannot help.
 *
 * @example
 * import { connect } from '@eventide/client';
 * const client = connect({ url: 'wss://hub.example/ws', token: () => getToken() });
 * client.on('availabilityUpdated', (data, frame) => apply(frame.room, data));
 * client.on('resync', ({ room }) => reloadSnapshot(room));
 * client.on('failed', ({ reason, message }) => showBanner(reason, message));
 * await client.join('provider-42');
 */

// ---- frames -------------------------------------------------------------------

/** A slot as the REST API and `availabilityUpdated` carry it (times in RFC 3339 UTC). */
export interface Slot {
  id: number;
  providerId: number;
  startsAt: string;
  endsAt: string;
  status: 'available' | 'booked' | 'blocked';
  note: string | null;
  createdAt: string;
  updatedAt: string;
}

/** The hub's own error codes, and the client's (`timeout`, `closed`, `disconnected`, `failed`). */
export type ErrorCode =
  | 'bad_request' | 'unknown_event' | 'forbidden' | 'unauthorized' | 'too_many_rooms'
  | 'rate_limited' | 'unavailable'
  | 'timeout' | 'closed' | 'disconnected' | 'failed';

/** Client → hub frames. */
export type ClientFrame =
  | { event: 'joinRoom'; data: JoinRoomData; ref?: string }
  | { event: 'leaveRoom'; data: { room: string }; ref?: string }
  | { event: 'refreshToken'; data: { token: string }; ref?: string }
  | { event: 'ping'; ref?: string };

export interface JoinRoomData {
  room: string;
  /** The last version seen: the hub replays every change after it. */
  since?: number;
}

/** `joinedRoom`: `version` for rooms with a version stream; `recovered` only with `since`. */
export interface JoinedRoomData {
  room: string;
  version?: number;
  recovered?: boolean;
}

/** `leftRoom`: `reason` is set when the hub removed the socket on its own (e.g. `forbidden`). */
export interface LeftRoomData {
  room: string;
  reason?: string;
}

export interface TokenRefreshedData {
  /** The new expiry, seconds since the epoch. */
  exp: number;
}

export interface AvailabilityUpdatedData {
  action: 'created' | 'updated' | 'deleted';
  version: number;
  /** For `deleted`, the slot as it was. */
  slot: Slot;
}

export interface ErrorData {
  code: ErrorCode | (string & {});
  message: string;
}

/** Hub → client frames. */
export type ServerFrame =
  | { event: 'joinedRoom'; data: JoinedRoomData; ref?: string }
  | { event: 'leftRoom'; data: LeftRoomData; ref?: string }
  | { event: 'tokenRefreshed'; data: TokenRefreshedData; ref?: string }
  | { event: 'pong'; ref?: string }
  | { event: 'availabilityUpdated'; room: string; data: AvailabilityUpdatedData }
  | { event: 'error'; data: ErrorData; ref?: string }
  | CustomFrame;

/**
 * An event a service emitted: to a room (`room` set; `version` set for rooms with
 * history), to one user's sockets (`user` set), or to everyone (neither).
 */
export interface CustomFrame<T = unknown> {
  event: string;
  data: T;
  room?: string;
  version?: number;
  user?: string;
}

// ---- options -------------------------------------------------------------------

/** What `storage` needs: `sessionStorage` and `localStorage` fit. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** The part of a WebSocket the client uses. */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor: the browser's, or `ws`'s `WebSocket` in Node. */
export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike;

export interface ConnectOptions {
  /** Socket URL; default `/ws` of the page. Relative and http(s) URLs map to ws(s). Required outside a browser. */
  url?: string;
  /** A JWT, or a function called before every (re)connect to get one. */
  token: string | (() => string | Promise<string>);
  /**
   * Called ~30 s before the token's `exp`: the new token is sent as `refreshToken` and
   * used for later reconnects. Without it, close `4001` (token expired) is fatal.
   */
  onTokenRefresh?: () => Promise<string>;
  /** The WebSocket implementation; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** A request without a reply by then rejects with `timeout`. Default 10000. */
  requestTimeoutMs?: number;
  /** Reconnect delays are drawn from [0, min(maxBackoffMs, minBackoffMs · 2^n)). Default 500. */
  minBackoffMs?: number;
  /** Default 15000. */
  maxBackoffMs?: number;
  /** Send `ping` after this long without any frame from the hub; 0 turns it off. Default 20000. */
  pingIntervalMs?: number;
  /** No frame this long after a `ping`: the socket is dropped and a new one opened. Default 10000. */
  pongTimeoutMs?: number;
  /**
   * This many sockets in a row that never open (refused token or origin, hub
   * unreachable) end the client with `failed` reason `handshake_failed`. Default 10;
   * `Infinity` retries forever.
   */
  maxFailedHandshakes?: number;
  /**
   * Keeps the last version of every room here (`sessionStorage`), so a client made
   * after a reload joins with `since`. Off by default: use it only when the app keeps
   * its own view of the rooms across reloads too.
   */
  storage?: StorageLike;
  /** The key in `storage`. Default `eventide:versions`. */
  storageKey?: string;
  /** Sees every frame in and out (tokens redacted), heartbeats included. */
  log?: (dir: 'in' | 'out', frame: ClientFrame | ServerFrame | string) => void;
}

/** The defaults of the tunable options. */
export declare const DEFAULTS: Readonly<{
  requestTimeoutMs: number;
  minBackoffMs: number;
  maxBackoffMs: number;
  pingIntervalMs: number;
  pongTimeoutMs: number;
  maxFailedHandshakes: number;
  storageKey: string;
}>;

/** The `code` of the `close` event when a socket is dropped for want of a `pong`. */
export declare const CLOSE_HEARTBEAT_TIMEOUT: 4000;

// ---- events ----------------------------------------------------------------------

export type ConnectionState = 'connecting' | 'live' | 'reconnecting' | 'closed';

/** Why the client stopped for good. */
export interface Failure {
  /**
   * `handshake_failed`: `maxFailedHandshakes` sockets in a row never opened (browsers
   * cannot tell a refused token from a refused origin or a hub that is down; `status`
   * says which when the WebSocket implementation reports it). `token_expired`: close
   * `4001` without `onTokenRefresh`. `policy`: close `1008` (flooding). `revoked`: close `4003`.
   */
  reason: 'handshake_failed' | 'token_expired' | 'policy' | 'revoked';
  message: string;
  /** The close code of the last socket (`1006` for a refused handshake). */
  code: number;
  /** For `handshake_failed`: how many handshakes failed in a row. */
  attempts?: number;
  /** For `handshake_failed`: the HTTP status of the refusal, when known (401, 403, 429). */
  status?: number;
}

export interface CloseInfo {
  code: number;
  reason: string;
  wasClean: boolean;
}

/** A failure that answers no request (an unsolicited `error` frame, a refused rejoin, a failed refresh). */
export interface ClientErrorData {
  code: ErrorCode | 'token_refresh_failed' | 'connect_failed' | (string & {});
  message: string;
  /** The room of a refused rejoin. */
  room?: string;
}

/** The client's own events. A hub event of the same name reaches only `message`. */
export interface LifecycleEvents {
  state: (state: ConnectionState) => void;
  /** The room's updates were not all delivered: reload its snapshot over REST. */
  resync: (info: { room: string; version: number }) => void;
  /** Every socket that closes, also before a reconnect. */
  close: (info: CloseInfo) => void;
  /** The client stopped for good; `client.failure` keeps the reason. */
  failed: (failure: Failure) => void;
  /** The hub removed this client from a room. */
  left: (info: { room: string; reason?: string }) => void;
  /** Every frame from the hub (after duplicates are dropped). */
  message: (frame: ServerFrame) => void;
  error: (error: ClientErrorData, frame?: ServerFrame) => void;
}

/** The hub's events, with their `data`. */
export interface HubEvents {
  availabilityUpdated: (data: AvailabilityUpdatedData, frame: Extract<ServerFrame, { event: 'availabilityUpdated' }>) => void;
  joinedRoom: (data: JoinedRoomData, frame: ServerFrame) => void;
  leftRoom: (data: LeftRoomData, frame: ServerFrame) => void;
  tokenRefreshed: (data: TokenRefreshedData, frame: ServerFrame) => void;
  pong: (data: undefined, frame: ServerFrame) => void;
}

export type KnownEvents = LifecycleEvents & HubEvents;

/** A handler for an emitted event: `data` typed by the caller, the whole frame beside it. */
export type CustomHandler<T = unknown> = (data: T, frame: CustomFrame<T>) => void;

// ---- the client -------------------------------------------------------------------

/** The error requests reject with. */
export declare class EventideError extends Error {
  constructor(code: string, message: string, data?: unknown);
  readonly name: 'EventideError';
  /** The hub's error code, or the client's own (`timeout`, `closed`, `disconnected`, `failed`). */
  readonly code: ErrorCode | (string & {});
  /** The `error` frame's data, or the `Failure` for `failed`. */
  readonly data: ErrorData | Failure | undefined;
}

export interface JoinOptions {
  /** Replay from this version (e.g. one the app stored); default the last seen or stored one. */
  since?: number;
}

export interface EventideClient {
  readonly state: ConnectionState;
  /** Why the client stopped, once it has; `null` otherwise (also after `close()`). */
  readonly failure: Failure | null;
  /** A copy of the joined rooms and the last version seen in each. */
  readonly rooms: Map<string, number | undefined>;
  /** Joins a room (rejoined after every reconnect); resolves with `joinedRoom`'s data. */
  join(room: string, options?: JoinOptions): Promise<JoinedRoomData>;
  leave(room: string): Promise<LeftRoomData>;
  /** Round trip of a `ping`, in milliseconds. */
  ping(): Promise<number>;
  /**
   * Sends any client event; resolves with the reply's data. Only `joinRoom`,
   * `leaveRoom`, `refreshToken` and `ping` are sent again when the connection drops
   * before the reply; others reject with `disconnected`.
   */
  request<T = unknown>(event: string, data?: unknown): Promise<T>;
  /** Subscribes; returns the unsubscribe function. */
  on<K extends keyof KnownEvents>(event: K, handler: KnownEvents[K]): () => void;
  on<T = unknown>(event: string, handler: CustomHandler<T>): () => void;
  /** After `failed` or `close()`: connects again, rejoining the rooms it knew. */
  reconnect(): void;
  /** Closes for good: no reconnect; pending requests reject with `closed`. */
  close(): void;
}

export declare function connect(options: ConnectOptions): EventideClient;
