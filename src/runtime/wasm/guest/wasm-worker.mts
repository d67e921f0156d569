/**
 * @module A worker thread of the wasm host (`runtime: wasm` with `isolation: isolate`, guest/wasm-host.mts):
 * runs one request at a time, for any function of the host's namespace, on the compiled modules the host
 * thread posts it (shared code: a `WebAssembly.Module` posted to a worker is not compiled again). The runs
 * themselves are wasm-runner.mts, which the host's own thread also uses for functions found cheap.
 *
 * Why a thread: V8 cannot stop wasm code running on the thread that must stop it. A run past its deadline
 * is ended by the host with `worker.terminate()`, which interrupts wasm loops, and the host's other workers
 * keep serving meanwhile.
 */

import { parentPort } from 'node:worker_threads';
import { forget, forgetModule, type Job, prepare, runJob, tidy } from './wasm-runner.mjs';

const port = parentPort;
if (port === null) throw new Error('wasm-worker.mjs runs as a worker thread of the wasm host');
port.on('message', (message: { job?: Job; forget?: number; forgetModule?: string; prepare?: number }) => {
  if (message.prepare !== undefined) {
    prepare(message.prepare);
    return;
  }
  if (message.forget !== undefined) {
    forget(message.forget);
    return;
  }
  if (message.forgetModule !== undefined) {
    forgetModule(message.forgetModule);
    return;
  }
  const job = message.job;
  if (job === undefined) return;
  const outcome = runJob(job);
  // The body in a buffer of its own, moved: a small Buffer is a view into Node's 8 KiB pool, which posting
  // would copy whole.
  const transfer: ArrayBuffer[] = [];
  if ('result' in outcome) {
    const body = new Uint8Array(outcome.result[2]);
    outcome.result[2] = body;
    transfer.push(body.buffer);
  }
  port.postMessage(outcome, transfer);
  setImmediate(tidy, job.member);
});
