/**
 * @module Fuzzing the raw HTTP front (gateway/fast-http.ts, and node:http behind it) of a real platform
 * over a socket: pipelined requests with odd methods, targets, headers, bodies and framing, then the same
 * bytes mutated. Every request that is whole gets its answer, in order and in time; no answer is a 5xx;
 * every error is the platform's JSON error without a stack or a path; the platform serves on afterwards.
 */

import fc from 'fast-check';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  answerProblems,
  fuzzParams,
  fuzzTimeout,
  type RawResponse,
  rawRequest,
  requestBytes,
} from '../support/fuzz.js';
import {
  ANSWER_MS,
  assertOnPlatform,
  ECHO,
  type FuzzPlatform,
  pathSegment,
  stackedErrors,
  startFuzzPlatform,
  stillServing,
  TARGET,
} from './platform.js';

let platform: FuzzPlatform;

beforeAll(async () => {
  platform = await startFuzzPlatform();
});

afterAll(async () => {
  await platform?.stop();
});

beforeEach(async () => {
  if (platform.exited() === undefined) return;
  await platform.stop();
  platform = await startFuzzPlatform();
});

/** Where requests go: the echo function many ways, a missing one, the API's harmless routes, the rest. */
const TARGETS = [
  `/function/${ECHO}`,
  `/function/${ECHO}/a/b?x=1&y=%20`,
  `/function/${ECHO}.default`,
  `/function/${ECHO}?`,
  '/function/missing-fn',
  '/function/',
  '/function',
  `/async-function/${ECHO}`,
  '/api/v1/functions',
  '/api/v1/namespaces/default/functions/missing-fn',
  `/api/v1/namespaces/default/functions/${TARGET}`,
  '/api/v1/openapi.json',
  '/api/v1/nope',
  '/healthz',
  '/metrics',
  '/ui/api/overview',
  '/',
  '/nope',
  '*',
  `http://fuzz/function/${ECHO}`,
];

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD'];

const TOKEN = fc.constantFrom(
  ..."!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
);
const headerName = fc.oneof(
  fc.constantFrom(
    'X-Hearth-Timeout',
    'Content-Type',
    'Accept',
    'Accept-Encoding',
    'Content-Encoding',
    'Cookie',
    'Authorization',
    'traceparent',
    'tracestate',
    'X-Forwarded-For',
    'X-Hearth-Route',
    'Range',
    'If-None-Match',
    'Origin',
  ),
  fc.string({ unit: TOKEN, minLength: 1, maxLength: 20 }),
);
const VISIBLE = fc.constantFrom(...Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)), '\t');
const headerValue = fc.oneof(
  fc.constantFrom(
    'application/json',
    'text/plain',
    'application/x-ndjson',
    'gzip',
    '-1',
    'abc',
    '99999999999999999999',
    '1e9',
    '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    '00-zz-zz-zz',
    'bytes=0-1',
  ),
  fc.string({ unit: VISIBLE, maxLength: 40 }),
  fc.constantFrom(2000, 8000).map((n) => 'v'.repeat(n)),
);

const request = fc.record({
  method: fc.constantFrom(...METHODS),
  target: fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...TARGETS) },
    { weight: 1, arbitrary: pathSegment.map((segment) => `/function/${ECHO}/${segment}`) },
  ),
  headers: fc.array(fc.tuple(headerName, headerValue), { maxLength: 5 }),
  body: fc.oneof(
    { weight: 3, arbitrary: fc.constant(Buffer.alloc(0)) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 600 }).map((bytes) => Buffer.from(bytes)) },
    { weight: 1, arbitrary: fc.constantFrom(65_535, 65_537, 200_000).map((n) => Buffer.alloc(n, 0x61)) },
  ),
  chunked: fc.boolean(),
  chunkSize: fc.constantFrom(1, 7, 1000, 100_000),
  close: fc.boolean(),
});
type Request = typeof request extends fc.Arbitrary<infer T> ? T : never;

/** One request's bytes, framed as declared: a Content-Length, or chunks. */
function bytesOf(given: Request, last: boolean): Buffer {
  const headers: [string, string][] = [
    ['Host', 'fuzz'],
    ...given.headers.map(([n, v]) => [n, v] as [string, string]),
  ];
  // Framing stays ours: a header the fuzzer picked must not contradict it (that is the mutation test's job).
  const framing = /^(content-length|transfer-encoding|connection|host|expect|upgrade)$/i;
  // node:http answers a head over 16 KiB with 431 and a close, losing a pipelined answer before it
  // (node's own behaviour): heads stay under that here, and the mutation test sends the long ones.
  let room = 12 * 1024;
  const kept = headers.filter(([name, value], index) => {
    room -= name.length + value.length + 4;
    return index === 0 || (!framing.test(name) && room > 0);
  });
  let body = given.body;
  if (given.chunked && body.length > 0) {
    kept.push(['Transfer-Encoding', 'chunked']);
    const chunks: Buffer[] = [];
    for (let at = 0; at < body.length; at += given.chunkSize) {
      const part = body.subarray(at, at + given.chunkSize);
      chunks.push(Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n'));
    }
    chunks.push(Buffer.from('0\r\n\r\n'));
    body = Buffer.concat(chunks);
  } else if (body.length > 0 || given.method !== 'GET') {
    kept.push(['Content-Length', String(body.length)]);
  }
  if (given.close || last) kept.push(['Connection', 'close']);
  return requestBytes(given.method, given.target, kept, body);
}

function judgeAll(answers: readonly RawResponse[], sent: string): string[] {
  return answers.flatMap((answer, index) =>
    answerProblems(answer, { paths: platform.paths, input: sent }).map(
      (problem) => `answer ${index + 1}: ${problem}`,
    ),
  );
}

describe('fuzz: raw HTTP front', () => {
  it(
    'pipelined whole requests each get their answer, in order and in time, none a 5xx or unclean',
    async () => {
      await assertOnPlatform(
        platform,
        fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 4 }), async (requests) => {
          // The server stops after a request that asks to close; later ones are never read.
          const closing = requests.findIndex((given) => given.close);
          const served = closing === -1 ? requests : requests.slice(0, closing + 1);
          const bytes = Buffer.concat(
            served.map((given, index) => bytesOf(given, index === served.length - 1)),
          );
          const outcome = await rawRequest(platform.port, bytes, {
            expect: served.length,
            timeoutMs: ANSWER_MS,
            bodiless: served.map((given) => given.method === 'HEAD'),
          });
          const problems = judgeAll(
            outcome.responses.filter((_, index) => served[index]?.method !== 'HEAD'),
            bytes.length < 100_000 ? bytes.toString('latin1') : '',
          );
          outcome.responses.forEach((answer, index) => {
            if (served[index]?.method === 'HEAD' && answer.status >= 500)
              problems.push(`HEAD answered ${answer.status}`);
          });
          if (outcome.responses.length < served.length) {
            const last = outcome.responses.at(-1);
            // A refusal may close the connection (a 400 or 413 says so): the requests after it go unanswered.
            const refusedAndClosed = outcome.closed && last !== undefined && last.status >= 400;
            if (!refusedAndClosed)
              problems.push(
                `${outcome.responses.length} of ${served.length} answers (${outcome.timedOut ? `none more within ${ANSWER_MS} ms` : 'then the connection closed'})`,
              );
          }
          if (platform.exited() !== undefined)
            platform.killer ??= `${served.map((r) => `${r.method} ${r.target}`).join(' | ')}\n${platform.exited()}`;
          if (problems.length > 0)
            throw new Error(
              `${served.map((given) => `${given.method} ${given.target.slice(0, 80)}`).join(' | ')}: ${problems.join('; ')}`,
            );
        }),
        fuzzParams(80, 60),
      );
    },
    fuzzTimeout(80, 60),
  );

  const TOKENS = [
    '\r',
    '\n',
    '\r\n',
    '\r\n\r\n',
    '\0',
    ' ',
    ':',
    '\t',
    '\x7f',
    '\xff',
    'Transfer-Encoding: chunked\r\n',
    'Transfer-Encoding: gzip, chunked\r\n',
    'Content-Length: 5\r\n',
    'Content-Length: -1\r\n',
    'Content-Length: 1, 2\r\n',
    'Host: other\r\n',
    ' folded\r\n',
    'Expect: 100-continue\r\n',
    'Upgrade: websocket\r\nConnection: Upgrade\r\n',
    '0\r\n\r\n',
    'HTTP/1.0',
    'HTTP/2.0',
    '/../..',
    '%',
  ];
  const mutation = fc.record({
    op: fc.constantFrom('insert' as const, 'delete' as const, 'flip' as const, 'truncate' as const),
    at: fc.nat({ max: 100_000 }),
    token: fc.oneof(
      fc.constantFrom(...TOKENS),
      fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 3 }),
    ),
    length: fc.integer({ min: 1, max: 20 }),
  });

  it(
    'mutated request bytes get clean answers or a closed connection, in time, never a 5xx',
    async () => {
      await assertOnPlatform(
        platform,
        fc.asyncProperty(
          fc.array(request, { minLength: 1, maxLength: 2 }),
          fc.array(mutation, { minLength: 1, maxLength: 3 }),
          async (generated, mutations) => {
            // An answer to HEAD has a length but no body, which cannot be told once the bytes moved.
            const requests = generated.map((given) =>
              given.method === 'HEAD' ? { ...given, method: 'GET' } : given,
            );
            let bytes = Buffer.concat(
              requests.map((given, index) => bytesOf(given, index === requests.length - 1)),
            );
            for (const change of mutations) {
              const at = change.at % (bytes.length + 1);
              const token = Buffer.from(change.token, 'latin1');
              if (change.op === 'insert')
                bytes = Buffer.concat([bytes.subarray(0, at), token, bytes.subarray(at)]);
              else if (change.op === 'delete')
                bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + change.length)]);
              else if (change.op === 'truncate') bytes = bytes.subarray(0, at);
              else {
                bytes = Buffer.from(bytes);
                if (at < bytes.length) bytes[at] = (bytes[at] ?? 0) ^ (token[0] || 1);
              }
            }
            const outcome = await rawRequest(platform.port, bytes, {
              expect: requests.length,
              timeoutMs: ANSWER_MS,
              quietEndMs: 150,
            });
            // Which answer belongs to a HEAD is unknown once bytes moved; a bodiless 2xx parses as one anyway.
            const problems = judgeAll(
              outcome.responses.filter((answer) => answer.status >= 400 || answer.body.length > 0),
              bytes.toString('latin1'),
            );
            if (outcome.timedOut && outcome.responses.length === 0)
              problems.push(`no answer and no close within ${ANSWER_MS} ms`);
            if (platform.exited() !== undefined)
              platform.killer ??= `${JSON.stringify(bytes.toString('latin1').slice(0, 400))}\n${platform.exited()}`;
            if (problems.length > 0)
              throw new Error(
                `${JSON.stringify(bytes.toString('latin1').slice(0, 300))}: ${problems.join('; ')}`,
              );
          },
        ),
        fuzzParams(40, 250),
      );
    },
    fuzzTimeout(40, 250),
  );

  it('still serves afterwards, and logged no internal error with a stack for any of it', async () => {
    expect(await stillServing(platform)).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(stackedErrors(platform)).toEqual([]);
  });
});
