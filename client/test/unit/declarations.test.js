// The declarations describe the module as it is: the same exports, the same option
// defaults, the same client methods. (test/types.ts checks that they narrow.)

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import * as client from '../../eventide.js';
import { FakeSocket } from './fakes.js';

const dts = readFileSync(new URL('../../eventide.d.ts', import.meta.url), 'utf8');

/** The members of `export interface name { … }` or `… name: Readonly<{ … }>` in the .d.ts. */
function members(block) {
  const body = dts.slice(dts.indexOf(block) + block.length);
  const end = body.indexOf('\n}');
  return [...body.slice(0, end).matchAll(/^ {2}(?:readonly )?(\w+)\??[(:<]/gm)].map((m) => m[1]);
}

test('the module exports what the declarations declare', () => {
  const declared = [...dts.matchAll(/^export declare (?:const|function|class) (\w+)/gm)].map((m) => m[1]);
  assert.deepEqual([...declared].sort(), Object.keys(client).sort());
});

test('DEFAULTS and the client have the declared members', () => {
  assert.deepEqual(members('export declare const DEFAULTS: Readonly<{').sort(), Object.keys(client.DEFAULTS).sort());
  const c = client.connect({ url: 'ws://hub.test/ws', token: 't', WebSocket: FakeSocket, window: null });
  c.close();
  const own = Object.getOwnPropertyNames(c).sort();
  assert.deepEqual([...new Set(members('export interface EventideClient {'))].sort(), own);
  const options = members('export interface ConnectOptions {');
  for (const key of Object.keys(client.DEFAULTS)) assert.ok(options.includes(key), `ConnectOptions documents ${key}`);
});
