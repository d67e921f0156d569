/**
 * @module A worker thread of the wasm host (`runtime: wasm` with `isolation: isolate`, guest/wasm-host.mts):
 * runs one request at a time, for any function of the host's namespace, on the compiled modules the host
 * thread posts it (shared code: a `WebAssembly.Module` posted to a worker is not compiled again). The runs
 * themselves are wasm-runner.mts. A WASI command's first instance may be made ahead, at its bind (`ready`).
 *
 * Why a thread: V8 cannot stop wasm code running on the thread that must stop it. A run past its deadline
 * is ended by the host with `worker.terminate()`, which interrupts wasm loops, and the host's other workers
 * keep serving meanwhile.
 */

import { parentPort } from 'node:worker_threads';
import {
  type FunctionInfo,
  forget,
  forgetModule,
  type Job,
  prepare,
  ready,
  runJob,
  tidy,
} from './wasm-runner.mjs';

const port = parentPort;
if (port === null) throw new Error('wasm-worker.mjs runs as a worker thread of the wasm host');
interface Message {
  job?: Job;
  ready?: { member: number; info: FunctionInfo; module?: WebAssembly.Module };
  forget?: number;
  forgetModule?: string;
  prepare?: number;
}

port.on('message', (message: Message) => {
  if (message.ready !== undefined) {
    const { member, info, module } = message.ready;
    try {
      ready(member, info, module);
    } catch {
      // The first request makes it again and reports what went wrong.
      forget(member);
    }
    return;
  }
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
