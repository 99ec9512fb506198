/**
 * The rooms a client follows: each one's state, position and join, and what the
 * hub's frames mean for them. The connection (eventide.js) tells it when a socket
 * opens or drops and hands it every frame; it asks the connection to send joins.
 * @module eventide/rooms
 */

import { EventideError, REFUSED, backoff } from './util.js';

/**
 * @param {{ opt: any, store: ReturnType<typeof import('./positions.js').positions>,
 *   emit: (event: string, ...args: any[]) => any[],
 *   request: (event: string, data: any, how: any) => Promise<any>,
 *   isOpen: () => boolean, onRejoined: () => void }} deps
 */
export function roomTable({ opt, store, emit, request, isOpen, onRejoined }) {
  /**
   * room → entry. `version` is the last position handed to the app in this room;
   * it only moves forward, except when the hub says the stream restarted (resync).
   * `awaiting`: no joinedRoom yet on the current socket. `resyncs`: resync handlers
   * not yet settled; while any run, or one failed (`stale`), nothing is stored.
   */
  const rooms = new Map();
  const rejoining = new Set(); // rooms the current socket has not heard joinedRoom for

  function info(entry) {
    const out = { room: entry.room, state: entry.state, version: entry.version };
    if (entry.epoch !== undefined) out.epoch = entry.epoch;
    if (entry.reason !== undefined) out.reason = entry.reason;
    return out;
  }

  function setState(entry, next, reason) {
    if (entry.state === next && entry.reason === reason) return;
    entry.state = next;
    entry.reason = reason;
    emit('room', info(entry));
  }

  /** The state a room is in, from what is known about it. */
  function settle(entry) {
    if (rooms.get(entry.room) !== entry) return;
    if (!isOpen() || entry.awaiting) setState(entry, entry.joined ? 'recovering' : 'joining');
    else setState(entry, entry.resyncs > 0 ? 'resyncing' : 'live');
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
    setState(entry, 'left', reason);
  }

  function doneRejoining(room) {
    rejoining.delete(room);
    if (isOpen() && rejoining.size === 0) onRejoined();
  }

  /** Sends `joinRoom` for a room the client wants, with its position when it has one. */
  function sendJoin(entry) {
    if (!isOpen() || entry.sending || rooms.get(entry.room) !== entry) return;
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
      // A stream with no change yet has the epoch '': its first change gives it one,
      // and the hub takes a since of '' as of the current epoch (no restart).
      const epochChanged = !!epoch && data.epoch !== undefined && data.epoch !== epoch;
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
    const about = { room: entry.room, version };
    if (entry.epoch !== undefined) about.epoch = entry.epoch;
    Promise.allSettled(emit('resync', about)).then((outcomes) => {
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

  /** A room event's position in its room's stream, or undefined for unversioned events. */
  function versionOf(frame) {
    if (typeof frame.room !== 'string') return undefined;
    const version = frame.event === 'availabilityUpdated' ? frame.data?.version : frame.version;
    return typeof version === 'number' ? version : undefined;
  }

  return {
    versions: () => new Map([...rooms].map(([room, entry]) => [room, entry.version])),
    info: (room) => (rooms.has(room) ? info(rooms.get(room)) : undefined),

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
    join(room, { since, epoch } = {}, closed = undefined) {
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
      if (closed) {
        // A room joined before stays for reconnect(); a new one is dropped with its join.
        if (entry.joined) for (const w of entry.waiters.splice(0)) w.reject(closed);
        else drop(entry, closed.code, closed);
      } else {
        entry.awaiting = true; // joined already: ask again, so the promise carries a fresh answer
        sendJoin(entry);
      }
      return joined;
    },

    leave(room) {
      const entry = rooms.get(room);
      if (entry) drop(entry, 'left', new EventideError('left', `left ${room} before it was joined`));
      store.remove(room);
    },

    /** Frames that are not replies: the hub removing us, or saying a stream restarted. */
    unsolicited(frame) {
      const room = frame.data?.room;
      if (frame.event === 'leftRoom' && rooms.has(room)) {
        // The hub removed us (e.g. a refreshed token may no longer join the room).
        const reason = frame.data.reason;
        store.remove(room);
        drop(rooms.get(room), reason ?? 'removed', new EventideError(reason ?? 'left', 'the hub removed this client from the room'));
        emit('left', { room, reason });
      } else if (frame.event === 'joinedRoom' && frame.data.recovered === false && rooms.has(room)
        && typeof frame.data.version === 'number') {
        // The hub skipped versions or the stream restarted.
        resync(rooms.get(room), frame.data.version, frame.data.epoch);
      }
    },

    /**
     * Classifies a frame before it is delivered: 'drop' (seen before, or a room left),
     * 'gap', or 'ok'; `version` is its position (undefined for unversioned frames).
     */
    check(frame) {
      const version = versionOf(frame);
      if (version === undefined) return { verdict: 'ok', version };
      const entry = rooms.get(frame.room);
      if (!entry) return { verdict: 'drop', version }; // a straggler from a room we left
      const last = entry.version;
      if (last !== undefined && version <= last) return { verdict: 'drop', version };
      entry.version = version;
      // Versions rise by exactly 1; a hole means something was missed.
      return { verdict: last !== undefined && version > last + 1 ? 'gap' : 'ok', version };
    },

    /** The frame was delivered: now its position may be stored, or a hole resynced. */
    delivered(frame, { verdict, version }) {
      const entry = rooms.get(frame.room);
      if (!entry || version === undefined) return;
      if (verdict === 'gap') resync(entry, version);
      else persist(entry);
    },
  };
}
