// Liveness against a real hub: `ping` gets `pong`, a connection that silently stops
// carrying traffic is noticed by the missing pong and replaced, and requests on it
// time out when configured to.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { CLOSE_HEARTBEAT_TIMEOUT } from '../eventide.js';
import { admin, client, createSlot, once, provider, startHub, startProxy, until, epochless } from './helpers.js';

let hub;
before(async () => {
  hub = await startHub();
});
after(() => hub?.stop());

test('the hub answers ping with pong carrying the same ref', async () => {
  const c = client(hub.wsUrl, { token: admin() });
  try {
    const rtt = await c.ping();
    assert.ok(rtt >= 0 && rtt < 5_000, `round trip ${rtt} ms`);
    const [ping] = c.sent('ping');
    const pong = c.frames.find((f) => f.dir === 'in' && f.frame.event === 'pong');
    assert.deepEqual(pong.frame, { event: 'pong', ref: ping.ref });
  } finally {
    c.close();
  }
});

test('a quiet connection is probed with ping and stays up while pongs come back', async () => {
  const c = client(hub.wsUrl, { token: admin(), pingIntervalMs: 100, pongTimeoutMs: 500 });
  const closes = [];
  c.on('close', (info) => closes.push(info));
  try {
    await c.join('lobby');
    await until(() => c.frames.filter((f) => f.frame.event === 'pong').length >= 3, 'three pongs');
    assert.equal(c.state, 'live');
    assert.deepEqual(closes, []);
  } finally {
    c.close();
  }
});

test('a black-holed connection is detected by the missing pong and replaced', async () => {
  const proxy = await startProxy(hub.port);
  const c = client(proxy.url, { token: provider(5), pingIntervalMs: 200, pongTimeoutMs: 300 });
  const seen = [];
  c.on('availabilityUpdated', (data) => seen.push(data.version));
  try {
    await c.join('provider-5');
    await createSlot(hub, 5, 0);
    await until(() => seen.length === 1, 'the first update');

    // The path dies without a FIN: nothing is forwarded any more, nothing is closed.
    proxy.blackhole();
    const started = Date.now();
    const [info] = await once(c, 'close', undefined, 5_000);
    const noticedAfter = Date.now() - started;
    assert.equal(info.code, CLOSE_HEARTBEAT_TIMEOUT);
    assert.equal(info.wasClean, false);
    assert.match(info.reason, /no frame within 300 ms of a ping/);
    // At most one quiet interval, then the pong timeout (plus scheduling slack).
    assert.ok(noticedAfter < 2_000, `noticed after ${noticedAfter} ms`);

    // A change made while the client was cut off arrives through the new socket.
    await createSlot(hub, 5, 60);
    await until(() => c.state === 'live' && seen.length === 2, 'the reconnect and the missed update');
    assert.deepEqual(seen, [1, 2]);
    assert.deepEqual(epochless(c.sent('joinRoom').at(-1).data), { room: 'provider-5', since: 1 });
  } finally {
    c.close();
    await proxy.close();
  }
});

test('without the heartbeat a black-holed request times out after requestTimeoutMs', async () => {
  const proxy = await startProxy(hub.port);
  const c = client(proxy.url, { token: admin(), pingIntervalMs: 0, requestTimeoutMs: 300 });
  try {
    await c.join('lobby');
    proxy.blackhole();
    const started = Date.now();
    await assert.rejects(c.request('shout', { text: 'anyone?' }), (err) => {
      assert.equal(err.code, 'timeout');
      assert.match(err.message, /no reply to shout within 300 ms/);
      return true;
    });
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 290 && elapsed < 2_000, `timed out after ${elapsed} ms`);
    // Nothing noticed the dead path: that is the heartbeat's job.
    assert.equal(c.state, 'live');
  } finally {
    c.close();
    await proxy.close();
  }
});
