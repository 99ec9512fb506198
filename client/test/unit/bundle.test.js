// dist/ is built by build.mjs and committed, since the hub embeds the minified file
// at compile time: it must be what build.mjs makes of the current source.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';

import { outputs } from '../../build.mjs';
import * as source from '../../eventide.js';

test('dist/ is up to date with eventide.js (run `npm run build`)', async () => {
  for (const [name, text] of Object.entries(await outputs())) {
    const committed = readFileSync(new URL(`../../dist/${name}`, import.meta.url), 'utf8');
    assert.ok(committed === text, `dist/${name} is stale: run npm run build and commit it`);
  }
});

test('the one-file, CommonJS and minified builds export the same API', async () => {
  const cjs = createRequire(import.meta.url)('../../dist/eventide.cjs');
  const esm = await import('../../dist/eventide.js');
  const min = await import('../../dist/eventide.min.js');
  for (const build of [esm, cjs, min]) {
    assert.deepEqual(Object.keys(build).sort(), Object.keys(source).sort());
    assert.deepEqual(build.DEFAULTS, source.DEFAULTS);
    assert.equal(build.CLOSE_HEARTBEAT_TIMEOUT, source.CLOSE_HEARTBEAT_TIMEOUT);
  }
});
