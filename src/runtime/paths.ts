/** @module Where the platform's own files are, wherever it runs from (src under tests, dist in use). */

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: `src/runtime/paths.ts` and `dist/runtime/paths.js` are both two levels down. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Guest bootstraps are always taken from the build output: the Node guest must be compiled JavaScript. */
export function guestDir(runtime: 'node' | 'python' | 'wasm' | 'isolate'): string {
  return `${PACKAGE_ROOT}dist/runtime/${runtime}/guest`;
}

export const SANDBOX_PATH = '/usr/local/bin:/usr/bin:/bin';

export function findExecutable(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    const candidate = join(dir, name);
    if (dir !== '' && existsSync(candidate)) return candidate;
  }
  return undefined;
}
