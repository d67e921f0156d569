/**
 * @module `isolation: isolate` on the real platform (issue 11): Node functions of one namespace run as V8
 * isolates in one sandboxed host process. Deploy and invoke; an isolate past its heap limit is ended alone
 * (its neighbours keep answering from the same host); two namespaces never share a host; describe says
 * what is shared; what an isolate cannot do is refused at deploy.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionDetail } from '../../src/control/api/types.js';
import {
  deployFolder,
  eventually,
  functionApiPath,
  functionLogs,
  getFunction,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

let hearth: Hearth;
const folders: TempFolder[] = [];

const SPEC = '{ runtime: node20, isolation: isolate, scaling: { idleTimeout: 5m } }';

async function deployIsolate(
  name: string,
  files: Record<string, string>,
  options: { namespace?: string; spec?: string; query?: string } = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const folder = await makeFolder({
    'hearth.yaml': manifest(
      name,
      options.spec ?? SPEC,
      options.namespace === undefined ? '' : `namespace: ${options.namespace}`,
    ),
    ...files,
  });
  folders.push(folder);
  return deployFolder(hearth.url, folder.dir, {
    name,
    ...(options.namespace === undefined ? {} : { namespace: options.namespace }),
    ...(options.query === undefined ? {} : { query: options.query }),
  });
}

async function pidOf(name: string, namespace = 'default'): Promise<number | undefined> {
  const detail: FunctionDetail | undefined = await getFunction(hearth.url, name, namespace);
  return detail?.activeInstances.find((instance) => instance.state === 'ready')?.pid;
}

beforeAll(async () => {
  hearth = await startHearth();
  const greet = await deployIsolate('greet', {
    'index.mjs': [
      "import { greeting } from './lib/words.mjs';",
      'export default async (event, ctx) => {',
      "  console.log('greeting', event.query.name);",
      "  return { greeting: greeting + ', ' + (event.query.name ?? 'world'), fn: ctx.functionName, method: event.method, body: event.body };",
      '};',
    ].join('\n'),
    'lib/words.mjs': "export const greeting = 'hello';\n",
  });
  expect(greet.status, JSON.stringify(greet.body)).toBe(200);
  const shaped = await deployIsolate(
    'shaped',
    {
      'handler.mjs':
        "export const handler = async () => ({ statusCode: 201, headers: { 'x-made-in': 'isolate' }, body: 'created' });\n",
    },
    {
      spec: '{ runtime: node20, isolation: isolate, handler: handler.handler, scaling: { idleTimeout: 5m } }',
    },
  );
  expect(shaped.status, JSON.stringify(shaped.body)).toBe(200);
  const hog = await deployIsolate(
    'hog',
    {
      'index.mjs': [
        'const kept = [];',
        'export default async (event) => {',
        "  if (event.query.eat === undefined) return 'hungry';",
        '  for (;;) kept.push(new Array(100000).fill(Math.random()));',
        '};',
      ].join('\n'),
    },
    {
      spec: '{ runtime: node20, isolation: isolate, limits: { memory: 32Mi }, scaling: { idleTimeout: 5m } }',
    },
  );
  expect(hog.status, JSON.stringify(hog.body)).toBe(200);
  const other = await deployIsolate(
    'greet',
    { 'index.mjs': "export default async () => 'from team-b';\n" },
    { namespace: 'team-b' },
  );
  expect(other.status, JSON.stringify(other.body)).toBe(200);
}, 120_000);

afterAll(async () => {
  await hearth?.stop();
  for (const folder of folders) await folder.cleanup();
});

describe('isolation: isolate', () => {
  it('runs an ES module handler with relative imports, the event, ctx and console', async () => {
    const answer = await invoke(hearth.url, 'greet', {
      path: '?name=ada',
      body: JSON.stringify({ a: 1 }),
      headers: { 'content-type': 'application/json' },
    });
    expect(answer.status, answer.text).toBe(200);
    expect(answer.json()).toEqual({ greeting: 'hello, ada', fn: 'greet', method: 'POST', body: { a: 1 } });
    const shaped = await invoke(hearth.url, 'shaped');
    expect(shaped.status).toBe(201);
    expect(shaped.headers.get('x-made-in')).toBe('isolate');
    expect(shaped.text).toBe('created');
    const invocationId = answer.headers.get('x-hearth-invocation-id');
    const logged = await eventually('the console line in the function log', async () => {
      const records = await functionLogs(hearth.url, 'greet');
      return records.find((record) => record.message.includes('greeting ada'));
    });
    expect(logged.invocationId).toBe(invocationId);
  });

  it('runs the functions of one namespace in one sandboxed host process', async () => {
    await invoke(hearth.url, 'hog');
    const greet = await pidOf('greet');
    const shaped = await pidOf('shaped');
    const hog = await pidOf('hog');
    expect(greet).toBeGreaterThan(0);
    expect(shaped).toBe(greet);
    expect(hog).toBe(greet);
  });

  it('never shares a host process across namespaces', async () => {
    const answer = await invoke(hearth.url, 'greet.team-b');
    expect(answer.status, answer.text).toBe(200);
    expect(answer.text).toBe('from team-b');
    const teamB = await pidOf('greet', 'team-b');
    const teamDefault = await pidOf('greet');
    expect(teamB).toBeGreaterThan(0);
    expect(teamB).not.toBe(teamDefault);
  });

  it('ends an isolate past its memory limit, and only that one: its neighbours keep answering', async () => {
    const hostBefore = await pidOf('greet');
    const eaten = await invoke(hearth.url, 'hog', { path: '?eat=1' });
    expect(eaten.status, eaten.text).toBe(502);
    expect(eaten.text).toMatch(/memory/);
    for (const name of ['greet', 'shaped']) {
      const answer = await invoke(hearth.url, name);
      expect(answer.status, `${name}: ${answer.text}`).toBeLessThan(300);
    }
    // Same host process: the neighbours were not restarted.
    expect(await pidOf('greet')).toBe(hostBefore);
    // The hog gets a fresh isolate on its next call.
    const again = await invoke(hearth.url, 'hog');
    expect(again.status, again.text).toBe(200);
    expect(again.text).toBe('hungry');
    // That isolate was a spare, made ahead on isolated-vm's threads (isolate-host.mjs, newIsolateElsewhere):
    // its heap is capped at the function's limit all the same.
    const eatenAgain = await invoke(hearth.url, 'hog', { path: '?eat=1' });
    expect(eatenAgain.status, eatenAgain.text).toBe(502);
    expect(eatenAgain.text).toMatch(/memory/);
  });

  it('binds a burst of functions into the running host, back to back and all at once, each running its own code', async () => {
    const names = Array.from({ length: 12 }, (_, i) => `burst-${i}`);
    for (const [i, name] of names.entries()) {
      const deployed = await deployIsolate(
        name,
        { 'index.mjs': `export default async (event, ctx) => 'burst ' + ${i} + ' ' + ctx.functionName;\n` },
        { query: '?verify=false' },
      );
      expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
      // No instance yet: the calls below are cold starts, each a bind into the running host.
      const stopped = await fetch(`${hearth.url}${functionApiPath(name)}/instances`, { method: 'DELETE' });
      expect(stopped.ok).toBe(true);
      await stopped.arrayBuffer();
    }
    // One after another: each bind arrives while the host makes the spare the previous one took.
    for (const [i, name] of names.slice(0, 6).entries()) {
      const answer = await invoke(hearth.url, name);
      expect(answer.status, answer.text).toBe(200);
      expect(answer.headers.get('x-hearth-cold-start')).toBe('1');
      expect(answer.text).toBe(`burst ${i} ${name}`);
    }
    // All at once: more binds than spares.
    const together = await Promise.all(names.slice(6).map((name) => invoke(hearth.url, name)));
    for (const [i, answer] of together.entries()) {
      expect(answer.status, answer.text).toBe(200);
      expect(answer.text).toBe(`burst ${i + 6} ${names[i + 6]}`);
    }
    const host = await pidOf('greet');
    for (const name of names) expect(await pidOf(name)).toBe(host);
  });

  it('runs the redeployed code at the next cold start, and the same code again after a scale to zero', async () => {
    // The platform keeps a function's sources by code package (isolate/index.ts, SourceCache): a redeploy
    // with other code, even in an imported file only, must never be served the old sources.
    const files = (word: string): Record<string, string> => ({
      'index.mjs': "import { word } from './lib/word.mjs';\nexport default async () => 'said ' + word;\n",
      'lib/word.mjs': `export const word = '${word}';\n`,
    });
    const scaleToZero = async (): Promise<void> => {
      const stopped = await fetch(`${hearth.url}${functionApiPath('recode')}/instances`, {
        method: 'DELETE',
      });
      expect(stopped.ok).toBe(true);
      await stopped.arrayBuffer();
    };
    const first = await deployIsolate('recode', files('first'));
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    await scaleToZero();
    for (let round = 0; round < 2; round++) {
      const answer = await invoke(hearth.url, 'recode');
      expect(answer.status, answer.text).toBe(200);
      expect(answer.headers.get('x-hearth-cold-start')).toBe('1');
      expect(answer.text).toBe('said first');
      await scaleToZero();
    }
    const second = await deployIsolate('recode', files('second'));
    expect(second.status, JSON.stringify(second.body)).toBe(200);
    await scaleToZero();
    const after = await invoke(hearth.url, 'recode');
    expect(after.status, after.text).toBe(200);
    expect(after.headers.get('x-hearth-cold-start')).toBe('1');
    expect(after.text).toBe('said second');
  });

  it('answers a module that fails as it loads with its error, and its neighbours keep answering', async () => {
    const broken = await deployIsolate(
      'broken',
      {
        'index.mjs':
          "throw new Error('no settings for this function');\nexport default async () => 'never';\n",
      },
      { query: '?verify=false' },
    );
    expect(broken.status, JSON.stringify(broken.body)).toBe(200);
    const answer = await invoke(hearth.url, 'broken');
    expect(answer.status).toBe(502);
    const { error } = answer.json() as { error: { message: string } };
    expect(error.message).toMatch(
      /handler "index" could not be loaded: Error: no settings for this function/,
    );
    // The stack goes to that function's log (the host is shared; its own log would not say whose it was).
    const logged = await eventually('the load error in the function log', async () => {
      const records = await functionLogs(hearth.url, 'broken');
      return records.find((record) => record.message.includes('no settings for this function'));
    });
    expect(logged.message).toMatch(/index\.mjs:1/);
    const neighbour = await invoke(hearth.url, 'greet');
    expect(neighbour.status).toBe(200);
    expect(await pidOf('greet')).toBeGreaterThan(0);
  });

  it('says in describe what the function shares', async () => {
    const detail = await getFunction(hearth.url, 'greet');
    expect(detail?.spec.isolation).toBe('isolate');
    expect(detail?.isolationNote).toMatch(/SHARED with the other isolate functions of namespace default/);
    expect(detail?.isolationNote).toMatch(/never another namespace/);
  });

  it('refuses at deploy what an isolate cannot run', async () => {
    const python = await deployIsolate(
      'py-isolate',
      { 'main.py': 'def handler(event, context):\n    return "x"\n' },
      { spec: '{ runtime: python3, handler: main.handler, isolation: isolate }' },
    );
    expect(python.status).toBe(400);
    expect(JSON.stringify(python.body)).toMatch(/spec\.runtime/);
    const egress = await deployIsolate(
      'net-isolate',
      { 'index.mjs': 'export default async () => 1;\n' },
      { spec: '{ runtime: node20, isolation: isolate, egress: allow }' },
    );
    expect(egress.status).toBe(400);
    expect(JSON.stringify(egress.body)).toMatch(/spec\.egress/);
    const importsNode = await deployIsolate('fs-isolate', {
      'index.mjs':
        "import { readFileSync } from 'node:fs';\nexport default async () => readFileSync('/etc/passwd', 'utf8');\n",
    });
    expect(importsNode.status).toBe(422);
    expect(JSON.stringify(importsNode.body)).toMatch(/cannot be imported inside an isolate/);
  });
});
