// Recovery against a real hub: a dropped connection loses nothing (rejoin with
// `since`), requests in flight are re-sent only when that is safe, and a fresh client
// with the same storage picks up where the last one stopped.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { admin, client, createSlot, once, provider, sleep, startHub, startProxy, until, epochless } from './helpers.js';

let hub;
before(async () => {
  hub = await startHub();
});
after(() => hub?.stop());

/** Versions of `room` the app was handed, in order. */
function collect(c, room) {
  const versions = [];
  c.on('availabilityUpdated', (data, frame) => frame.room === room && versions.push(data.version));
  return versions;
}

test('a dropped connection rejoins with since and loses no update', async () => {
  const proxy = await startProxy(hub.port);
  const c = client(proxy.url, { token: provider(1) });
  const seen = collect(c, 'provider-1');
  const resyncs = [];
  c.on('resync', (info) => resyncs.push(info));
  try {
    assert.deepEqual(epochless(await c.join('provider-1')), { room: 'provider-1', version: 0 });
    await createSlot(hub, 1, 0);
    await createSlot(hub, 1, 60);
    await until(() => seen.length === 2, 'two live updates');

    // The connection dies and stays away while three more changes are made.
    proxy.down = true;
    const closed = once(c, 'close');
    proxy.cut();
    const [info] = await closed;
    assert.equal(info.code, 1006);
    assert.equal(c.state, 'reconnecting');
    for (const minute of [120, 180, 240]) await createSlot(hub, 1, minute);
    proxy.down = false;

    await until(() => seen.length === 5, 'the missed updates', 10_000);
    assert.deepEqual(seen, [1, 2, 3, 4, 5]);
    assert.deepEqual(resyncs, []);
    const rejoin = c.sent('joinRoom').at(-1);
    assert.deepEqual(epochless(rejoin.data), { room: 'provider-1', since: 2 });
    assert.equal(c.state, 'live');
    assert.equal(c.rooms.get('provider-1'), 5);

    // And live updates flow again on the new socket.
    await createSlot(hub, 1, 300);
    await until(() => seen.length === 6, 'a live update after the reconnect');
    assert.deepEqual(seen, [1, 2, 3, 4, 5, 6]);
  } finally {
    c.close();
    await proxy.close();
  }
});

test('only idempotent requests are re-sent after a drop; others fail with a clear error', async () => {
  const proxy = await startProxy(hub.port);
  const c = client(proxy.url, { token: admin(), pingIntervalMs: 0 });
  try {
    await c.join('lobby');
    // Both requests go out on a socket that answers nothing, then the socket dies.
    proxy.blackhole();
    const join = c.join('provider-7');
    const custom = c.request('shout', { text: 'hello' });
    await until(() => c.sent('shout').length === 1, 'the custom request to go out');
    proxy.cut();

    await assert.rejects(custom, (err) => {
      assert.equal(err.code, 'disconnected');
      assert.match(err.message, /shout.*not sent again/);
      return true;
    });
    assert.deepEqual(epochless(await join), { room: 'provider-7', version: 0 });
    assert.equal(c.sent('shout').length, 1, 'shout was not re-sent');
    // The join went out twice: once on the dead socket, once after reconnecting.
    assert.equal(c.sent('joinRoom').filter((f) => f.data.room === 'provider-7').length, 2);
    assert.deepEqual([...c.rooms.keys()].sort(), ['lobby', 'provider-7']);
  } finally {
    c.close();
    await proxy.close();
  }
});

test('transient failures retry within the backoff bounds for as long as they last', async () => {
  const proxy = await startProxy(hub.port);
  proxy.down = true;
  const c = client(proxy.url, { token: admin(), minBackoffMs: 20, maxBackoffMs: 100 });
  const failures = [];
  c.on('failed', (f) => failures.push(f));
  try {
    await sleep(1_500);
    // Every delay is below maxBackoffMs, so 1.5 s hold well over 10 attempts.
    assert.ok(proxy.accepted >= 10, `${proxy.accepted} attempts in 1.5 s`);
    assert.equal(c.state, 'reconnecting');
    proxy.down = false;
    await until(() => c.state === 'live', 'the connection once the path is back');
    assert.deepEqual(failures, []);
  } finally {
    c.close();
    await proxy.close();
  }
});

test('requests made while disconnected wait for the connection, then go out once', async () => {
  const proxy = await startProxy(hub.port);
  proxy.down = true;
  const c = client(proxy.url, { token: admin() });
  try {
    const joined = c.join('lobby');
    await once(c, 'close');
    assert.equal(c.sent('joinRoom').length, 0);
    proxy.down = false;
    assert.deepEqual(await joined, { room: 'lobby' });
    assert.equal(c.sent('joinRoom').length, 1);
  } finally {
    c.close();
    await proxy.close();
  }
});

test('a new client with the same storage rejoins with the stored since', async () => {
  const values = new Map();
  const storage = { getItem: (k) => values.get(k) ?? null, setItem: (k, v) => values.set(k, String(v)), removeItem: (k) => values.delete(k) };
  const first = client(hub.wsUrl, { token: provider(2), storage });
  const firstSeen = collect(first, 'provider-2');
  await first.join('provider-2');
  await createSlot(hub, 2, 0);
  await createSlot(hub, 2, 60);
  await until(() => firstSeen.length === 2, 'two updates');
  assert.deepEqual(epochless(JSON.parse(values.get('eventide:position:provider-2'))), { version: 2 });
  first.close(); // as a page reload would

  await createSlot(hub, 2, 120);
  await createSlot(hub, 2, 180);

  const second = client(hub.wsUrl, { token: provider(2), storage });
  const secondSeen = collect(second, 'provider-2');
  try {
    const joined = await second.join('provider-2');
    assert.deepEqual(epochless(joined), { room: 'provider-2', version: 4, recovered: true });
    assert.deepEqual(epochless(second.sent('joinRoom')[0].data), { room: 'provider-2', since: 2 });
    await until(() => secondSeen.length === 2, 'the replay');
    assert.deepEqual(secondSeen, [3, 4]);
    assert.deepEqual(epochless(JSON.parse(values.get('eventide:position:provider-2'))), { version: 4 });
    // The stream's epoch, learnt from the answer, is kept with the position.
    assert.match(joined.epoch, /^[0-9a-f]{12}$/);
    assert.equal(JSON.parse(values.get('eventide:position:provider-2')).epoch, joined.epoch);

    // Leaving forgets the stored version.
    await second.leave('provider-2');
    assert.equal(values.has('eventide:position:provider-2'), false);
  } finally {
    second.close();
  }
});

test('join with an explicit since replays from there; without storage nothing is kept', async () => {
  await createSlot(hub, 3, 0);
  await createSlot(hub, 3, 60);
  await createSlot(hub, 3, 120);
  const c = client(hub.wsUrl, { token: provider(3) });
  const seen = collect(c, 'provider-3');
  try {
    const joined = await c.join('provider-3', { since: 1 });
    assert.deepEqual(epochless(joined), { room: 'provider-3', version: 3, recovered: true });
    await until(() => seen.length === 2, 'the replay after since 1');
    assert.deepEqual(seen, [2, 3]);
  } finally {
    c.close();
  }
});
