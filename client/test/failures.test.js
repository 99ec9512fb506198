// Closes that retrying cannot fix, caused for real by a real hub: the client stops,
// says why in `failed`, and rejects what was pending. Transient ones reconnect.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
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

test('a refused token fails after maxFailedHandshakes handshakes, with the status', async () => {
  const before = await rejectedHandshakes('token');
  const forged = `${admin().slice(0, -4)}AAAA`; // a bad signature
  const c = client(hub.wsUrl, { token: forged, maxFailedHandshakes: 3, minBackoffMs: 10, maxBackoffMs: 50 });
  const pending = c.join('lobby');
  const [failure] = await once(c, 'failed');
  assert.deepEqual(failure, {
    reason: 'handshake_failed',
    message: 'the hub refused or could not be reached for 3 handshakes in a row (HTTP 401)',
    attempts: 3,
    status: 401,
    code: 1006,
  });
  assert.equal(c.state, 'closed');
  assert.deepEqual(c.failure, failure);
  await assert.rejects(pending, (err) => err.code === 'failed' && err.data.reason === 'handshake_failed');
  await assert.rejects(c.ping(), (err) => err.code === 'failed');
  await sleep(200); // no further attempt
  assert.equal(await rejectedHandshakes('token'), before + 3);
});

test('a refused origin fails the same way, with 403', async () => {
  class FromElsewhere extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { origin: 'https://not-allowed.example' });
    }
  }
  const c = client(hub.wsUrl, { token: admin(), WebSocket: FromElsewhere, maxFailedHandshakes: 2, minBackoffMs: 10 });
  const [failure] = await once(c, 'failed');
  assert.equal(failure.reason, 'handshake_failed');
  assert.equal(failure.status, 403);
  assert.equal(failure.attempts, 2);
});

test('reconnect() starts again after a failure and rejoins the rooms it knew', async () => {
  let token = `${admin().slice(0, -4)}AAAA`;
  const c = client(hub.wsUrl, { token: () => token, maxFailedHandshakes: 1 });
  try {
    await once(c, 'failed');
    token = admin();
    c.reconnect();
    assert.equal(c.failure, null);
    assert.deepEqual(await c.join('lobby'), { room: 'lobby' });
    assert.equal(c.state, 'live');
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

test('4003 (revoked) is fatal', async (t) => {
  const c = client(hub.wsUrl, { token: sign({ sub: 'user-9', role: 'client', rooms: ['lobby'] }) });
  try {
    await c.join('lobby');
    const res = await hub.api('POST', '/api/users/user-9/disconnect', admin(), { revokeTokens: false });
    if (res.status === 404) return t.skip('this hub has no POST /api/users/{sub}/disconnect');
    assert.equal(res.status, 202);
    const [failure] = await once(c, 'failed', undefined, 5_000);
    assert.equal(failure.reason, 'revoked');
    assert.equal(failure.code, 4003);
  } finally {
    c.close();
  }
});
