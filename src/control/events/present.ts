/** @module Queue messages as the API shows them: results decoded as text where they are text, times as ISO strings. */

import type { QueueMessage } from '../../queue/index.js';
import type { InvocationRecord } from '../api/events-types.js';

const TEXTUAL = /^(text\/|application\/(json|xml|x-www-form-urlencoded|javascript)|[^;]*\+(json|xml))/i;

export function toInvocationRecord(message: QueueMessage): InvocationRecord {
  const iso = (ms: number | undefined): string | null =>
    ms === undefined ? null : new Date(ms).toISOString();
  let result: InvocationRecord['result'] = null;
  if (message.result !== undefined) {
    const headers: Record<string, string> = {};
    for (let i = 0; i + 1 < message.result.headers.length; i += 2)
      headers[message.result.headers[i] as string] = message.result.headers[i + 1] as string;
    const text = TEXTUAL.test(headers['content-type'] ?? 'text/plain');
    result = {
      statusCode: message.result.status,
      headers,
      body: message.result.body.toString(text ? 'utf8' : 'base64'),
      isBase64Encoded: !text,
    };
  }
  return {
    id: message.id,
    function: message.ref.name,
    namespace: message.ref.namespace,
    source: message.source,
    status: message.state,
    attempts: message.attempts,
    maxAttempts: message.maxAttempts,
    acceptedAt: new Date(message.acceptedAt).toISOString(),
    nextAttemptAt: message.state === 'queued' ? new Date(message.availableAt).toISOString() : null,
    startedAt: iso(message.startedAt),
    finishedAt: iso(message.finishedAt),
    error: message.lastError ?? null,
    result,
    callback:
      message.callback === undefined
        ? null
        : {
            url: message.callback.url,
            state: message.callback.state,
            attempts: message.callback.attempts,
            error: message.callback.lastError ?? null,
          },
    event: message.request.event === undefined ? null : { ...message.request.event },
    request: {
      method: message.request.method,
      path: message.request.path,
      bodyBytes: message.request.body.length,
    },
  };
}
