// Event delivery against a real hub: gaps become `resync`, duplicates are dropped,
// emitted events dispatch by name, and the hub removing a room surfaces as `left`.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { admin, client, createSlot, once, provider, sign, startHub, startProxy, until, epochless } from './helpers.js';

let hub;
before(async () => {
  hub = await startHub();
});
after(() => hub?.stop());

test('a since the hub cannot replay from emits resync with the current version', async () => {
  await createSlot(hub, 11, 0);
  const c = client(hub.wsUrl, { token: provider(11) });
  try {
    const resync = once(c, 'resync');
    const joined = await c.join('provider-11', { since: 50 });
    assert.deepEqual(epochless(joined), { room: 'provider-11', version: 1, recovered: false });
    assert.deepEqual(epochless((await resync)[0]), { room: 'provider-11', version: 1 });
    assert.equal(c.rooms.get('provider-11'), 1);
  } finally {
    c.close();
  }
});

test('a hole in the live versions emits resync after delivering the frame', async () => {
  const proxy = await startProxy(hub.port);
  proxy.dropFromHub((text) => text.includes('"availabilityUpdated"') && text.includes('"version":2,'));
  const c = client(proxy.url, { token: provider(12) });
  const order = [];
  c.on('availabilityUpdated', (data) => order.push(`update ${data.version}`));
  c.on('resync', ({ room, version }) => order.push(`resync ${room} ${version}`));
  try {
    await c.join('provider-12');
    for (const minute of [0, 60, 120]) await createSlot(hub, 12, minute);
    await until(() => order.length === 3, 'two updates and a resync');
    assert.deepEqual(order, ['update 1', 'update 3', 'resync provider-12 3']);
  } finally {
    c.close();
    await proxy.close();
  }
});

test('emitted events dispatch by name with their frame; client event names are not spoofed', async () => {
  const c = client(hub.wsUrl, { token: admin() });
  const states = [];
  c.on('state', (s) => states.push(s));
  try {
    await c.join('lobby');
    const room = once(c, 'providerMessage');
    assert.equal((await hub.api('POST', '/api/rooms/lobby/events', admin(), { event: 'providerMessage', data: { text: 'hi' } })).status, 202);
    const [data, frame] = await room;
    assert.deepEqual(data, { text: 'hi' });
    assert.deepEqual(frame, { event: 'providerMessage', room: 'lobby', data: { text: 'hi' } });

    // A service may name an event like one of the client's own: it reaches `message` only.
    const message = once(c, 'message', (f) => f.event === 'state');
    assert.equal((await hub.api('POST', '/api/broadcast', admin(), { event: 'state', data: 'hacked' })).status, 202);
    assert.deepEqual((await message)[0], { event: 'state', data: 'hacked' });
    assert.deepEqual(states, ['live']);
  } finally {
    c.close();
  }
});

test('user events dispatch by name with the user', async () => {
  const c = client(hub.wsUrl, { token: sign({ sub: 'user-1', role: 'client' }) });
  try {
    await c.ping();
    const got = once(c, 'invoice');
    const res = await hub.api('POST', '/api/users/user-1/events', admin(), { event: 'invoice', data: { n: 1 } });
    assert.equal(res.status, 202);
    const [data, frame] = await got;
    assert.deepEqual(data, { n: 1 });
    assert.deepEqual(frame, { event: 'invoice', data: { n: 1 }, user: 'user-1' });
  } finally {
    c.close();
  }
});

test('a refreshed token that may not keep a room surfaces as left with its reason', async () => {
  const c = client(hub.wsUrl, { token: sign({ sub: 'user-2', role: 'client', rooms: ['lobby', 'other'] }) });
  try {
    await c.join('lobby');
    await c.join('other');
    const left = once(c, 'left');
    await c.request('refreshToken', { token: sign({ sub: 'user-2', role: 'client', rooms: ['lobby'] }) });
    assert.deepEqual((await left)[0], { room: 'other', reason: 'forbidden' });
    assert.deepEqual([...c.rooms.keys()], ['lobby']);
    assert.equal(c.room('other'), undefined);
  } finally {
    c.close();
  }
});
