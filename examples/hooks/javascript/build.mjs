// build.mjs - componentizes hook.js (and what it imports) into a WebAssembly
// component with @bytecodealliance/componentize-js. Called by build.sh:
//   node build.mjs <hook.js> <wit dir> <world> <output.wasm>

import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';

const [sourcePath, witPath, worldName, output] = process.argv.slice(2);
if (!output) {
  console.error('usage: node build.mjs <hook.js> <wit dir> <world> <output.wasm>');
  process.exit(2);
}

const { component } = await componentize({
  sourcePath,
  witPath,
  worldName,
  // Leave out the engine's fetch() support: it would import wasi:http, which
  // the host does not provide. Kept: stdio (console.* and uncaught errors go
  // to the host log), random and clocks (frozen at the epoch by the host).
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(output, component);
