/**
 * @module The platform the HTTP fuzz suites aim at: the real, built one, with a function that only echoes
 * (so a 5xx is never the function's own failure) and one whose config the API bodies try to change.
 */

import { spawnSync } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { answerProblems, type RawResponse, rawRequest, requestBytes, shortly } from '../support/fuzz.js';
import { deployFolder, type Hearth, makeFolder, manifest, startHearth } from '../support/hearth.js';

export const ECHO = 'fuzz-echo';
export const TARGET = 'fuzz-target';
/** Each answer to one hostile request must come within this; it takes milliseconds when all is well. */
export const ANSWER_MS = 5000;

const ECHO_CODE = `// Answers every request the same small way, whatever its body: the fuzzing is aimed at the platform.
export default async function handler(event) {
  const body = event.body;
  return { method: event.method, path: event.path, bytes: typeof body === 'string' ? body.length : body === undefined ? 0 : 1 };
}
`;

export interface FuzzPlatform {
  readonly hearth: Hearth;
  readonly port: number;
  /** Paths of this machine no answer may name: the data dir (the checkout is always checked). */
  readonly paths: readonly string[];
  /** How the platform's process ended, with the tail of its stderr; undefined while it runs. */
  exited(): string | undefined;
  /** The request that was being answered when the platform's process ended. */
  killer: string | undefined;
  stop(): Promise<void>;
}

export async function startFuzzPlatform(): Promise<FuzzPlatform> {
  const hearth = await startHearth();
  const folder = await makeFolder({ 'index.mjs': ECHO_CODE });
  try {
    for (const name of [ECHO, TARGET]) {
      await writeFile(
        join(folder.dir, 'hearth.yaml'),
        manifest(name, '{ runtime: node20, scaling: { max: 2 } }'),
      );
      const deployed = await deployFolder(hearth.url, folder.dir, { name });
      if (deployed.status !== 200) throw new Error(`deploying ${name}: ${JSON.stringify(deployed.body)}`);
    }
  } catch (error) {
    await hearth.stop();
    throw error;
  } finally {
    await folder.cleanup();
  }
  let exit: string | undefined;
  hearth.process.once('exit', (code, signal) => {
    exit = `the platform exited (${signal ?? code}): ${hearth.stderr().slice(-1500)}`;
  });
  return {
    hearth,
    port: hearth.port,
    paths: [hearth.dataDir],
    exited: () => exit,
    killer: undefined,
    stop: async () => {
      try {
        await hearth.stop();
      } catch {
        // A platform that crashed leaves its slots mounted (a shared bind mount): unmount, then delete.
        spawnSync('umount', ['-R', '-l', join(hearth.dataDir, 'run', 'slots')]);
        await rm(hearth.dataDir, { recursive: true, force: true });
      }
    },
  };
}

/** One request on a fresh connection, judged: its problems, or a timeout, as text. */
export async function ask(
  platform: FuzzPlatform,
  bytes: Buffer,
  input: string,
  options: { head?: boolean; label?: string } = {},
): Promise<{ problems: string[]; answer: RawResponse | undefined }> {
  const outcome = await rawRequest(platform.port, bytes, {
    expect: 1,
    timeoutMs: ANSWER_MS,
    bodiless: [options.head === true],
  });
  const answer = outcome.responses[0];
  if (answer === undefined) {
    const why = outcome.timedOut
      ? `no answer within ${ANSWER_MS} ms`
      : 'the connection closed without an answer';
    // A process that dies takes a moment to be reported after its connections close.
    if (!outcome.timedOut) await new Promise((resolve) => setTimeout(resolve, 200));
    const exit = platform.exited();
    if (exit !== undefined) platform.killer ??= `${options.label ?? shortly(input, 300)}\n${exit}`;
    return { problems: [exit ?? why], answer };
  }
  // An answer to HEAD has no body to judge, only its status.
  if (options.head === true)
    return { problems: answer.status >= 500 ? [`status ${answer.status}`] : [], answer };
  return { problems: answerProblems(answer, { paths: platform.paths, input }), answer };
}

/** The platform still answers /healthz and the echo function still answers 200. */
export async function stillServing(platform: FuzzPlatform): Promise<string[]> {
  const problems: string[] = [];
  for (const target of ['/healthz', `/function/${ECHO}`]) {
    const outcome = await rawRequest(platform.port, requestBytes('GET', target, [['Host', 'x']]), {
      expect: 1,
      timeoutMs: ANSWER_MS,
    });
    const status = outcome.responses[0]?.status;
    if (status !== 200)
      problems.push(`GET ${target}: ${status ?? (outcome.timedOut ? 'no answer' : 'closed')}`);
  }
  return problems;
}

/**
 * Error-level lines of the platform's log with a stack: an internal error some caller's input caused.
 * Returned as `msg: first line of the error` so the assertion can list them.
 */
export function stackedErrors(platform: FuzzPlatform): string[] {
  return platform.hearth.log
    .filter((line) => line.level === 'error' || line.level === 'fatal')
    .filter((line) => JSON.stringify(line).includes('    at '))
    .map((line) => {
      const err = line.err as { message?: unknown; type?: unknown; stack?: unknown } | undefined;
      // The first frame in the platform's own code (else the first) says where the caller's input got in.
      const frames = String(err?.stack ?? '')
        .split('\n')
        .filter((text) => text.trim().startsWith('at '));
      const frame = (frames.find((text) => text.includes('/dist/')) ?? frames[0])
        ?.trim()
        .replace(/\(?file:\/\/\S*\/dist\//, '(dist/');
      return `${String(line.msg)}: ${String(err?.type ?? '')} ${String(err?.message ?? '').split('\n')[0]} ${frame ?? ''}`.trim();
    });
}

/** Percent-escapes, good and bad, and other odd path segments. */
export const pathSegment: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '%',
      '%2',
      '%zz',
      '%E0%A4%A',
      '%C0%AF',
      '%FF',
      '%00',
      '%2F',
      '%2e%2e',
      '..',
      '.',
      '',
      'UPPER',
      'a..b',
      '%F0%9F%98%80',
      'x'.repeat(6000),
      TARGET,
      'missing-fn',
    ),
  },
  { weight: 2, arbitrary: fc.string({ maxLength: 20 }).map((text) => encodeURIComponent(text)) },
  {
    weight: 1,
    arbitrary: fc
      .string({ unit: 'binary', maxLength: 12 })
      .map((text) => [...Buffer.from(text)].map((byte) => `%${byte.toString(16).padStart(2, '0')}`).join('')),
  },
  {
    weight: 1,
    arbitrary: fc.string({
      unit: fc.constantFrom('a', '%', '/', '.', '-', '_', '~', '+', ':'),
      maxLength: 15,
    }),
  },
);

/**
 * `fc.assert` against the platform. When a case killed it, every later case fails too and fast-check
 * shrinks against a dead platform: the report then names the request that killed it instead.
 */
export async function assertOnPlatform<Ts extends [unknown, ...unknown[]]>(
  platform: FuzzPlatform,
  property: fc.IAsyncProperty<Ts>,
  params: fc.Parameters<Ts>,
): Promise<void> {
  try {
    await fc.assert(property, params);
  } catch (error) {
    if (platform.killer === undefined) throw error;
    throw new Error(
      `the platform's process ended while answering:\n${platform.killer}\n(fast-check's report, shrunk against the dead platform: ${(error as Error).message.split('\n').slice(0, 3).join(' ')})`,
    );
  }
}
