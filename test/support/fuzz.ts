/**
 * @module What the fuzz suites (test/fuzz/) share: how many cases they run and from which seed, a raw HTTP
 * client that never waits past a bound, and the checks every answer to hostile input must pass.
 *
 * `npm test` runs each property's base number of cases from a fixed seed, so it sees the same inputs every
 * time and cannot be flaky; `npm run fuzz` multiplies them (`FUZZ_SCALE`, default 30 there) from a fresh
 * seed, printed first. A failure names its seed and path; `FUZZ_SEED=<seed>` replays the run.
 */

import { connect } from 'node:net';
import type fc from 'fast-check';
import { ERROR_CATALOGUE } from '../../src/domain/errors.js';
import { ROOT } from './hearth.js';

const scaleText = process.env.FUZZ_SCALE;
/** How many times the base number of cases each property runs. */
export const SCALE = scaleText === undefined ? 1 : Math.max(1, Number(scaleText) || 1);
const seedText = process.env.FUZZ_SEED;
/**
 * Fixed under `npm test`; fresh for a long run unless replaying one. Every test file of one run is a
 * child of the same vitest process, so its id gives them all the same seed.
 */
export const SEED =
  seedText !== undefined
    ? Number(seedText)
    : SCALE > 1
      ? (process.ppid * 2_654_435_761 + Math.floor(Date.now() / 86_400_000)) % 2_147_483_647
      : 20_261_206;
if (SCALE > 1 || seedText !== undefined)
  process.stdout.write(`fuzz: seed ${SEED}, ${SCALE}x the cases of npm test (FUZZ_SEED=${SEED} replays)\n`);

/**
 * How long a property of `base` cases of about `msPerCase` each may run: after that fast-check skips the
 * rest (a failure then reports the smallest counterexample shrunk so far).
 */
function budget(base: number, msPerCase: number): number {
  return 10_000 + Math.round(base * SCALE * msPerCase * 3);
}

/** fast-check parameters for a property whose `npm test` share is `base` cases of about `msPerCase`. */
export function fuzzParams<T>(base: number, msPerCase: number): fc.Parameters<T> {
  return {
    numRuns: Math.max(1, Math.round(base * SCALE)),
    seed: SEED,
    skipAllAfterTimeLimit: budget(base, msPerCase),
  };
}

/** The vitest timeout of a test running one such property. */
export function fuzzTimeout(base: number, msPerCase: number): number {
  return budget(base, msPerCase) + 30_000;
}

// --- what no answer may contain -----------------------------------------------------------------------

/** A stack frame with its location (`at f (/x/y.js:1:2)`), escaped in JSON or not. */
const FRAME = /\bat (?:[^\n()]{0,200} \()?(?:file:\/\/|node:internal|\/)[^\s():]*:\d+:\d+/;
/** zod's own words, which a user should never see: "expected a object", "Invalid input", … */
const ZOD_WORDING =
  /\ba (?:object|array|int|integer|record|nan|never|undefined|unknown|bigint|null|symbol|void)\b|Invalid (?:input|option|union|element|key)|Too (?:small|big)|Unrecognized key/;

export interface LeakContext {
  /** Paths of this machine that must never reach a client: the data dir, a work dir. */
  readonly paths: readonly string[];
  /** What the caller sent, as text: something it sent itself may come back (an echoed value). */
  readonly input?: string;
}

/** Problems with text a caller can read (an error message, a response body); empty when it is clean. */
export function leaks(text: string, context: LeakContext): string[] {
  const sent = context.input ?? '';
  const problems: string[] = [];
  const frame = FRAME.exec(text);
  if (frame !== null && !sent.includes(frame[0])) problems.push(`a stack frame (${frame[0]})`);
  if (text.includes('    at ') && !sent.includes('    at ')) problems.push('stack text ("    at ")');
  for (const path of [ROOT, ...context.paths]) {
    if (path !== '' && text.includes(path) && !sent.includes(path)) problems.push(`the path ${path}`);
  }
  if (text.includes('node_modules') && !sent.includes('node_modules')) problems.push('node_modules');
  return problems;
}

/** zod wording in a message meant for people; the caller decides whether its own input explains it. */
export function zodWording(message: string, input = ''): string | undefined {
  const found = ZOD_WORDING.exec(message);
  return found === null || input.includes(found[0]) ? undefined : found[0];
}

/**
 * Problems with one HTTP answer to hostile input: a 5xx, an error body that is not the platform's JSON
 * error (`{error:{code,message}}` with the code's own status), a stack, a path, zod's wording.
 */
export function answerProblems(answer: RawResponse, context: LeakContext): string[] {
  const problems: string[] = [];
  const text = answer.body.toString('utf8');
  if (answer.status >= 500) problems.push(`status ${answer.status}`);
  problems.push(...leaks(text, context));
  if (answer.status < 400) return problems;
  // llhttp refuses bytes that are not HTTP before any route runs, with an empty 400 (or 431) and a close.
  if (text === '' && (answer.status === 400 || answer.status === 431)) return problems;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    problems.push(`an error body that is not JSON (${JSON.stringify(text.slice(0, 120))})`);
    return problems;
  }
  const error = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const code = error?.code;
  if (typeof code !== 'string' || !(code in ERROR_CATALOGUE)) {
    problems.push(`an error body without a catalogue code (${text.slice(0, 120)})`);
    return problems;
  }
  const status = ERROR_CATALOGUE[code as keyof typeof ERROR_CATALOGUE].status;
  if (status !== answer.status) problems.push(`${code} answered with ${answer.status}, not ${status}`);
  if (typeof error?.message !== 'string' || error.message === '') problems.push('an error without a message');
  else {
    const zod = zodWording(error.message, context.input);
    if (zod !== undefined) problems.push(`zod's wording "${zod}" in "${error.message.slice(0, 160)}"`);
  }
  return problems;
}

// --- a raw HTTP client with a deadline ----------------------------------------------------------------

export interface RawResponse {
  readonly status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

export interface RawOutcome {
  readonly responses: RawResponse[];
  /** The server closed the connection (after its answers, or without any). */
  readonly closed: boolean;
  /** The deadline passed before `expect` answers arrived and before the server closed. */
  readonly timedOut: boolean;
  readonly ms: number;
}

/**
 * Writes `bytes` on a fresh connection and reads answers until `expect` of them arrived, the server
 * closed, or `timeoutMs` passed. `bodiless[i]` marks answers to HEAD (a length but no body); `1xx`
 * interim answers are skipped. With `quietEndMs`, a connection that got nothing back by then is
 * half-closed, as a client that is done sending.
 */
export function rawRequest(
  port: number,
  bytes: Buffer | string,
  options: { expect: number; timeoutMs: number; bodiless?: readonly boolean[]; quietEndMs?: number },
): Promise<RawOutcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const responses: RawResponse[] = [];
    let pending = Buffer.alloc(0);
    let settled = false;
    const finish = (closed: boolean, timedOut: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ responses, closed, timedOut, ms: performance.now() - started });
    };
    const timer = setTimeout(() => finish(false, true), options.timeoutMs);
    socket.on('error', () => finish(true, false));
    socket.on('close', () => finish(true, false));
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        const parsed = parseResponse(pending, options.bodiless?.[responses.length] === true);
        if (parsed === undefined) break;
        pending = pending.subarray(parsed.used);
        if (parsed.response.status >= 200) responses.push(parsed.response);
      }
      if (responses.length >= options.expect) finish(false, false);
    });
    socket.on('connect', () => {
      socket.write(bytes);
      // Bytes that leave a request unfinished get no answer until the client gives up: so it does.
      if (options.quietEndMs !== undefined)
        setTimeout(() => {
          if (!settled && pending.length === 0 && responses.length === 0) socket.end();
        }, options.quietEndMs);
    });
  });
}

/** One complete response at the start of `data`, or undefined while more bytes are needed. */
function parseResponse(data: Buffer, bodiless: boolean): { response: RawResponse; used: number } | undefined {
  const headEnd = data.indexOf('\r\n\r\n');
  if (headEnd < 0) return undefined;
  const [statusLine = '', ...lines] = data.toString('latin1', 0, headEnd).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  const status = Number(statusLine.split(' ')[1]);
  const start = headEnd + 4;
  if (bodiless || status < 200 || status === 204 || status === 304)
    return { response: { status, headers, body: Buffer.alloc(0) }, used: start };
  if ((headers['transfer-encoding'] ?? '').toLowerCase().includes('chunked')) {
    const chunks: Buffer[] = [];
    let at = start;
    for (;;) {
      const lineEnd = data.indexOf('\r\n', at);
      if (lineEnd < 0) return undefined;
      const size = Number.parseInt(data.toString('latin1', at, lineEnd), 16);
      if (Number.isNaN(size)) return undefined;
      if (size === 0) {
        // The last chunk, optional trailers, then an empty line.
        const trailerEnd = data.indexOf('\r\n\r\n', lineEnd);
        if (trailerEnd < 0) return undefined;
        return { response: { status, headers, body: Buffer.concat(chunks) }, used: trailerEnd + 4 };
      }
      if (data.length < lineEnd + 2 + size + 2) return undefined;
      chunks.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
      at = lineEnd + 2 + size + 2;
    }
  }
  const length = headers['content-length'];
  // Without a length the body runs to the close; only a 1.0-style answer does that, and we never ask for one.
  const size = length === undefined ? 0 : Number(length);
  if (data.length < start + size) return undefined;
  return { response: { status, headers, body: data.subarray(start, start + size) }, used: start + size };
}

/** One request's bytes: `method target HTTP/1.1`, headers as given, then the body. */
export function requestBytes(
  method: string,
  target: string,
  headers: readonly (readonly [string, string])[],
  body: Buffer = Buffer.alloc(0),
): Buffer {
  const head = [`${method} ${target} HTTP/1.1`, ...headers.map(([name, value]) => `${name}: ${value}`)];
  return Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1'), body]);
}

/** A JSON-ish rendering of a counterexample's input for the assertion message, cut short. */
export function shortly(value: unknown, max = 300): string {
  let text: string;
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) text = `<${value.length} bytes>`;
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = String(value);
    }
  }
  return text.length > max ? `${text.slice(0, max)}… (${text.length} chars)` : text;
}
