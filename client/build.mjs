// Builds dist/ from eventide.js and src/: one ES module file (the hub serves it at
// /eventide.js), CommonJS for require(), and the minified ES module the hub serves at
// /eventide.min.js. All are committed (the hub embeds them at compile time);
// test/unit/bundle.test.js fails when they are stale.
// `node build.mjs` writes them; `outputs()` returns them without writing.

import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const common = { entryPoints: [here('./eventide.js')], bundle: true, write: false, target: 'es2020', legalComments: 'none', logLevel: 'warning' };

/** Every file of dist/, by name: its exact contents. */
export async function outputs() {
  const cjs = await build({ ...common, format: 'cjs', platform: 'neutral' });
  const esm = await build({ ...common, format: 'esm', platform: 'browser' });
  const min = await build({ ...common, format: 'esm', platform: 'browser', minify: true });
  return {
    'eventide.js': esm.outputFiles[0].text,
    'eventide.cjs': cjs.outputFiles[0].text,
    'eventide.min.js': min.outputFiles[0].text,
    // The same declarations, for require() callers under TypeScript's node16+ resolution.
    'eventide.d.cts': readFileSync(here('./eventide.d.ts'), 'utf8'),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  mkdirSync(here('./dist'), { recursive: true });
  for (const [name, text] of Object.entries(await outputs())) {
    writeFileSync(here(`./dist/${name}`), text);
    console.log(`dist/${name}: ${Buffer.byteLength(text)} bytes`);
  }
}
