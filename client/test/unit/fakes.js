// Stand-ins for what the client talks to, so its logic runs without a hub: a
// WebSocket whose every event the test fires by hand, a Storage, a window, and fake
// timers (node:test's mock.timers, Date included).

import { mock } from 'node:test';

// EVENTIDE_CLIENT_MODULE runs these tests against another build (the minified one, or an old one).
const { connect } = await import(process.env.EVENTIDE_CLIENT_MODULE ?? '../../eventide.js');

if (!process.env.EVENTIDE_TEST_DEBUG) console.debug = () => {};

/** A WebSocket the test drives: `open()`, `receive(frame)`, `refuse(status)`, `drop(code)`. */
export class FakeSocket {
  static all = [];
  constructor(url, protocols) {
    Object.assign(this, { url, protocols, sent: [], closed: null, onopen: null, onmessage: null, onclose: null, onerror: null });
    FakeSocket.all.push(this);
  }
  static get last() { return FakeSocket.all.at(-1); }
  send(text) { this.sent.push(JSON.parse(text)); }
  close(code, reason) { this.closed = { code, reason }; }
  open() { this.onopen?.({}); }
  receive(frame) { this.onmessage?.({ data: JSON.stringify(frame) }); }
  /** A refused handshake; `status` as `ws` reports it, or none as browsers do. */
  refuse(status) {
    this.onerror?.(status ? { message: `Unexpected server response: ${status}` } : {});
    this.onclose?.({ code: 1006, reason: '', wasClean: false });
  }
  drop(code = 1006, reason = '') { this.onclose?.({ code, reason, wasClean: false }); }
  /** The frames of one event sent on this socket. */
  frames(event) { return this.sent.filter((f) => f.event === event); }
  /** Answers the newest request of `event` with `data` (or an error frame). */
  reply(event, data, asEvent) {
    const req = this.frames(event).at(-1);
    this.receive({ event: asEvent ?? replyName(event), ref: req.ref, ...(data === undefined ? {} : { data }) });
  }
}

const replyName = (event) => ({ joinRoom: 'joinedRoom', leaveRoom: 'leftRoom', ping: 'pong', refreshToken: 'tokenRefreshed' })[event] ?? event;

/** A Storage over a Map; two clients may share one. */
export function fakeStorage(values = new Map()) {
  return {
    values,
    getItem: (k) => (values.has(k) ? values.get(k) : null),
    setItem: (k, v) => values.set(k, String(v)),
    removeItem: (k) => values.delete(k),
  };
}

/** A window with a document: enough for online/offline, pageshow and visibilitychange. */
export function fakeWindow() {
  const win = new EventTarget();
  win.document = new EventTarget();
  win.document.visibilityState = 'visible';
  return win;
}

/** A JWT-shaped token (unsigned) with these claims; `exp`/`iat` in seconds of fake time. */
export function token(claims = {}) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${b64({ alg: 'none' })}.${b64(claims)}.sig`;
}

/** Fake timers and Date from 0, fresh sockets; call in beforeEach. */
export function setup() {
  FakeSocket.all = [];
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
}
export function teardown() {
  mock.timers.reset();
}

/** Lets pending promise callbacks run. */
export const settle = async () => {
  for (let i = 0; i < 10; i += 1) await Promise.resolve();
};

/** Advances fake time and lets promises run. */
export async function tick(ms) {
  await settle();
  mock.timers.tick(ms);
  await settle();
}

/** `connect()` over the fake socket, recording states, room states and events. */
export function fakeClient(options = {}) {
  const c = connect({ url: 'ws://hub.test/ws', token: 't', WebSocket: FakeSocket, fetch: async () => { throw new TypeError('offline'); }, ...options });
  c.seen = [];
  for (const event of ['state', 'room', 'resync', 'failed', 'error', 'left']) c.on(event, (info) => c.seen.push([event, info]));
  c.events = (event) => c.seen.filter(([e]) => e === event).map(([, info]) => info);
  return c;
}
