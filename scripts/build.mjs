// Compiles src/ to dist/ and copies the non-TypeScript guest files beside their compiled siblings.
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// dist/ is overwritten in place, not removed first: suites running the built platform keep working.
execFileSync(
  process.execPath,
  [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')],
  {
    stdio: 'inherit',
  },
);
const copies = [
  ['src/runtime/python/guest', 'dist/runtime/python/guest'],
  ['src/runtime/node/guest', 'dist/runtime/node/guest'],
  ['src/runtime/isolate/guest', 'dist/runtime/isolate/guest'],
  ['src/ui/static', 'dist/ui/static'],
];
for (const [from, to] of copies) {
  mkdirSync(join(root, to), { recursive: true });
  for (const file of readdirSync(join(root, from))) {
    // Python's bytecode cache appears wherever someone imported the guest locally: never shipped.
    if (file === '__pycache__') continue;
    if (!file.endsWith('.ts') && !file.endsWith('.mts')) cpSync(join(root, from, file), join(root, to, file));
  }
}
// The guests' shared modules (the frame codec), compiled once, go beside each guest that imports them: a
// guest sees only its own folder inside the sandbox.
for (const guest of ['node', 'wasm', 'isolate'])
  for (const file of readdirSync(join(root, 'dist/runtime/guest-shared')))
    if (file.endsWith('.mjs'))
      copyFileSync(
        join(root, 'dist/runtime/guest-shared', file),
        join(root, `dist/runtime/${guest}/guest`, file),
      );
