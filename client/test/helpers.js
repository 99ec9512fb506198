// Test harness: a real hub process, tokens signed with its secret, its REST API, and
// a TCP proxy between client and hub that can cut or black-hole connections.

import { spawn, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';

import { connect } from '../eventide.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const HUB_BIN = process.env.EVENTIDE_HUB_BIN ?? join(ROOT, 'target', 'debug', 'eventide-hub');
const SECRET = 'client-tests-secret-0123456789abcdef';

// The client logs every frame with console.debug; the tests' own log (`frames`) is enough.
if (!process.env.EVENTIDE_TEST_DEBUG) console.debug = () => {};

/** Starts `eventide-hub` on a free port with a fresh SQLite file; `env` adds settings. */
export async function startHub(env = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'eventide-client-'));
  const hubEnv = {
    ...process.env,
    DATABASE_URL: `sqlite://${dir}/hub.db`,
    EVENTIDE_JWT_SECRET: SECRET,
    EVENTIDE_ADDR: '127.0.0.1:0',
    RUST_LOG: 'warn,eventide_hub=info',
    ...env,
  };
  const child = spawn(HUB_BIN, [], { env: hubEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the hub did not start within 30 s:\n${output}`)), 30_000);
    const onData = (chunk) => {
      output += chunk;
      const match = /listening on (http:\/\/[0-9.]+:\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (err) => reject(new Error(`cannot start ${HUB_BIN}: ${err.message} (build it with cargo build, or set EVENTIDE_HUB_BIN)`)));
    child.on('exit', (code) => reject(new Error(`the hub exited (${code}) before listening:\n${output}`)));
  });
  const hub = {
    base,
    wsUrl: `${base.replace('http:', 'ws:')}/ws`,
    port: Number(new URL(base).port),
    log: () => output,
    /** Mints a token with the hub's own CLI, as an operator would. */
    cliToken: (...args) => execFileSync(HUB_BIN, ['token', ...args], { env: hubEnv }).toString().trim(),
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
    api: (method, path, token, body) => api(base, method, path, token, body),
  };
  return hub;
}

async function api(base, method, path, token, body) {
  const res = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** An HS256 JWT with the test secret; `exp` one hour ahead unless given. */
export function sign(claims) {
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ exp: now + 3600, iat: now, ...claims })}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

export const admin = () => sign({ sub: 'admin', role: 'admin' });
export const provider = (id) => sign({ sub: `provider-${id}`, role: 'provider', providerId: id });

/** Creates a slot of `providerId` at `minute` past 2030-01-01 00:00 UTC; returns the slot. */
export async function createSlot(hub, providerId, minute) {
  const at = (m) => new Date(Date.UTC(2030, 0, 1) + m * 60_000).toISOString().replace('.000Z', 'Z');
  const res = await hub.api('POST', `/api/providers/${providerId}/availability`, admin(), {
    startsAt: at(minute),
    endsAt: at(minute + 30),
  });
  if (res.status !== 201) throw new Error(`create failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** `connect()` with the `ws` implementation and fast test timings; records every frame. */
export function client(url, options) {
  const frames = [];
  const c = connect({
    url,
    WebSocket,
    minBackoffMs: 20,
    maxBackoffMs: 200,
    log: (dir, frame) => frames.push({ dir, frame }),
    ...options,
  });
  c.frames = frames;
  c.sent = (event) => frames.filter((f) => f.dir === 'out' && f.frame.event === event).map((f) => f.frame);
  return c;
}

/** Resolves with the first emission of `event` for which `pred` holds. */
export function once(c, event, pred = () => true, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no "${event}" within ${timeoutMs} ms (state ${c.state})`));
    }, timeoutMs);
    const off = c.on(event, (...args) => {
      if (!pred(...args)) return;
      clearTimeout(timer);
      off();
      resolve(args);
    });
  });
}

/** Polls `check` until it returns truthy. */
export async function until(check, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * `value` (a `joinedRoom` answer, a `resync` event, a `joinRoom`'s data or a stored
 * position of a versioned room) without its `epoch`, which must be a string: streams
 * get a random epoch with their first change ('' before), so tests compare the rest.
 */
export function epochless(value) {
  if (value === null || typeof value !== 'object' || !('epoch' in value)) return value;
  const { epoch, ...rest } = value;
  if (typeof epoch !== 'string') throw new Error(`epoch is not a string: ${JSON.stringify(value)}`);
  return rest;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Passes the hub's side of a connection through, minus the text frames `drop`
 * selects: the HTTP upgrade answer first, then unmasked WebSocket frames.
 */
function serverFrameFilter(drop) {
  let buffer = Buffer.alloc(0);
  let upgraded = false;
  return (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    const out = [];
    if (!upgraded) {
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) return Buffer.alloc(0);
      out.push(buffer.subarray(0, end + 4));
      buffer = buffer.subarray(end + 4);
      upgraded = true;
    }
    while (buffer.length >= 2) {
      let length = buffer[1] & 0x7f;
      let offset = 2;
      if (length === 126) [length, offset] = [buffer.length >= 4 ? buffer.readUInt16BE(2) : Infinity, 4];
      else if (length === 127) [length, offset] = [buffer.length >= 10 ? Number(buffer.readBigUInt64BE(2)) : Infinity, 10];
      if (buffer.length < offset + length) break;
      const isText = (buffer[0] & 0x0f) === 1;
      if (!(isText && drop(buffer.subarray(offset, offset + length).toString()))) out.push(buffer.subarray(0, offset + length));
      buffer = buffer.subarray(offset + length);
    }
    return Buffer.concat(out);
  };
}

/**
 * A TCP proxy in front of the hub. `cut()` closes every open connection; `down` makes
 * it close new connections at once; `refuse()` stops listening, so connecting is
 * refused (RST) as with a network that is gone, until `accept()`; `reset()` resets
 * every open connection; `blackhole()` keeps every open connection but forwards
 * nothing more either way, like a peer that vanished without a FIN;
 * `dropFromHub(pred)` silently loses the hub's text frames `pred` selects on
 * connections made from then on.
 */
export async function startProxy(targetPort) {
  const pairs = new Set();
  const server = createServer((downstream) => {
    proxy.accepted += 1;
    if (proxy.down) return downstream.destroy();
    const upstream = tcpConnect(targetPort, '127.0.0.1');
    const pair = { downstream, upstream, dead: false };
    pairs.add(pair);
    const filter = proxy.drop ? serverFrameFilter(proxy.drop) : (chunk) => chunk;
    downstream.on('data', (chunk) => pair.dead || upstream.write(chunk));
    upstream.on('data', (chunk) => pair.dead || downstream.write(filter(chunk)));
    const end = () => {
      pairs.delete(pair);
      downstream.destroy();
      upstream.destroy();
    };
    for (const sock of [downstream, upstream]) {
      sock.on('error', end);
      sock.on('close', () => pair.dead || end());
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  const proxy = {
    down: false,
    accepted: 0,
    drop: null,
    dropFromHub(pred) {
      proxy.drop = pred;
    },
    url: `ws://127.0.0.1:${port}/ws`,
    connections: () => pairs.size,
    cut() {
      for (const { downstream, upstream } of pairs) {
        downstream.destroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    blackhole() {
      for (const pair of pairs) pair.dead = true;
    },
    reset() {
      for (const { downstream, upstream } of pairs) {
        downstream.resetAndDestroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    async refuse() {
      if (!server.listening) return;
      const closed = new Promise((resolve) => server.close(resolve));
      proxy.reset();
      await closed;
    },
    async accept() {
      if (server.listening) return;
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
    },
    async close() {
      proxy.cut();
      if (server.listening) await new Promise((resolve) => server.close(resolve));
    },
  };
  return proxy;
}
