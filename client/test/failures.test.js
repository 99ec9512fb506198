// Refusals that retrying cannot fix, caused for real by a real hub: the client stops,
// says why in `failed`, and rejects what was pending. Anything else is retried forever.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createServer } from 'node:net';
import { WebSocket } from 'ws';

import { admin, client, once, sign, sleep, startHub, until } from './helpers.js';

let hub;
before(async () => {
  // No leeway, so a short-lived token is closed as soon as it expires.
  hub = await startHub({ EVENTIDE_JWT_LEEWAY_SECS: '0' });
});
after(() => hub?.stop());

async function rejectedHandshakes(reason) {
  const text = await (await fetch(`${hub.base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`eventide_ws_handshakes_rejected_total{reason="${reason}"}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

test('a refused token fails at once with 401 when there is no onTokenRefresh', async () => {
  const before = await rejectedHandshakes('token');
  const forged = `${admin().slice(0, -4)}AAAA`; // a bad signature
  const c = client(hub.wsUrl, { token: forged, minBackoffMs: 10, maxBackoffMs: 50 });
  const pending = c.join('lobby');
  const [failure] = await once(c, 'failed');
  assert.deepEqual(failure, {
    reason: 'unauthorized',
    message: 'the hub refused the token (HTTP 401); no onTokenRefresh to renew it',
    status: 401,
    code: 1006,
  });
  assert.equal(c.state, 'closed');
  assert.deepEqual(c.failure, failure);
  await assert.rejects(pending, (err) => err.code === 'failed' && err.data.reason === 'unauthorized');
  await assert.rejects(c.ping(), (err) => err.code === 'failed');
  assert.deepEqual(c.room('lobby'), undefined);
  await sleep(200); // no further attempt
  assert.equal(await rejectedHandshakes('token'), before + 1);
});

test('a refused token with onTokenRefresh is renewed and the client goes on', async () => {
  const forged = `${admin().slice(0, -4)}AAAA`;
  const c = client(hub.wsUrl, { token: forged, onTokenRefresh: async () => admin() });
  try {
    assert.deepEqual(await c.join('lobby'), { room: 'lobby' });
    assert.equal(c.failure, null);
    assert.equal(c.state, 'live');
  } finally {
    c.close();
  }
});

test('a refused origin fails at once, with 403', async () => {
  class FromElsewhere extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { origin: 'https://not-allowed.example' });
    }
  }
  const c = client(hub.wsUrl, { token: admin(), WebSocket: FromElsewhere, minBackoffMs: 10 });
  const [failure] = await once(c, 'failed');
  assert.equal(failure.reason, 'origin');
  assert.equal(failure.status, 403);
});

test('a hub that cannot be reached is retried until it can', async () => {
  // A port nobody listens on: every connection is refused. Then the hub appears there.
  const probe = createServer();
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = probe.address().port;
  await new Promise((resolve) => probe.close(resolve));
  const c = client(`ws://127.0.0.1:${port}/ws`, { token: admin(), minBackoffMs: 10, maxBackoffMs: 100 });
  const closes = [];
  c.on('close', () => closes.push(1));
  let late;
  try {
    await until(() => closes.length >= 20, 'twenty refused connections');
    assert.equal(c.failure, null);
    assert.equal(c.state, 'reconnecting');
    late = await startHub({ EVENTIDE_ADDR: `127.0.0.1:${port}` });
    assert.deepEqual(await c.join('lobby'), { room: 'lobby' });
    assert.equal(c.state, 'live');
  } finally {
    c.close();
    await late?.stop();
  }
});

test('reconnect() starts again after a failure and rejoins the rooms it had joined', async () => {
  const c = client(hub.wsUrl, { token: sign({ sub: 'user-8', role: 'client', rooms: ['lobby'] }) });
  try {
    await c.join('lobby');
    const failed = once(c, 'failed');
    assert.equal((await hub.api('POST', '/api/users/user-8/disconnect', admin(), { revokeTokens: false })).status, 202);
    assert.equal((await failed)[0].reason, 'revoked');
    assert.equal(c.room('lobby').state, 'recovering');
    c.reconnect();
    assert.equal(c.failure, null);
    await until(() => c.state === 'live', 'live again');
    assert.deepEqual(c.sent('joinRoom').at(-1).data, { room: 'lobby' });
    assert.equal(c.room('lobby').state, 'live');
  } finally {
    c.close();
  }
});

test('4001 without onTokenRefresh is fatal', async () => {
  const token = hub.cliToken('--role', 'admin', '--ttl', '2s');
  const c = client(hub.wsUrl, { token });
  await c.join('lobby');
  const [failure] = await once(c, 'failed', undefined, 8_000);
  assert.equal(failure.reason, 'token_expired');
  assert.equal(failure.code, 4001);
  assert.equal(c.state, 'closed');
  await sleep(200);
  assert.equal(c.frames.filter((f) => f.frame.event === 'joinRoom').length, 1, 'no reconnect');
});

test('4001 with onTokenRefresh reconnects with a fresh token', async () => {
  let expired = false;
  const c = client(hub.wsUrl, {
    token: hub.cliToken('--role', 'admin', '--ttl', '2s'),
    // Fails until the hub has closed the socket, so the 4001 really happens.
    onTokenRefresh: async () => {
      if (!expired) throw new Error('not yet');
      return admin();
    },
  });
  const closes = [];
  c.on('close', (info) => closes.push(info.code));
  c.on('close', (info) => (expired ||= info.code === 4001));
  try {
    await c.join('lobby');
    await until(() => expired && c.state === 'live', 'the 4001 and the reconnect', 8_000);
    assert.deepEqual(closes, [4001]);
    assert.equal(c.failure, null);
    assert.deepEqual(c.sent('joinRoom').at(-1).data, { room: 'lobby' });
  } finally {
    c.close();
  }
});

test('1008 for flooding is fatal and rejects the pending requests', async () => {
  const strict = await startHub({
    EVENTIDE_MAX_FRAMES_PER_SEC: '1',
    EVENTIDE_MAX_FRAME_BURST: '1',
    EVENTIDE_MAX_RATE_LIMITED_FRAMES: '5',
  });
  const c = client(strict.wsUrl, { token: admin() });
  const errors = [];
  c.on('error', (data) => errors.push(data.code));
  try {
    await c.ping();
    // Settled from the start: the hub answers refused frames by `ref`, so some of
    // these reject with `rate_limited` before the connection fails.
    const flood = Promise.allSettled(Array.from({ length: 20 }, () => c.ping()));
    const [failure] = await once(c, 'failed');
    assert.equal(failure.reason, 'policy');
    assert.equal(failure.code, 1008);
    const results = await flood;
    const codes = results.filter((r) => r.status === 'rejected').map((r) => r.reason.code);
    assert.ok(codes.includes('rate_limited') || errors.includes('rate_limited'), `codes: ${codes}`);
    assert.ok(codes.includes('failed'), `codes: ${codes}`);
    await sleep(200);
    assert.equal(c.state, 'closed');
  } finally {
    c.close();
    await strict.stop();
  }
});

test('4003 (revoked) is fatal', async () => {
  const c = client(hub.wsUrl, { token: sign({ sub: 'user-9', role: 'client', rooms: ['lobby'] }) });
  try {
    await c.join('lobby');
    const res = await hub.api('POST', '/api/users/user-9/disconnect', admin(), { revokeTokens: false });
    assert.equal(res.status, 202);
    const [failure] = await once(c, 'failed', undefined, 5_000);
    assert.equal(failure.reason, 'revoked');
    assert.equal(failure.code, 4003);
  } finally {
    c.close();
  }
});
