/**
 * @module Fuzzing the resource parsers in process: Function and EventGateway resources (their triggers,
 * rates and retries included) as data, as hearth.yaml text the server reads, and as the CLI reads it.
 * Whatever comes in, the answer is a parsed resource or one HearthError with a 4xx status, whose message
 * has no stack, no path of this machine and none of zod's wording, whose JSON body can be written, and
 * which comes quickly.
 */

import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { CliError, failureLine } from '../../src/cli/errors.js';
import { readFunctionFolder } from '../../src/cli/manifest.js';
import { parseYamlText } from '../../src/control/packages/yaml-file.js';
import { errorBody, HearthError } from '../../src/domain/errors.js';
import { parseFunctionManifest, resolveSpec } from '../../src/domain/function.js';
import { parseGatewayManifest } from '../../src/domain/gateway.js';
import { resolveRateLimit, resolveRetry } from '../../src/domain/triggers.js';
import { fuzzParams, fuzzTimeout, leaks, zodWording } from '../support/fuzz.js';
import { ROOT } from '../support/hearth.js';
import {
  aliasBomb,
  aliasEdit,
  applyAliasEdits,
  applyEdits,
  applyTextEdits,
  dataEdits,
  deepJson,
  hostileData,
  materialize,
  textEdits,
} from './arbitraries.js';

/** Parsing one resource takes about a millisecond; this only catches the pathological. */
const BOUND_MS = 1000;
/** The API reads at most 1 MiB of a resource; larger data cannot reach the parsers through it. */
const MAX_INPUT_CHARS = 1024 * 1024;

/** A Function using every field the schema knows, so mutations reach every part of it. */
const FULL_FUNCTION = {
  apiVersion: 'hearth.dev/v1',
  kind: 'Function',
  metadata: { name: 'full', namespace: 'team-a', labels: { tier: 'web' }, annotations: { owner: 'me' } },
  spec: {
    runtime: 'node20',
    handler: 'src/index.handler',
    source: './src',
    env: { GREETING: 'hi', COUNT: 3, DEBUG: true },
    limits: { memory: '256Mi', cpu: '500m', timeout: '1m30s', maxBody: '6Mi' },
    scaling: { min: 1, max: 10, targetConcurrency: 50, idleTimeout: '5m', warmPoolRatio: 0.2 },
    isolation: 'sandbox',
    egress: ['redis-master:6379', 'api.example.com:443'],
    hostAliases: { 'redis-master': 'host-gateway', db: '10.0.0.2' },
    priority: 10,
    eventFormat: 'lambda',
    rateLimit: { rate: '100qps', burst: 20, perClient: '10qps', clientBurst: 5 },
    triggers: [
      {
        kafka: {
          name: 'orders',
          brokers: ['kafka-1:9092'],
          topic: 'orders',
          group: 'g',
          parallelism: 4,
          ordering: 'key',
          startFrom: 'earliest',
          retry: { attempts: 5, backoff: '1s', maxBackoff: '1m' },
          deadLetterTopic: 'orders.dlq',
        },
      },
      {
        mqtt: {
          url: 'mqtt://127.0.0.1:1883',
          topic: 'sensors/+/temp',
          qos: 1,
          shared: 'grp',
          parallelism: 8,
        },
      },
      {
        nats: {
          url: ['nats://127.0.0.1:4222'],
          subject: 'jobs.>',
          stream: 'JOBS',
          consumer: 'c',
          startFrom: 'latest',
        },
      },
      {
        cron: {
          name: 'nightly',
          schedule: '0 3 * * *',
          timezone: 'Europe/Paris',
          missed: 'fire-once',
          data: { a: 1 },
        },
      },
    ],
  },
};

const FULL_GATEWAY = {
  apiVersion: 'hearth.dev/v1',
  kind: 'EventGateway',
  metadata: { name: 'gw', namespace: 'default' },
  spec: {
    protocols: [
      { http: { port: 8080, rateLimit: '1000qps' } },
      { kafka: { brokers: ['kafka-1:9092'], topic: 'order-events', retry: { attempts: 2 } } },
      { mqtt: { url: 'mqtt://127.0.0.1:1883', topic: 'a/#' } },
      { nats: { url: 'nats://127.0.0.1:4222', subject: 'a.b' } },
    ],
    functions: [
      {
        name: 'order-processor',
        namespace: 'shop',
        match: { path: '/api/orders/:id', method: ['POST', 'put'], topic: 'order-events' },
        concurrency: 50,
        priority: 5,
        rateLimit: { rate: '50qps', perClient: '5qps' },
        timeout: '10s',
        retry: { attempts: 3, backoff: '100ms', maxBackoff: '1s' },
        queue: { maxWait: '2s' },
      },
      { name: 'catch-all', match: { path: '/shop/*', method: '*' } },
    ],
  },
};

interface TextBase {
  readonly kind: 'Function' | 'EventGateway';
  readonly text: string;
}

/** Every hearth.yaml in the checkout (fixtures, examples, templates) and the gateway fixture, as text. */
async function manifestTexts(): Promise<TextBase[]> {
  const texts: TextBase[] = [];
  for (const folder of ['test/fixtures/functions', 'examples', 'templates']) {
    for (const name of await readdir(join(ROOT, folder))) {
      const text = await readFile(join(ROOT, folder, name, 'hearth.yaml'), 'utf8').catch(() => undefined);
      if (text !== undefined) texts.push({ kind: 'Function', text });
    }
  }
  texts.push({
    kind: 'EventGateway',
    text: await readFile(join(ROOT, 'test/fixtures/gateways/seed.yaml'), 'utf8'),
  });
  return texts;
}

/** JSON of an input for the leak check (a value the caller sent may come back), or '' when it has none. */
function textOf(input: unknown): string {
  try {
    return typeof input === 'string' ? input : (JSON.stringify(input) ?? '');
  } catch {
    return '';
  }
}

function describeThrown(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${(error.message.split('\n')[0] ?? '').slice(0, 200)}`;
  return String(error);
}

/**
 * `robust`: fast, a throw is a 4xx HearthError whose message leaks nothing and whose body the API can
 * write, and a result the deployer can store. `wording`: the message has none of zod's own words. They are
 * apart so that one defect does not hide the other behind its counterexample.
 */
type Check = 'robust' | 'wording';

/** Runs `parse` on one input and fails naming every problem `check` finds. */
function judge(parse: () => unknown, input: unknown, where: string, check: Check = 'robust'): void {
  let result: unknown;
  let error: unknown;
  const once = (): number => {
    const started = performance.now();
    error = undefined;
    try {
      result = parse();
    } catch (thrown) {
      error = thrown;
    }
    return performance.now() - started;
  };
  // A slow input is slow every time; a busy machine or a collection is not, so a slow run gets a second try.
  let ms = once();
  if (ms > BOUND_MS) ms = Math.min(ms, once());
  const sent = textOf(input);
  const problems: string[] = [];
  if (check === 'wording') {
    const zod = error instanceof HearthError ? zodWording(error.message, sent) : undefined;
    if (zod !== undefined)
      throw new Error(`${where}: zod's wording "${zod}" in: ${(error as Error).message.slice(0, 200)}`);
    return;
  }
  if (ms > BOUND_MS) problems.push(`took ${Math.round(ms)} ms (bound ${BOUND_MS} ms)`);
  if (error === undefined) {
    // The deployer stores what it accepted as JSON; a resource it cannot write would fail there (a 500).
    try {
      JSON.stringify(result);
    } catch (thrown) {
      problems.push(`accepted a resource that cannot be stored: ${describeThrown(thrown)}`);
    }
  } else if (!(error instanceof HearthError)) {
    problems.push(`threw ${describeThrown(error)} instead of a HearthError (the API would answer 500)`);
  } else {
    if (error.status < 400 || error.status >= 500) problems.push(`${error.code} is status ${error.status}`);
    problems.push(...leaks(error.message, { paths: [], input: sent }).map((leak) => `message has ${leak}`));
    try {
      JSON.stringify(errorBody(error));
    } catch (thrown) {
      problems.push(`its error body cannot be written as JSON: ${describeThrown(thrown)}`);
    }
  }
  if (problems.length > 0) throw new Error(`${where}: ${problems.join('; ')}`);
}

/** What the deployer does with a parsed hearth.yaml: validate, then resolve every default and unit. */
function asFunction(input: unknown): unknown {
  const manifest = parseFunctionManifest(input, 'hearth.yaml');
  resolveSpec(manifest.spec);
  resolveRateLimit(manifest.spec.rateLimit);
  for (const trigger of manifest.spec.triggers ?? []) {
    const source = Object.values(trigger)[0] as { retry?: Parameters<typeof resolveRetry>[0] };
    resolveRetry(source.retry);
  }
  return manifest;
}

/** What the gateway API does with a body: validate, then resolve rates and retries. */
function asGateway(input: unknown): unknown {
  const manifest = parseGatewayManifest(input, 'resource');
  for (const entry of manifest.spec.functions ?? []) {
    resolveRateLimit(entry.rateLimit);
    resolveRetry(entry.retry);
  }
  return manifest;
}

/** The server's reading of hearth.yaml (control/deploy.ts): a YAML error is its own 400 there. */
function serverReads(text: string, kind: TextBase['kind']): void {
  // The server's own reading (nesting bounded, then parsed); a refusal there is a clean 400.
  const read = parseYamlText(text);
  if (read.kind !== 'parsed') return;
  const parsed = read.value;
  judge(() => (kind === 'Function' ? asFunction(parsed) : asGateway(parsed)), text, 'parsed YAML');
}

describe('fuzz: resource parsers', () => {
  let texts: TextBase[] = [];
  let folder = '';
  beforeAll(async () => {
    texts = await manifestTexts();
    folder = await mkdtemp(join(tmpdir(), 'hearth-fuzz-manifest-'));
  });
  afterAll(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  it(
    'a mutated Function resource is accepted, or refused with one clean 4xx HearthError',
    () => {
      fc.assert(
        fc.property(dataEdits, (edits) => {
          const input = applyEdits(FULL_FUNCTION, edits);
          fc.pre(textOf(input).length <= MAX_INPUT_CHARS);
          judge(() => asFunction(input), input, 'Function');
        }),
        fuzzParams(400, 2),
      );
    },
    fuzzTimeout(400, 2),
  );

  it(
    'a mutated EventGateway resource is accepted, or refused with one clean 4xx HearthError',
    () => {
      fc.assert(
        fc.property(dataEdits, (edits) => {
          const input = applyEdits(FULL_GATEWAY, edits);
          fc.pre(textOf(input).length <= MAX_INPUT_CHARS);
          judge(() => asGateway(input), input, 'EventGateway');
        }),
        fuzzParams(300, 2),
      );
    },
    fuzzTimeout(300, 2),
  );

  it(
    'any value at all is refused as a resource with one clean 4xx HearthError',
    () => {
      const anything = fc.oneof(
        hostileData,
        fc.anything({ withNullPrototype: true, withBoxedValues: true, withSparseArray: true, maxDepth: 3 }),
      );
      fc.assert(
        fc.property(anything, (generated) => {
          const input = materialize(generated);
          judge(() => asFunction(input), input, 'Function');
          judge(() => asGateway(input), input, 'EventGateway');
        }),
        fuzzParams(300, 2),
      );
    },
    fuzzTimeout(300, 2),
  );

  it(
    'a refusal speaks the platform\'s words, not zod\'s ("expected a object", "Invalid input")',
    () => {
      const input = fc.oneof(
        dataEdits.map((edits) => ({ kind: 'Function' as const, value: applyEdits(FULL_FUNCTION, edits) })),
        dataEdits.map((edits) => ({ kind: 'EventGateway' as const, value: applyEdits(FULL_GATEWAY, edits) })),
        hostileData.map((value) => ({ kind: 'Function' as const, value })),
      );
      fc.assert(
        fc.property(input, ({ kind, value: generated }) => {
          const value = materialize(generated);
          judge(() => (kind === 'Function' ? asFunction(value) : asGateway(value)), value, kind, 'wording');
        }),
        fuzzParams(300, 2),
      );
    },
    fuzzTimeout(300, 2),
  );

  /** hearth.yaml text: edits of real manifests, aliases (shared and self-referencing), bombs, deep nesting, noise. */
  const yamlCase = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({ kind: fc.constant('edit' as const), base: fc.nat(), edits: textEdits }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('alias' as const),
        base: fc.nat(),
        edits: fc.array(aliasEdit, { minLength: 1, maxLength: 3 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('bomb' as const),
        levels: fc.integer({ min: 2, max: 12 }),
        width: fc.integer({ min: 2, max: 12 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('deep' as const),
        depth: fc.integer({ min: 100, max: 20_000 }),
        style: fc.constantFrom('[]', '{}', '- '),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('noise' as const),
        text: fc.string({ unit: 'binary', maxLength: 200 }),
      }),
    },
  );
  type YamlCase = typeof yamlCase extends fc.Arbitrary<infer T> ? T : never;

  function render(yamlInput: YamlCase): TextBase {
    switch (yamlInput.kind) {
      case 'edit':
      case 'alias': {
        const base = texts[yamlInput.base % texts.length] as TextBase;
        const text =
          yamlInput.kind === 'edit'
            ? applyTextEdits(base.text, yamlInput.edits)
            : applyAliasEdits(base.text, yamlInput.edits);
        return { kind: base.kind, text };
      }
      case 'bomb':
        return {
          kind: 'Function',
          text: `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: bomb }\nspec:\n  runtime: node20\n  env:\n    ${aliasBomb(yamlInput.levels, yamlInput.width).trimEnd().split('\n').join('\n    ')}\n`,
        };
      case 'deep': {
        const nested =
          yamlInput.style === '- '
            ? Array.from({ length: Math.min(yamlInput.depth, 2000) }, (_, i) => `${'  '.repeat(i)}- `).join(
                '\n',
              )
            : deepJson(yamlInput.depth, yamlInput.style[0], yamlInput.style[1]);
        return {
          kind: 'Function',
          text: `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: deep }\nspec: { runtime: node20, triggers: [ { cron: { schedule: "* * * * *", data: ${yamlInput.style === '- ' ? '[]' : nested} } } ] }\n${yamlInput.style === '- ' ? `x:\n${nested}x\n` : ''}`,
        };
      }
      case 'noise':
        return { kind: 'Function', text: yamlInput.text };
    }
  }

  it(
    'hearth.yaml text, as the server reads it, is accepted or refused with one clean 4xx HearthError',
    () => {
      fc.assert(
        fc.property(yamlCase, (yamlInput) => {
          const { kind, text } = render(yamlInput);
          const started = performance.now();
          serverReads(text, kind);
          const ms = performance.now() - started;
          if (ms > BOUND_MS * 2) throw new Error(`reading took ${Math.round(ms)} ms`);
        }),
        fuzzParams(300, 10),
      );
    },
    fuzzTimeout(300, 10),
  );

  it(
    'hearth.yaml text, as the CLI reads it, is accepted or refused with one line naming the file',
    async () => {
      await fc.assert(
        fc.asyncProperty(yamlCase, async (yamlInput) => {
          const { kind, text } = render(yamlInput);
          if (kind !== 'Function') return;
          await writeFile(join(folder, 'hearth.yaml'), text);
          const started = performance.now();
          let error: unknown;
          try {
            await readFunctionFolder(folder);
          } catch (thrown) {
            error = thrown;
          }
          const ms = performance.now() - started;
          const problems: string[] = [];
          if (ms > BOUND_MS * 2) problems.push(`took ${Math.round(ms)} ms`);
          if (error !== undefined) {
            if (!(error instanceof CliError)) problems.push(`threw ${describeThrown(error)}, not a CliError`);
            const line = failureLine(error);
            if (line.includes('\n')) problems.push('printed more than one line');
            problems.push(...leaks(line, { paths: [], input: text }));
            if (!line.includes('hearth.yaml')) problems.push(`the error does not name the file: ${line}`);
          }
          if (problems.length > 0) throw new Error(`CLI: ${problems.join('; ')}`);
        }),
        fuzzParams(200, 10),
      );
    },
    fuzzTimeout(200, 10),
  );
});
