// Long and awkward outages against a real hub, through a proxy the test controls:
// every connection refused for 90 s, an outage while a rejoin is in flight, and two
// clients sharing one storage. The client never gives up and never loses its place.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { admin, client, createSlot, provider, sleep, startHub, startProxy, until, epochless } from './helpers.js';

let hub;
before(async () => {
  hub = await startHub();
});
after(() => hub?.stop());

function memoryStorage() {
  const values = new Map();
  return { values, getItem: (k) => values.get(k) ?? null, setItem: (k, v) => values.set(k, String(v)), removeItem: (k) => values.delete(k) };
}

function collect(c, room) {
  const versions = [];
  c.on('availabilityUpdated', (data, frame) => frame.room === room && versions.push(data.version));
  return versions;
}

test('90 s of refused connections, then back: live again and the missed change replayed', async () => {
  const proxy = await startProxy(hub.port);
  // The real backoff, capped at 5 s.
  const c = client(proxy.url, { token: provider(21), minBackoffMs: 500, maxBackoffMs: 5_000 });
  const seen = collect(c, 'provider-21');
  const failed = [];
  const resyncs = [];
  const closes = [];
  c.on('failed', (f) => failed.push(f));
  c.on('resync', (r) => resyncs.push(r));
  c.on('close', () => closes.push(Date.now()));
  try {
    await c.join('provider-21');
    await createSlot(hub, 21, 0);
    await until(() => seen.length === 1, 'the first update');

    // The network goes: the open connection is reset and new ones are refused.
    await proxy.refuse();
    await until(() => c.state === 'reconnecting', 'the drop to be noticed');
    await createSlot(hub, 21, 60); // made during the outage
    await sleep(90_000);
    assert.deepEqual(failed, [], 'the client never gives up on the network');
    assert.equal(c.state, 'reconnecting');
    assert.equal(c.room('provider-21').state, 'recovering');
    // Retried all along, never more than the cap apart (plus the 10 s connect timeout).
    assert.ok(closes.length >= 90 / 5, `${closes.length} attempts in 90 s`);

    const back = Date.now();
    await proxy.accept();
    await until(() => c.state === 'live' && seen.length === 2, 'live again, the missed change delivered', 15_000);
    console.log(`90 s outage: ${closes.length} refused attempts; live ${Date.now() - back} ms after the network came back`);
    assert.deepEqual(seen, [1, 2]);
    assert.deepEqual(resyncs, []);
    assert.deepEqual(epochless(c.sent('joinRoom').at(-1).data), { room: 'provider-21', since: 1 });
    assert.equal(c.room('provider-21').state, 'live');
  } finally {
    c.close();
    await proxy.close();
  }
});

test('an outage while a rejoin is in flight: the rejoin is redone from the same position', async () => {
  const proxy = await startProxy(hub.port);
  const storage = memoryStorage();
  const c = client(proxy.url, { token: provider(22), storage, requestTimeoutMs: 2_000 });
  const seen = collect(c, 'provider-22');
  const states = [];
  c.on('room', ({ state }) => states.push(state));
  try {
    await c.join('provider-22');
    await createSlot(hub, 22, 0);
    await until(() => seen.length === 1, 'the first update');

    // The next connection loses the hub's answers to joins and the room's events (the
    // hub may answer from memory before the next change, which then comes on its own):
    // the rejoin stays in flight.
    proxy.dropFromHub((text) => text.includes('"joinedRoom"') || text.includes('"provider-22"'));
    proxy.cut();
    await until(() => c.sent('joinRoom').length === 2, 'the rejoin to go out');
    await createSlot(hub, 22, 60);
    // ... and then the network goes altogether.
    await proxy.refuse();
    await createSlot(hub, 22, 120);
    await sleep(3_000);
    assert.equal(c.room('provider-22').state, 'recovering');
    assert.deepEqual(epochless(JSON.parse(storage.getItem('eventide:position:provider-22'))), { version: 1 }, 'the position is kept');

    proxy.dropFromHub(null);
    await proxy.accept();
    await until(() => c.state === 'live' && seen.length === 3, 'the rejoin and the replay', 15_000);
    assert.deepEqual(seen, [1, 2, 3]);
    assert.deepEqual(epochless(c.sent('joinRoom').at(-1).data), { room: 'provider-22', since: 1 });
    assert.deepEqual(epochless(JSON.parse(storage.getItem('eventide:position:provider-22'))), { version: 3 });
    assert.deepEqual([...new Set(states)], ['joining', 'live', 'recovering']);
    assert.equal(states.at(-1), 'live');
  } finally {
    c.close();
    await proxy.close();
  }
});

test('two clients on one storage: each room keeps the furthest position either reached', async () => {
  const storage = memoryStorage();
  const a = client(hub.wsUrl, { token: provider(23), storage });
  const b = client(hub.wsUrl, { token: admin(), storage }); // may join any room
  const seenA = collect(a, 'provider-23');
  const seenB = collect(b, 'provider-24');
  try {
    await a.join('provider-23');
    await b.join('provider-24');
    for (const minute of [0, 60, 120]) await createSlot(hub, 23, minute);
    await createSlot(hub, 24, 0);
    await until(() => seenA.length === 3 && seenB.length === 1, 'the updates');
    // b also follows provider-23, from behind: it must not pull a's position back.
    const seenB23 = collect(b, 'provider-23');
    await b.join('provider-23', { since: 1 });
    await until(() => seenB23.length === 2, "b's replay");
  } finally {
    a.close();
    b.close();
  }
  assert.deepEqual(epochless(JSON.parse(storage.getItem('eventide:position:provider-23'))), { version: 3 });
  assert.deepEqual(epochless(JSON.parse(storage.getItem('eventide:position:provider-24'))), { version: 1 });

  // After a reload, a client on that storage picks up both rooms where they were.
  await createSlot(hub, 23, 180);
  await createSlot(hub, 24, 60);
  const c = client(hub.wsUrl, { token: admin(), storage });
  try {
    const seen23 = collect(c, 'provider-23');
    const seen24 = collect(c, 'provider-24');
    await c.join('provider-23');
    await c.join('provider-24');
    await until(() => seen23.length === 1 && seen24.length === 1, 'both replays');
    assert.deepEqual([seen23, seen24], [[4], [2]]);
    assert.deepEqual(c.sent('joinRoom').map((f) => f.data.since), [3, 1]);
  } finally {
    c.close();
  }
});
