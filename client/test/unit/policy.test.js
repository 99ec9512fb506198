// The retry policy and the per-room states, on a fake socket and fake timers:
// network failures are retried forever within the backoff cap, only refusals for good
// stop the client, the network coming back or the page being shown again is acted on
// at once, and every room says what it is doing.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';

import { FakeSocket, fakeClient, fakeWindow, settle, setup, teardown, tick } from './fakes.js';

beforeEach(setup);
afterEach(teardown);

test('failed handshakes are retried forever, each delay below maxBackoffMs', async () => {
  const c = fakeClient({ minBackoffMs: 100, maxBackoffMs: 2_000 });
  await settle();
  for (let i = 0; i < 200; i += 1) {
    FakeSocket.last.refuse(); // unreachable: no status, and the HTTP probe fails too
    await settle();
    const before = FakeSocket.all.length;
    await tick(2_000);
    assert.equal(FakeSocket.all.length, before + 1, `attempt ${i + 2} within the cap`);
  }
  assert.deepEqual(c.events('failed'), []);
  assert.equal(c.state, 'reconnecting');
  FakeSocket.last.open();
  assert.equal(c.state, 'live');
  c.close();
});

test('429 and 503 are retried; 401 without onTokenRefresh and 403 stop the client', async () => {
  const c = fakeClient({ maxBackoffMs: 100 });
  await settle();
  for (const status of [429, 503, 502]) {
    FakeSocket.last.refuse(status);
    await tick(100);
  }
  assert.equal(FakeSocket.all.length, 4);
  const join = c.join('r');
  FakeSocket.last.refuse(401);
  await settle();
  assert.equal(c.state, 'closed');
  assert.deepEqual(c.failure, { reason: 'unauthorized', status: 401, code: 1006, message: 'the hub refused the token (HTTP 401); no onTokenRefresh to renew it' });
  await assert.rejects(join, (err) => err.code === 'failed');
  assert.deepEqual(c.events('room').map((r) => [r.state, r.reason]), [['joining', undefined], ['left', 'failed']]);

  const d = fakeClient();
  await settle();
  FakeSocket.last.refuse(403);
  await settle();
  assert.equal(d.failure.reason, 'origin');
  await tick(60_000);
  assert.equal(FakeSocket.all.length, 5, 'no attempt after failing');
});

test('401 with onTokenRefresh gets a new token and tries again', async () => {
  let n = 0;
  const c = fakeClient({ token: 'old', onTokenRefresh: async () => `new${++n}` });
  await settle();
  FakeSocket.last.refuse(401);
  await tick(1_000);
  assert.equal(c.failure, null);
  assert.deepEqual(FakeSocket.last.protocols, ['eventide', 'bearer.new1']);
  c.close();

  // A hook that has nothing new: final.
  const d = fakeClient({ token: 'old', onTokenRefresh: async () => { throw new Error('no new token'); } });
  await settle();
  FakeSocket.last.refuse(401);
  await settle();
  assert.equal(d.failure?.reason, 'unauthorized');
  assert.match(d.failure.message, /onTokenRefresh gave no new one/);
});

test('without a status (a browser) the client asks /ws over HTTP why', async () => {
  const asked = [];
  const answer = (status) => async (url, init) => {
    asked.push([url, init.headers?.Authorization ?? init.mode]);
    return { status };
  };
  const c = fakeClient({ token: 'tok', fetch: answer(401) });
  await settle();
  FakeSocket.last.refuse();
  await settle();
  assert.deepEqual(asked, [['http://hub.test/ws', 'Bearer tok']]);
  assert.equal(c.failure.reason, 'unauthorized');

  // A CORS refusal while the hub answers no-cors requests: the origin is refused.
  const cors = async (url, init) => {
    if (init.mode !== 'no-cors') throw new TypeError('CORS');
    return { status: 0 };
  };
  const d = fakeClient({ fetch: cors, window: fakeWindow() });
  await settle();
  FakeSocket.last.refuse();
  await settle();
  assert.equal(d.failure?.reason, 'origin');

  // The token is fine over HTTP (400: not an upgrade), yet handshakes keep failing:
  // the origin, once that has lasted 10 s. A few seconds of it are a hub draining for
  // a restart (its open connections still answer HTTP), and the streak ends with it.
  let status = 400;
  const e = fakeClient({ fetch: async () => ({ status }), maxBackoffMs: 1_000 });
  await settle();
  for (let i = 0; i < 5; i += 1) {
    FakeSocket.last.refuse();
    await tick(1_000);
  }
  status = 503;
  FakeSocket.last.refuse(); // the hub is down for a moment: the streak ends
  await tick(1_000);
  status = 400;
  for (let i = 0; i < 10; i += 1) {
    assert.equal(e.failure, null, `attempt ${i}`);
    FakeSocket.last.refuse();
    await tick(1_000);
  }
  assert.equal(e.failure, null, 'not yet 10 s');
  FakeSocket.last.refuse();
  await settle();
  assert.equal(e.failure?.reason, 'origin');
});

test('policy closes stop the client; others reconnect', async () => {
  const c = fakeClient({ maxBackoffMs: 10 });
  await settle();
  for (const code of [1001, 1006, 1011, 1013, 4000]) {
    FakeSocket.last.open();
    FakeSocket.last.drop(code);
    await tick(10);
  }
  assert.equal(c.failure, null);
  FakeSocket.last.open();
  FakeSocket.last.drop(1008, 'flooding');
  await settle();
  assert.equal(c.failure.reason, 'policy');
});

test('online, pageshow and a shown page try at once instead of waiting out the backoff', async () => {
  const win = fakeWindow();
  const c = fakeClient({ window: win, minBackoffMs: 60_000, maxBackoffMs: 60_000 });
  await settle();
  for (const [target, event] of [[win, 'online'], [win, 'pageshow'], [win.document, 'visibilitychange']]) {
    FakeSocket.last.refuse();
    await settle();
    const before = FakeSocket.all.length;
    target.dispatchEvent(new Event(event));
    await settle();
    assert.equal(FakeSocket.all.length, before + 1, `${event} opened a socket at once`);
  }
  c.close();
});

test('offline or a shown page checks an open socket with a ping at once', async () => {
  const win = fakeWindow();
  const c = fakeClient({ window: win, pingIntervalMs: 0, pongTimeoutMs: 1_000, maxBackoffMs: 10 });
  await settle();
  FakeSocket.last.open();
  win.dispatchEvent(new Event('offline'));
  assert.equal(FakeSocket.last.frames('ping').length, 1);
  FakeSocket.last.receive({ event: 'pong', ref: FakeSocket.last.frames('ping')[0].ref });
  await tick(1_000);
  assert.equal(FakeSocket.all.length, 1, 'a pong keeps it');
  win.document.dispatchEvent(new Event('visibilitychange'));
  await tick(1_000); // no pong: dropped and replaced
  await tick(10);
  assert.equal(FakeSocket.all.length, 2);
  c.close();
  win.dispatchEvent(new Event('online'));
  await settle();
  assert.equal(FakeSocket.all.length, 2, 'a closed client does not listen any more');
});

test('room states: joining, live, recovering, resyncing, left with a reason', async () => {
  const c = fakeClient({ maxBackoffMs: 10 });
  let reloaded;
  c.on('resync', () => new Promise((resolve) => (reloaded = resolve)));
  await settle();
  const join = c.join('r');
  FakeSocket.last.open();
  FakeSocket.last.reply('joinRoom', { room: 'r', version: 3, epoch: 'a' });
  await join;
  FakeSocket.last.drop();
  await tick(10);
  FakeSocket.last.open();
  assert.deepEqual(FakeSocket.last.frames('joinRoom')[0].data, { room: 'r', since: 3, epoch: 'a' });
  FakeSocket.last.reply('joinRoom', { room: 'r', version: 1, epoch: 'b', recovered: false });
  reloaded();
  await settle();
  const refused = c.join('secret');
  FakeSocket.last.reply('joinRoom', { code: 'forbidden', message: 'no' }, 'error');
  await assert.rejects(refused, (err) => err.code === 'forbidden');
  const left = c.leave('r');
  FakeSocket.last.reply('leaveRoom', { room: 'r' });
  await left;
  assert.deepEqual(c.events('room').map((r) => `${r.room} ${r.state}${r.reason ? ` ${r.reason}` : ''}`), [
    'r joining', 'r live', 'r recovering', 'r resyncing', 'r live',
    'secret joining', 'secret left forbidden', 'r left left',
  ]);
  assert.deepEqual(c.events('resync'), [{ room: 'r', version: 1, epoch: 'b' }]);
  c.close();
});

test('a stream whose first change came while away is the same stream, not a restart', async () => {
  const c = fakeClient({ maxBackoffMs: 10 });
  await settle();
  const join = c.join('r');
  FakeSocket.last.open();
  // No change yet: the stream has the epoch ''.
  FakeSocket.last.reply('joinRoom', { room: 'r', version: 0, epoch: '' });
  await join;
  FakeSocket.last.drop();
  await tick(10);
  FakeSocket.last.open();
  assert.deepEqual(FakeSocket.last.frames('joinRoom')[0].data, { room: 'r', since: 0, epoch: '' });
  // Its first change gave it an epoch; the hub replays it.
  FakeSocket.last.reply('joinRoom', { room: 'r', version: 1, epoch: 'e1', recovered: true });
  await settle();
  assert.deepEqual(c.events('resync'), [], 'no resync: nothing was missed');
  FakeSocket.last.receive({ event: 'availabilityUpdated', room: 'r', data: { version: 1 } });
  await settle();
  assert.equal(c.rooms.get('r'), 1);
  c.close();
});

test('the client is live only once every room it rejoins has answered', async () => {
  const c = fakeClient({ maxBackoffMs: 10 });
  await settle();
  FakeSocket.last.open();
  for (const room of ['a', 'b']) {
    const j = c.join(room);
    FakeSocket.last.reply('joinRoom', { room });
    await j;
  }
  FakeSocket.last.drop();
  await tick(10);
  FakeSocket.last.open();
  const [a, b] = FakeSocket.last.frames('joinRoom');
  FakeSocket.last.receive({ event: 'joinedRoom', ref: a.ref, data: { room: 'a' } });
  assert.equal(c.state, 'reconnecting');
  FakeSocket.last.receive({ event: 'joinedRoom', ref: b.ref, data: { room: 'b' } });
  assert.equal(c.state, 'live');
  assert.deepEqual(c.events('state'), ['live', 'reconnecting', 'live']);
  c.close();
});

test('a resync handler that fails keeps the old stored position', async () => {
  const values = new Map([['eventide:position:r', '{"version":2}']]);
  const storage = { getItem: (k) => values.get(k) ?? null, setItem: (k, v) => values.set(k, v) };
  const c = fakeClient({ storage });
  c.on('resync', async () => { throw new Error('snapshot failed'); });
  await settle();
  FakeSocket.last.open();
  c.join('r');
  FakeSocket.last.reply('joinRoom', { room: 'r', version: 9, recovered: false });
  await settle();
  FakeSocket.last.receive({ event: 'availabilityUpdated', room: 'r', data: { version: 10, action: 'created', slot: {} } });
  await settle();
  assert.equal(values.get('eventide:position:r'), '{"version":2}');
  assert.deepEqual(c.events('error').map((e) => e.code), ['resync_failed']);
  c.close();
});

test('after close(), joined rooms wait for reconnect(); a join meanwhile rejects', async () => {
  const c = fakeClient({ maxBackoffMs: 10 });
  await settle();
  FakeSocket.last.open();
  const j = c.join('r');
  FakeSocket.last.reply('joinRoom', { room: 'r', version: 2 });
  await j;
  c.close();
  await assert.rejects(c.join('r'), (err) => err.code === 'closed');
  await assert.rejects(c.join('new'), (err) => err.code === 'closed');
  assert.deepEqual([...c.rooms.keys()], ['r']);
  c.reconnect();
  await settle();
  FakeSocket.last.open();
  assert.deepEqual(FakeSocket.last.frames('joinRoom').map((f) => f.data), [{ room: 'r', since: 2 }]);
  c.close();
});
