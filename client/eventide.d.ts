/**
 * Eventide hub client. `connect()` opens a WebSocket to the hub and keeps it open:
 * it retries network failures forever (full-jitter backoff, capped), rejoins every
 * room with its position (`since`), drops updates it has already seen, notices dead
 * connections with `ping`/`pong`, reports each room's state, and stops with a `failed`
 * event only when the hub refuses it for good.
 *
 * @example
 * import { connect } from '@eventide/client';
 * const client = connect({ url: 'wss://hub.example/ws', token: () => getToken(), storage: localStorage });
 * client.on('availabilityUpdated', (data, frame) => apply(frame.room, data));
 * // The position is stored once the returned promise settles.
 * client.on('resync', ({ room }) => reloadSnapshot(room));
 * client.on('room', ({ room, state, reason }) => showRoomBadge(room, state, reason));
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
  /** The stream epoch `since` belongs to; another epoch answers `recovered: false`. */
  epoch?: string;
}

/**
 * `joinedRoom`: `version` (and `epoch`, an opaque string) for rooms with a version
 * stream; `recovered` only with `since`. The hub also sends it unsolicited, without
 * `ref` and with `recovered: false`, when a stream skipped versions or restarted.
 */
export interface JoinedRoomData {
  room: string;
  version?: number;
  epoch?: string;
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

/**
 * The hub's own frames, a union discriminated by `event`: checking `frame.event`
 * narrows `data`. Events services emit are {@link CustomFrame}s.
 */
export type ServerFrame =
  | { event: 'joinedRoom'; data: JoinedRoomData; ref?: string }
  | { event: 'leftRoom'; data: LeftRoomData; ref?: string }
  | { event: 'tokenRefreshed'; data: TokenRefreshedData; ref?: string }
  | { event: 'pong'; ref?: string }
  | { event: 'availabilityUpdated'; room: string; data: AvailabilityUpdatedData }
  | { event: 'error'; data: ErrorData; ref?: string };

/** Any frame the hub sends: its own, or an emitted one. */
export type AnyServerFrame = ServerFrame | CustomFrame;

/**
 * An event a service emitted: to a room (`room` set; `version` set for rooms with
 * history), to one user's sockets (`user` set), or to everyone (neither). Kept out of
 * {@link ServerFrame}, whose `event` would otherwise no longer narrow `data`.
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
  /** Used by `leave()` to forget a room's position, when present. */
  removeItem?(key: string): void;
}

/** What the client listens to for `online`, `offline`, `pageshow` and `visibilitychange`. */
export interface WindowLike {
  addEventListener(type: string, listener: () => void): void;
  removeEventListener(type: string, listener: () => void): void;
  document?: {
    visibilityState?: string;
    addEventListener(type: string, listener: () => void): void;
    removeEventListener(type: string, listener: () => void): void;
  };
}

/** The part of `fetch` the client uses to learn why a handshake was refused. */
export type FetchLike = (url: string, init: { headers?: Record<string, string>; mode?: 'no-cors'; cache?: 'no-store'; signal?: AbortSignal }) => Promise<{ status: number }>;

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
   * Called shortly before the token's `exp` (30 s, or half its life if shorter, never
   * sooner than 5 s from the last): the new token is sent as `refreshToken` and used
   * for later reconnects; also called after a handshake refused with 401, which is
   * final when it throws or returns the same token. Without it, close `4001` and a
   * 401 are final.
   */
  onTokenRefresh?: () => Promise<string>;
  /** The WebSocket implementation; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /**
   * Asks `/ws` over HTTP why a handshake was refused when the WebSocket does not say
   * (browsers never do); default `globalThis.fetch`.
   */
  fetch?: FetchLike;
  /** Where `online`/`offline`/`pageshow`/`visibilitychange` come from; default `globalThis.window`. */
  window?: WindowLike;
  /**
   * A request without a reply this long after it was made (queued or sent, re-sent
   * or not) rejects with `timeout`. Default 10000.
   */
  requestTimeoutMs?: number;
  /** A socket not open by then is dropped and retried. Default 10000. */
  connectTimeoutMs?: number;
  /** Retry delays are drawn from [0, min(maxBackoffMs, minBackoffMs · 2^n)). Default 500. */
  minBackoffMs?: number;
  /** The cap of every retry delay. Default 15000. */
  maxBackoffMs?: number;
  /** Send `ping` after this long without any frame from the hub; 0 turns it off. Default 20000. */
  pingIntervalMs?: number;
  /** No frame this long after a `ping`: the socket is dropped and a new one opened. Default 10000. */
  pongTimeoutMs?: number;
  /**
   * Keeps every room's position here (`localStorage`, `sessionStorage`), one key per
   * room, so a client made after a reload joins with `since`. Writes merge with other
   * tabs (the furthest position of an epoch wins). Off by default: use it only when
   * the app keeps its own view of the rooms across reloads too.
   */
  storage?: StorageLike;
  /** The prefix of the keys in `storage` (`<prefix>:<room>`). Default `eventide:position`. */
  storageKey?: string;
  /** Sees every frame in and out (tokens redacted), heartbeats included. */
  log?: (dir: 'in' | 'out', frame: ClientFrame | AnyServerFrame | string) => void;
}

/** The defaults of the tunable options. */
export declare const DEFAULTS: Readonly<{
  requestTimeoutMs: number;
  connectTimeoutMs: number;
  minBackoffMs: number;
  maxBackoffMs: number;
  pingIntervalMs: number;
  pongTimeoutMs: number;
  storageKey: string;
}>;

/** The `code` of the `close` event when the client drops a socket: no `pong`, or not open in time. */
export declare const CLOSE_HEARTBEAT_TIMEOUT: 4000;

// ---- events ----------------------------------------------------------------------

/**
 * `live`: a socket is open and every room known when it opened has answered its join.
 * `reconnecting`: waiting for, or opening, another socket (or rejoining).
 */
export type ConnectionState = 'connecting' | 'live' | 'reconnecting' | 'closed';

/** Why the client stopped for good: only what the hub refuses for good. */
export interface Failure {
  /**
   * `unauthorized`: the handshake was refused with 401 and there is no
   * `onTokenRefresh`, or it gave no new token. `origin`: the hub refused this page's origin (403, or
   * handshakes it keeps refusing for 10 s while it accepts the token over HTTP).
   * `token_expired`: close `4001` without `onTokenRefresh`. `policy`: close `1008`
   * (flooding). `revoked`: close `4003`.
   */
  reason: 'unauthorized' | 'origin' | 'token_expired' | 'policy' | 'revoked';
  message: string;
  /** The close code of the last socket (`1006` for a refused handshake). */
  code: number;
  /** The HTTP status of a refused handshake, when known. */
  status?: number;
}

/**
 * What a room is doing. `joining`: the first join has not been answered.
 * `live`: joined on the current socket, and every update so far was delivered.
 * `recovering`: the connection dropped; the room will be (or is being) rejoined with
 * its position. `resyncing`: the hub could not replay what was missed; the `resync`
 * handlers run. `left`: gone, for `reason`.
 */
export type RoomState = 'joining' | 'live' | 'recovering' | 'resyncing' | 'left';

/**
 * Why a room was left: `left` (the app's `leave()`), a join refused for good (the
 * hub's code: `forbidden`, `too_many_rooms`, …), the hub's `leftRoom` reason
 * (`forbidden`, or `removed` when it gave none), `closed` or `failed`.
 */
export type LeftReason = 'left' | 'closed' | 'failed' | 'removed' | ErrorCode | (string & {});

export interface RoomInfo {
  room: string;
  state: RoomState;
  /** The position: the last version delivered to the app. */
  version: number | undefined;
  /** The stream epoch of `version`, when the hub sends one. */
  epoch?: string;
  /** Only for `left`. */
  reason?: LeftReason;
}

/** What `resync` says. */
export interface ResyncInfo {
  room: string;
  /** The stream goes on after this version. */
  version: number;
  epoch?: string;
}

export interface CloseInfo {
  code: number;
  reason: string;
  wasClean: boolean;
}

/** A failure that answers no request (an unsolicited `error` frame, a refused rejoin, a failed refresh). */
export interface ClientErrorData {
  code: ErrorCode | 'token_refresh_failed' | 'connect_failed' | 'resync_failed' | (string & {});
  message: string;
  /** The room of a join that failed (and is retried) or of a failed resync. */
  room?: string;
}

/** The client's own events. A hub event of the same name reaches only `message`. */
export interface LifecycleEvents {
  state: (state: ConnectionState) => void;
  /** A room's state changed. */
  room: (info: RoomInfo) => void;
  /**
   * The room's updates were not all delivered (`recovered: false`, a version hole,
   * another epoch): reload its snapshot over REST. Return a promise: the room stays
   * `resyncing`, and its position is not stored, until every handler's settles; a
   * rejected one keeps the old stored position (a reload replays or resyncs again).
   */
  resync: (info: ResyncInfo) => unknown;
  /** Every socket that closes, also before a reconnect. */
  close: (info: CloseInfo) => void;
  /** The client stopped for good; `client.failure` keeps the reason. */
  failed: (failure: Failure) => void;
  /** The hub removed this client from a room. */
  left: (info: { room: string; reason?: string }) => void;
  /** Every frame from the hub (after duplicates are dropped). */
  message: (frame: AnyServerFrame) => void;
  error: (error: ClientErrorData, frame?: ServerFrame) => void;
}

/** The hub's events, with their `data`. */
export interface HubEvents {
  availabilityUpdated: (data: AvailabilityUpdatedData, frame: Extract<ServerFrame, { event: 'availabilityUpdated' }>) => void;
  joinedRoom: (data: JoinedRoomData, frame: Extract<ServerFrame, { event: 'joinedRoom' }>) => void;
  leftRoom: (data: LeftRoomData, frame: Extract<ServerFrame, { event: 'leftRoom' }>) => void;
  tokenRefreshed: (data: TokenRefreshedData, frame: Extract<ServerFrame, { event: 'tokenRefreshed' }>) => void;
  pong: (data: undefined, frame: Extract<ServerFrame, { event: 'pong' }>) => void;
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
  /**
   * Replay from this version (e.g. one the app stored); default the stored one. A room
   * already followed keeps its own position.
   */
  since?: number;
  /** The epoch of `since`. */
  epoch?: string;
}

export interface EventideClient {
  readonly state: ConnectionState;
  /** Why the client stopped, once it has; `null` otherwise (also after `close()`). */
  readonly failure: Failure | null;
  /** A copy of the followed rooms and the position in each. */
  readonly rooms: Map<string, number | undefined>;
  /** A room's state and position, or undefined for a room not followed. */
  room(room: string): RoomInfo | undefined;
  /**
   * Follows a room (rejoined after every reconnect); resolves with `joinedRoom`'s
   * data. Transient failures (`timeout`, `unavailable`, a dropped socket) are retried
   * with backoff, each reported as an `error` event with `room`; it rejects only when
   * the hub refuses the room for good (the hub's code), on `leave()` (`left`), or when
   * the client stops (`closed`, `failed`).
   */
  join(room: string, options?: JoinOptions): Promise<JoinedRoomData>;
  /** Stops following a room and forgets its stored position. */
  leave(room: string): Promise<LeftRoomData>;
  /** Round trip of a `ping`, in milliseconds. */
  ping(): Promise<number>;
  /**
   * Sends any client event; resolves with the reply's data. Only `joinRoom`,
   * `leaveRoom` and `ping` are sent again when the connection drops before the reply;
   * others reject with `disconnected`. A `refreshToken`'s token is used for every
   * later connection.
   */
  request<T = unknown>(event: string, data?: unknown): Promise<T>;
  /** Subscribes; returns the unsubscribe function. */
  on<K extends keyof KnownEvents>(event: K, handler: KnownEvents[K]): () => void;
  on<T = unknown>(event: string, handler: CustomHandler<T>): () => void;
  /** After `failed` or `close()`: connects again, rejoining the rooms it had joined. */
  reconnect(): void;
  /** Closes for good: no reconnect; pending requests reject with `closed`. */
  close(): void;
}

export declare function connect(options: ConnectOptions): EventideClient;
