// Each test here reproduces one defect of the client with a fake socket, fake timers
// and a fake storage: it fails on the code before the fix and passes after.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';

import { FakeSocket, fakeClient, fakeStorage, settle, setup, teardown, tick, token } from './fakes.js';

beforeEach(setup);
afterEach(teardown);

/** Connects, opens the socket and joins `room` at `version`; returns the client. */
async function joined(room, version, options = {}) {
  const c = fakeClient(options);
  await settle();
  FakeSocket.last.open();
  const join = c.join(room);
  FakeSocket.last.reply('joinRoom', { room, version });
  await join;
  return c;
}

test('close() then reconnect() while token() is pending opens exactly one socket', async () => {
  const pending = [];
  const c = fakeClient({ token: () => new Promise((resolve) => pending.push(resolve)) });
  await settle();
  c.close();
  c.reconnect();
  await settle();
  for (const resolve of pending) resolve('t');
  await settle();
  assert.equal(pending.length, 2);
  assert.equal(FakeSocket.all.length, 1, 'the first open() was superseded');
  assert.equal(c.state, 'connecting');
  c.close();
});

test('a transient failure of the first join after a reload keeps the stored position', async () => {
  const storage = fakeStorage();
  storage.setItem('eventide:position:provider-1', JSON.stringify({ version: 5 }));
  const c = fakeClient({ storage });
  await settle();
  FakeSocket.last.open();
  const join = c.join('provider-1');
  assert.deepEqual(FakeSocket.last.frames('joinRoom')[0].data, { room: 'provider-1', since: 5 });
  FakeSocket.last.reply('joinRoom', { code: 'unavailable', message: 'replay unavailable' }, 'error');
  await tick(30_000); // the retry after backoff
  const retry = FakeSocket.last.frames('joinRoom');
  assert.equal(retry.length, 2);
  assert.deepEqual(retry[1].data, { room: 'provider-1', since: 5 });
  assert.deepEqual(JSON.parse(storage.getItem('eventide:position:provider-1')), { version: 5 });
  FakeSocket.last.reply('joinRoom', { room: 'provider-1', version: 7, recovered: true });
  assert.deepEqual(await join, { room: 'provider-1', version: 7, recovered: true });
  c.close();
});

test('after recovered:false the position is stored only once the resync handler settled', async () => {
  const storage = fakeStorage();
  storage.setItem('eventide:position:r', JSON.stringify({ version: 5 }));
  const c = fakeClient({ storage });
  let reloaded;
  c.on('resync', () => new Promise((resolve) => (reloaded = resolve)));
  await settle();
  FakeSocket.last.open();
  const join = c.join('r');
  FakeSocket.last.reply('joinRoom', { room: 'r', version: 9, recovered: false });
  await join;
  assert.deepEqual(c.events('resync'), [{ room: 'r', version: 9 }]);
  assert.equal(c.room('r').state, 'resyncing');
  // A live update meanwhile reaches the app but is not stored either.
  FakeSocket.last.receive({ event: 'availabilityUpdated', room: 'r', data: { version: 10, action: 'created', slot: {} } });
  await settle();
  assert.deepEqual(JSON.parse(storage.getItem('eventide:position:r')), { version: 5 }, 'a reload now still resyncs');
  reloaded();
  await settle();
  assert.deepEqual(JSON.parse(storage.getItem('eventide:position:r')), { version: 10 });
  assert.equal(c.room('r').state, 'live');
  c.close();
});

test('a version is stored only after the handlers saw it', async () => {
  const storage = fakeStorage();
  const c = await joined('r', 0, { storage });
  const storedWhenHandled = [];
  c.on('availabilityUpdated', () => storedWhenHandled.push(storage.getItem('eventide:position:r')));
  FakeSocket.last.receive({ event: 'availabilityUpdated', room: 'r', data: { version: 1, action: 'created', slot: {} } });
  assert.deepEqual(storedWhenHandled, ['{"version":0}']);
  assert.equal(storage.getItem('eventide:position:r'), '{"version":1}');
  c.close();
});

test("the hub's unsolicited joinedRoom with recovered:false emits resync", async () => {
  const c = await joined('r', 4);
  FakeSocket.last.receive({ event: 'joinedRoom', data: { room: 'r', version: 2, epoch: 'e2', recovered: false } });
  assert.deepEqual(c.events('resync'), [{ room: 'r', version: 2, epoch: 'e2' }]);
  assert.equal(c.rooms.get('r'), 2);
  // The stream goes on from the new head.
  const seen = [];
  c.on('availabilityUpdated', (d) => seen.push(d.version));
  FakeSocket.last.receive({ event: 'availabilityUpdated', room: 'r', data: { version: 3, action: 'created', slot: {} } });
  assert.deepEqual(seen, [3]);
  c.close();
});

test('a rejoin answered unavailable or timing out is retried, not dropped', async () => {
  const c = await joined('r', 4, { requestTimeoutMs: 20_000, maxBackoffMs: 1_000 });
  FakeSocket.last.drop();
  await tick(1_000);
  FakeSocket.last.open();
  FakeSocket.last.reply('joinRoom', { code: 'unavailable', message: 'try again' }, 'error');
  assert.ok(c.rooms.has('r'));
  assert.equal(c.room('r').state, 'recovering');
  await tick(1_000);
  assert.equal(FakeSocket.last.frames('joinRoom').length, 2, 'retried after unavailable');
  await tick(20_000); // no answer: timeout
  await tick(1_000);
  assert.equal(FakeSocket.last.frames('joinRoom').length, 3, 'retried after a timeout');
  assert.notEqual(c.state, 'live', 'not live before every rejoin answered');
  FakeSocket.last.reply('joinRoom', { room: 'r', version: 4, recovered: true });
  assert.equal(c.room('r').state, 'live');
  assert.equal(c.state, 'live');
  c.close();
});

test('a timed-out join is retried until the hub answers, never forgotten half-joined', async () => {
  const c = fakeClient({ requestTimeoutMs: 1_000 });
  await settle();
  FakeSocket.last.open();
  const join = c.join('r');
  await tick(1_000);
  assert.ok(c.rooms.has('r'), 'kept, so the hub membership is not orphaned');
  assert.deepEqual(c.events('error').map((e) => [e.code, e.room]), [['timeout', 'r']]);
  await tick(30_000);
  assert.equal(FakeSocket.last.frames('joinRoom').length, 2);
  FakeSocket.last.reply('joinRoom', { room: 'r' });
  assert.deepEqual(await join, { room: 'r' });
  // And leaving tells the hub.
  const left = c.leave('r');
  FakeSocket.last.reply('leaveRoom', { room: 'r' });
  assert.deepEqual(await left, { room: 'r' });
  c.close();
});

test('requests time out while queued, and a re-sent one keeps its first deadline', async () => {
  const c = fakeClient({ requestTimeoutMs: 1_000 });
  await settle();
  const queued = c.request('shout', { text: 'hi' });
  const rejected = assert.rejects(queued, (err) => err.code === 'timeout');
  await tick(1_000);
  await rejected;
  FakeSocket.last.open();
  assert.deepEqual(FakeSocket.last.frames('shout'), [], 'a timed-out request is never sent');

  const ping = c.ping();
  await tick(600);
  FakeSocket.last.drop();
  await tick(100);
  await settle();
  FakeSocket.last.open(); // re-sent on the new socket ...
  assert.equal(FakeSocket.last.frames('ping').length, 1);
  const timedOut = assert.rejects(ping, (err) => err.code === 'timeout');
  await tick(300); // ... and still times out 1 s after it was made
  await timedOut;
  c.close();
});

test('a short-lived token is refreshed no more often than every few seconds', async () => {
  const now = () => Math.floor(Date.now() / 1000);
  let calls = 0;
  const c = fakeClient({
    token: token({ iat: now(), exp: now() + 20 }),
    onTokenRefresh: async () => {
      calls += 1;
      return token({ iat: now(), exp: now() + 20 });
    },
  });
  await settle();
  FakeSocket.last.open();
  for (let t = 0; t < 60; t += 1) {
    await tick(1_000);
    const refresh = FakeSocket.last.frames('refreshToken').at(-1);
    if (refresh && !refresh.answered) {
      refresh.answered = true;
      FakeSocket.last.receive({ event: 'tokenRefreshed', ref: refresh.ref, data: { exp: now() + 20 } });
    }
  }
  assert.ok(calls >= 3 && calls <= 12, `${calls} refreshes in 60 s`);
  c.close();
});

test('reconnect() from a failed handler leaves the client connecting', async () => {
  const c = fakeClient();
  c.on('failed', () => c.reconnect());
  await settle();
  FakeSocket.last.open();
  FakeSocket.last.drop(4003, 'revoked');
  await settle();
  assert.deepEqual(c.events('state'), ['live', 'closed', 'connecting']);
  assert.equal(c.state, 'connecting');
  assert.equal(FakeSocket.all.length, 2);
  c.close();
});

test("the app's refreshToken is not re-sent after a reconnect; the next socket uses it", async () => {
  const c = fakeClient({ token: 'old' });
  await settle();
  FakeSocket.last.open();
  const refreshed = c.request('refreshToken', { token: 'new' });
  FakeSocket.last.drop();
  await assert.rejects(refreshed, (err) => err.code === 'disconnected');
  await tick(30_000);
  FakeSocket.last.open();
  assert.deepEqual(FakeSocket.last.protocols, ['eventide', 'bearer.new']);
  assert.deepEqual(FakeSocket.last.frames('refreshToken'), []);
  c.close();
});

test('join with an older since on a joined room does not rewind it', async () => {
  const c = await joined('r', 5);
  const again = c.join('r', { since: 1 });
  assert.deepEqual(FakeSocket.last.frames('joinRoom').at(-1).data, { room: 'r', since: 5 });
  FakeSocket.last.reply('joinRoom', { room: 'r', version: 5, recovered: true });
  await again;
  assert.equal(c.rooms.get('r'), 5);
  assert.deepEqual(c.events('resync'), []);
  c.close();
});

test('two clients on one storage merge their positions per room', async () => {
  const storage = fakeStorage();
  const a = await joined('r1', 8, { storage });
  const b = await joined('r2', 3, { storage });
  b.join('r1', { since: 2 });
  FakeSocket.last.reply('joinRoom', { room: 'r1', version: 4, recovered: true });
  FakeSocket.last.receive({ event: 'availabilityUpdated', room: 'r1', data: { version: 3, action: 'created', slot: {} } });
  assert.deepEqual(JSON.parse(storage.getItem('eventide:position:r1')), { version: 8 }, 'b is behind a: a stays');
  assert.deepEqual(JSON.parse(storage.getItem('eventide:position:r2')), { version: 3 }, 'b did not erase a');
  a.close();
  b.close();
});

test('a socket that never opens is given up after connectTimeoutMs and retried', async () => {
  const c = fakeClient({ connectTimeoutMs: 2_000, maxBackoffMs: 1_000 });
  await settle();
  assert.equal(FakeSocket.all.length, 1);
  await tick(2_000);
  assert.equal(c.events('state').at(-1), 'reconnecting');
  await tick(1_000);
  assert.equal(FakeSocket.all.length, 2);
  c.close();
});
