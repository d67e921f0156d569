/** @module The message the queue suites enqueue (the embedded queue's conformance suite and the cluster's JetStream queue). */

import type { NewMessage } from '../../src/queue/index.js';

/** An async POST of `{"n":1}` to `ref`, three attempts with short backoffs, and whatever `overrides` set. */
export function newMessage(
  ref: { readonly namespace: string; readonly name: string },
  overrides: Partial<NewMessage> = {},
): NewMessage {
  return {
    ref,
    source: 'async',
    request: {
      method: 'POST',
      path: '/',
      rawQuery: 'a=1',
      headers: ['content-type', 'application/json'],
      body: Buffer.from('{"n":1}'),
    },
    maxAttempts: 3,
    backoffMs: 10,
    maxBackoffMs: 100,
    ...overrides,
  };
}
