/**
 * @module Trigger resources and event flows through the real platform (issue 20): Triggers applied with
 * `hearth apply` filter CloudEvents from `POST /events` (sent by the npm CloudEvents SDK) by exact, prefix
 * and suffix attributes, several take the same event, a failing one retries and dead-letters to a function,
 * `hearth ls triggers` and `describe trigger` show the counts and last error; and three functions (Node,
 * Python, Node) compose into a flow without a broker — a CloudEvent returned by one, `ctx.emit` by the next —
 * with the trace carried and a loop stopped.
 */

import { join } from 'node:path';
import { CloudEvent, HTTP } from 'cloudevents';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  copyFixture,
  deployFolder,
  eventually,
  type Hearth,
  makeFolder,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { type Recorder, startRecorder } from '../support/recorder.js';

let hearth: Hearth;
let recorder: Recorder;
const folders: TempFolder[] = [];

const TRIGGERS = `apiVersion: hearth.dev/v1
kind: Trigger
metadata: { name: paid }
spec:
  filter: { attributes: { type: com.shop.order.paid } }
  subscriber: { function: recorder }
---
apiVersion: hearth.dev/v1
kind: Trigger
metadata: { name: shop-audit }
spec:
  filter: { prefix: { source: /shop/ }, suffix: { type: .paid } }
  subscriber: { function: recorder }
---
apiVersion: hearth.dev/v1
kind: Trigger
metadata: { name: broken }
spec:
  filter: { attributes: { type: com.shop.order.broken } }
  subscriber: { function: broken }
  delivery: { retry: 1, backoffDelay: PT0.05S, deadLetter: { function: dead-sink } }
---
apiVersion: hearth.dev/v1
kind: Trigger
metadata: { name: flow-start }
spec:
  filter: { attributes: { type: flow.start } }
  subscriber: { function: step-one }
---
apiVersion: hearth.dev/v1
kind: Trigger
metadata: { name: flow-checked }
spec:
  filter: { attributes: { type: flow.checked, region: eu1 } }
  subscriber: { function: step-two }
---
apiVersion: hearth.dev/v1
kind: Trigger
metadata: { name: chain }
spec:
  filter: { prefix: { type: chain. } }
  subscriber: { function: chainer }
---
apiVersion: hearth.dev/v1
kind: Trigger
metadata: { name: loop }
spec:
  filter: { attributes: { type: loop.ping } }
  subscriber: { function: looper }
`;

async function send(
  message: { headers: Record<string, unknown>; body: unknown },
  extra: Record<string, string> = {},
) {
  const headers: Record<string, string> = { ...extra };
  for (const [name, value] of Object.entries(message.headers)) headers[name] = String(value);
  const response = await fetch(`${hearth.url}/events`, {
    method: 'POST',
    headers,
    body: message.body as string,
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

interface Hit {
  readonly event?: Record<string, unknown> & { id?: string; data?: Record<string, unknown> };
  readonly loopError?: string;
}

function hits(path: string): Hit[] {
  return recorder.received.filter((hit) => hit.path === path).map((hit) => hit.json<Hit>());
}

async function deployRecorder(name: string, path: string, env = ''): Promise<void> {
  const folder = await copyFixture('event-recorder', {
    'hearth.yaml': `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec:\n  runtime: node20\n  egress: allow\n  env: { RECORDER_URL: "${recorder.functionUrl}${path}"${env} }\n`,
  });
  folders.push(folder);
  const deployed = await deployFolder(hearth.url, folder.dir, { name });
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
}

async function deploy(name: string, files: Record<string, string>): Promise<void> {
  const folder = await makeFolder(files);
  folders.push(folder);
  const deployed = await deployFolder(hearth.url, folder.dir, { name });
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
}

beforeAll(async () => {
  recorder = await startRecorder();
  hearth = await startHearth();
  await deployRecorder('recorder', '/hit');
  await deployRecorder('broken', '/broken', ', FAIL: "1"');
  await deployRecorder('dead-sink', '/dead');
  // Step one answers with a CloudEvent in structured form: the platform routes it on.
  await deploy('step-one', {
    'hearth.yaml':
      'apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: step-one }\nspec: { runtime: node20 }\n',
    'index.mjs':
      "export default async (event) => ({ specversion: '1.0', type: 'flow.checked', source: '/flow/one', region: 'eu1', data: { ...event.data, one: true } });\n",
  });
  // Step two (Python) emits the last event to the recorder by subject.
  await deploy('step-two', {
    'hearth.yaml':
      'apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: step-two }\nspec: { runtime: python3 }\n',
    'main.py':
      'def handler(event, ctx):\n    sent = ctx.emit({"type": "flow.done", "source": "/flow/two", "subject": "recorder", "data": {**event["data"], "two": True}})\n    return {"sent": sent["ids"]}\n',
  });
  // A binary-mode reply: the ce-* response headers are the event, the body its data.
  await deploy('binary-reply', {
    'hearth.yaml':
      'apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: binary-reply }\nspec: { runtime: node20 }\n',
    'index.mjs': `export default async (event) => ({
  statusCode: 200,
  headers: { 'ce-specversion': '1.0', 'ce-id': 'reply-' + event.id, 'ce-source': '/binary', 'ce-type': 'bin.reply', 'ce-subject': 'recorder', 'content-type': 'application/json' },
  body: JSON.stringify({ answered: event.data.n }),
});
`,
  });
  // The chainer emits a new type each time (chain.1, chain.2, …): no loop, but a chain the hop limit ends.
  await deploy('chainer', {
    'hearth.yaml': `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: chainer }\nspec:\n  runtime: node20\n  egress: allow\n  env: { RECORDER_URL: "${recorder.functionUrl}/chain" }\n`,
    'index.mjs': `export default async (event, ctx) => {
  const n = Number(event.type.slice('chain.'.length));
  try {
    await ctx.emit({ type: 'chain.' + (n + 1), source: '/chain', data: {} });
  } catch (error) {
    await fetch(process.env.RECORDER_URL, { method: 'POST', body: JSON.stringify({ n, error: error.message }) });
  }
  return { n };
};
`,
  });
  // The looper emits the very event type that reaches it again; the second time the platform refuses.
  await deploy('looper', {
    'hearth.yaml': `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: looper }\nspec:\n  runtime: node20\n  egress: allow\n  env: { RECORDER_URL: "${recorder.functionUrl}/loop" }\n`,
    'index.mjs': `export default async (event, ctx) => {
  try {
    await ctx.emit({ type: 'loop.ping', source: '/loop', data: { round: (event.data?.round ?? 0) + 1 } });
    return { emitted: true };
  } catch (error) {
    await fetch(process.env.RECORDER_URL, { method: 'POST', body: JSON.stringify({ loopError: error.message, hops: event.hearthhops }) });
    return { refused: true };
  }
};
`,
  });
  const file = await makeFolder({ 'triggers.yaml': TRIGGERS });
  folders.push(file);
  const applied = await runCli(['apply', '-f', join(file.dir, 'triggers.yaml')], { url: hearth.url });
  expect(applied.code, applied.stderr).toBe(0);
  expect(applied.stdout).toContain('trigger/paid configured');
  expect(applied.stdout).toContain('trigger/loop configured');
}, 180_000);

afterAll(async () => {
  await hearth?.stop();
  await recorder?.close();
  await Promise.all(folders.map((folder) => folder.cleanup()));
});

describe('Trigger resources', () => {
  it('an event that names no function goes to every Trigger whose filter takes it (exact, prefix+suffix)', async () => {
    const event = new CloudEvent({ type: 'com.shop.order.paid', source: '/shop/web', data: { order: 7 } });
    const answer = await send(HTTP.binary(event));
    expect(answer.status, JSON.stringify(answer.body)).toBe(202);
    expect(answer.body.accepted).toBe(2);
    await recorder.waitFor(
      'both triggers deliver',
      () => hits('/hit').filter((hit) => hit.event?.id === event.id).length === 2,
    );
    // Not from /shop/: only the exact trigger takes it.
    const other = new CloudEvent({ type: 'com.shop.order.paid', source: '/pos/till', data: { order: 8 } });
    expect((await send(HTTP.structured(other))).body.accepted).toBe(1);
    await recorder.waitFor('the exact trigger delivers', () =>
      hits('/hit').some((hit) => hit.event?.id === other.id),
    );
    // The recorder hears from the function before its answer settles the delivery: wait for the counts.
    const listed = await eventually('the counts in hearth ls triggers', async () => {
      const result = await runCli(['ls', 'triggers'], { url: hearth.url });
      return /paid\s+default\s+type=com\.shop\.order\.paid\s+recorder\s+2\s+0/.test(result.stdout)
        ? result
        : undefined;
    });
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(
      /shop-audit\s+default\s+source\^=\/shop\/ type\$=\.paid\s+recorder\s+1\s+0/,
    );
  });

  it('refuses an event no function and no Trigger takes, naming the subject', async () => {
    const unmatched = await send(HTTP.binary(new CloudEvent({ type: 'com.nobody', source: '/x', data: 1 })));
    expect(unmatched.status).toBe(400);
    expect(JSON.stringify(unmatched.body)).toContain('ce-subject');
    const unknown = await send(
      HTTP.binary(new CloudEvent({ type: 'com.nobody', source: '/x', subject: 'ghost', data: 1 })),
    );
    expect(unknown.status).toBe(404);
    expect((unknown.body.error as { message: string }).message).toContain('subject "ghost"');
  });

  it('retries a failing delivery, dead-letters it to a function, and describe shows the counts and error', async () => {
    const event = new CloudEvent({ type: 'com.shop.order.broken', source: '/shop/web', data: { order: 9 } });
    expect((await send(HTTP.binary(event))).status).toBe(202);
    await recorder.waitFor('the dead-letter function gets the event', () =>
      hits('/dead').some((hit) => hit.event?.id === event.id),
    );
    expect(hits('/broken').filter((hit) => hit.event?.id === event.id)).toHaveLength(2);
    const described = await eventually('the dead letter in describe trigger', async () => {
      const result = await runCli(['describe', 'trigger', 'broken'], { url: hearth.url });
      return result.stdout.includes('dead-lettered 1') ? result : undefined;
    });
    expect(described.code, described.stderr).toBe(0);
    expect(described.stdout).toMatch(/Delivered:\s+0/);
    expect(described.stdout).toMatch(/Failed:\s+2 \(retried 1, dead-lettered 1\)/);
    expect(described.stdout).toMatch(/Last error:\s+HEARTH_E_FN_ERROR/);
    expect(described.stdout).toContain('dead letters to default/dead-sink');
  });

  it("POST /events?namespace=team goes to that namespace's Triggers only", async () => {
    const folder = await copyFixture('event-recorder', {
      'hearth.yaml': `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: recorder }\nspec:\n  runtime: node20\n  egress: allow\n  env: { RECORDER_URL: "${recorder.functionUrl}/team" }\n`,
    });
    folders.push(folder);
    expect((await deployFolder(hearth.url, folder.dir, { name: 'recorder', namespace: 'team' })).status).toBe(
      200,
    );
    const put = await fetch(`${hearth.url}/api/v1/namespaces/team/event-triggers/team-only`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        apiVersion: 'hearth.dev/v1',
        kind: 'Trigger',
        metadata: { name: 'team-only' },
        spec: { filter: { attributes: { type: 'com.team.ping' } }, subscriber: { function: 'recorder' } },
      }),
    });
    expect(put.status).toBe(200);
    const event = new CloudEvent({ type: 'com.team.ping', source: '/team', data: { n: 1 } });
    const message = HTTP.binary(event);
    expect((await send(message)).status).toBe(400);
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(message.headers)) headers[name] = String(value);
    const answer = await fetch(`${hearth.url}/events?namespace=team`, {
      method: 'POST',
      headers,
      body: message.body as string,
    });
    expect(answer.status).toBe(202);
    await recorder.waitFor("the team's recorder gets it", () =>
      hits('/team').some((hit) => hit.event?.id === event.id),
    );
  });

  it('refuses a Trigger resource with a bad filter, naming the field (nothing applied)', async () => {
    const file = await makeFolder({
      'bad.yaml':
        'apiVersion: hearth.dev/v1\nkind: Trigger\nmetadata: { name: bad }\nspec:\n  filter: { attributes: { Type: x } }\n  subscriber: { function: recorder }\n',
    });
    folders.push(file);
    const refused = await runCli(['apply', '-f', join(file.dir, 'bad.yaml')], { url: hearth.url });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toContain('spec.filter.attributes');
    const missing = await runCli(['describe', 'trigger', 'bad'], { url: hearth.url });
    expect(missing.code).not.toBe(0);
  });
});

describe('event flows without a broker', () => {
  it('a returned CloudEvent and ctx.emit carry an event through three functions, with the trace', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const event = new CloudEvent({ type: 'flow.start', source: '/test', data: { order: 11 } });
    const answer = await send(HTTP.binary(event), {
      traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
    });
    expect(answer.status, JSON.stringify(answer.body)).toBe(202);
    await recorder.waitFor('the flow reaches the recorder', () =>
      hits('/hit').some((hit) => hit.event?.type === 'flow.done'),
    );
    const done = hits('/hit').find((hit) => hit.event?.type === 'flow.done')?.event ?? {};
    expect(done.data).toEqual({ order: 11, one: true, two: true });
    expect(done.source).toBe('/flow/two');
    expect(done.hearthhops).toBe(2);
    expect(String(done.hearthtrail)).toBe('flow.checked@default/step-one flow.done@default/step-two');
    expect(String(done.traceparent).slice(3, 35)).toBe(traceId);
  });

  it('a reply in binary mode (ce-* response headers) of a queued event is routed on', async () => {
    const event = new CloudEvent({
      type: 'bin.start',
      source: '/test',
      subject: 'binary-reply',
      data: { n: 5 },
    });
    const answer = await send(HTTP.binary(event), { prefer: 'respond-async' });
    expect(answer.status, JSON.stringify(answer.body)).toBe(202);
    await recorder.waitFor('the binary reply reaches the recorder', () =>
      hits('/hit').some((hit) => hit.event?.id === `reply-${event.id}`),
    );
    const reply = hits('/hit').find((hit) => hit.event?.id === `reply-${event.id}`)?.event ?? {};
    expect(reply).toMatchObject({
      type: 'bin.reply',
      source: '/binary',
      data: { answered: 5 },
      hearthhops: 1,
    });
  });

  it('ends a chain of emitted events at the hop limit (16 generations)', async () => {
    const event = new CloudEvent({ type: 'chain.0', source: '/test', data: {} });
    expect((await send(HTTP.binary(event))).status).toBe(202);
    await recorder.waitFor('the chain is cut', () => hits('/chain').length > 0, 30_000);
    const [cut] = recorder.received
      .filter((hit) => hit.path === '/chain')
      .map((hit) => hit.json<{ n: number; error: string }>());
    expect(cut?.n).toBe(16);
    expect(cut?.error).toContain('would be generation 17 of one chain; at most 16 are allowed');
  });

  it('stops an event loop: a function may not emit the same event type twice in one chain', async () => {
    const event = new CloudEvent({ type: 'loop.ping', source: '/test', data: { round: 0 } });
    expect((await send(HTTP.binary(event))).status).toBe(202);
    await recorder.waitFor('the looper is refused', () => hits('/loop').length > 0);
    const [refusal] = hits('/loop');
    expect(refusal?.loopError).toContain('event loop');
    expect(refusal?.loopError).toContain('default/looper already emitted a loop.ping event');
  });
});
