// Builds (or finds cached) the microVMs' boot image before the test suites start, so the platforms they
// start in parallel do not each build it at `hearth up` (issue 14). Needs `npm run build` first.
import { DEFAULT_IMAGE_CACHE, ensureBootImage } from '../dist/runtime/microvm/image.js';
import { NodeRuntime } from '../dist/runtime/node/index.js';
import { PythonRuntime } from '../dist/runtime/python/index.js';

const launches = [new NodeRuntime(), new PythonRuntime()]
  .filter((runtime) => runtime.unavailable === undefined)
  .map((runtime) => runtime.launchSpec());
const image = await ensureBootImage(DEFAULT_IMAGE_CACHE, launches);
process.stderr.write(`test setup: microVM boot image at ${image.dir}\n`);
