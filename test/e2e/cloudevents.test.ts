/**
 * @module `POST /events` through the real platform, sent by the official CloudEvents SDKs (npm
 * `cloudevents`, PyPI `cloudevents`): binary and structured mode answered by the function, `Prefer:
 * respond-async` and batches queued durably and delivered, bad events refused naming the attribute.
 */

import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CloudEvent, HTTP } from 'cloudevents';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  api,
  copyFixture,
  deployFolder,
  eventually,
  type Hearth,
  makeFolder,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { type Recorder, startRecorder } from '../support/recorder.js';

const run = promisify(execFile);

let hearth: Hearth;
let recorder: Recorder;
const folders: TempFolder[] = [];

interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Record<string, unknown>;
}

async function send(
  message: { headers: Record<string, unknown>; body: unknown },
  extra: Record<string, string> = {},
  base = hearth.url,
): Promise<Answer> {
  const headers: Record<string, string> = { ...extra };
  for (const [name, value] of Object.entries(message.headers)) headers[name] = String(value);
  const response = await fetch(`${base}/events`, {
    method: 'POST',
    headers,
    body: message.body as string | Uint8Array,
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text === '' ? {} : JSON.parse(text) };
}

function errorOf(answer: Answer): { code: string; message: string; details?: Record<string, unknown> } {
  return (answer.body as { error: { code: string; message: string; details?: Record<string, unknown> } })
    .error;
}

/** Events the recorder function reported, by CloudEvent id. */
function recordedIds(): string[] {
  return recorder.received.map((hit) => (hit.json<{ event: { id?: string } }>().event.id ?? '') as string);
}

beforeAll(async () => {
  recorder = await startRecorder();
  const config = await makeFolder({
    'hearth.config.yaml': 'async: { retry: { attempts: 2, backoff: 100ms } }\n',
  });
  folders.push(config);
  hearth = await startHearth({ args: ['--config', join(config.dir, 'hearth.config.yaml')] });
  const echo = await copyFixture('cloudevent-echo', {
    'hearth.yaml':
      'apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: echo }\nspec: { runtime: node20 }\n',
  });
  folders.push(echo);
  for (const namespace of ['default', 'team']) {
    const deployed = await deployFolder(hearth.url, echo.dir, { name: 'echo', namespace });
    expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
  }
  // A handler written for Kafka/MQTT/NATS triggers, unchanged: it reports each event it gets.
  const recorderFn = await copyFixture('event-recorder', {
    'hearth.yaml': `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: recorder }\nspec:\n  runtime: node20\n  egress: allow\n  env: { RECORDER_URL: "${recorder.functionUrl}/hit" }\n`,
  });
  folders.push(recorderFn);
  expect((await deployFolder(hearth.url, recorderFn.dir, { name: 'recorder' })).status).toBe(200);
});

afterAll(async () => {
  await hearth?.stop();
  await recorder?.close();
  await Promise.all(folders.map((folder) => folder.cleanup()));
});

describe('POST /events, answered by the function (npm SDK)', () => {
  it('binary mode: the function gets the attributes, extensions and data, and its answer is the answer', async () => {
    const event = new CloudEvent({
      type: 'com.example.order.created',
      source: '/shop/orders',
      subject: 'echo',
      data: { order: 42, note: 'é 100%' },
      region: 'eu1',
    });
    const answer = await send(HTTP.binary(event));
    expect(answer.status, JSON.stringify(answer.body)).toBe(201);
    expect(answer.headers.get('x-echo')).toBe('com.example.order.created');
    expect(answer.headers.get('x-hearth-invocation-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(answer.body).toMatchObject({
      specversion: '1.0',
      id: event.id,
      type: 'com.example.order.created',
      source: '/shop/orders',
      subject: 'echo',
      region: 'eu1',
      data: { order: 42, note: 'é 100%' },
    });
  });

  it('structured mode: the same event, JSON data and binary data (data_base64)', async () => {
    const json = new CloudEvent({
      type: 'com.example.ping',
      source: 'urn:test',
      subject: 'echo',
      data: [1, 2],
    });
    const answer = await send(HTTP.structured(json));
    expect(answer.status, JSON.stringify(answer.body)).toBe(201);
    expect(answer.body).toMatchObject({
      id: json.id,
      type: 'com.example.ping',
      source: 'urn:test',
      data: [1, 2],
    });

    const bytes = new CloudEvent({
      type: 'com.example.blob',
      source: 'urn:test',
      subject: 'echo',
      datacontenttype: 'application/octet-stream',
      data: new Uint8Array([0, 1, 2, 255]),
    });
    const binary = await send(HTTP.structured(bytes));
    expect(binary.status, JSON.stringify(binary.body)).toBe(201);
    expect(binary.body).toMatchObject({
      datacontenttype: 'application/octet-stream',
      data: { base64: Buffer.from([0, 1, 2, 255]).toString('base64') },
    });
  });

  it('a subject of name.namespace reaches the function in that namespace', async () => {
    const event = new CloudEvent({ type: 't', source: 's', subject: 'echo.team', data: 'x' });
    const answer = await send(HTTP.binary(event));
    expect(answer.status).toBe(201);
    expect(answer.body).toMatchObject({ subject: 'echo.team' });
  });
});

describe('POST /events, queued', () => {
  it('Prefer: respond-async answers 202 with the id, and a trigger-style handler gets the event', async () => {
    const event = new CloudEvent({
      type: 'com.example.later',
      source: '/jobs',
      subject: 'recorder',
      data: { n: 1 },
    });
    const answer = await send(HTTP.binary(event), { prefer: 'respond-async' });
    expect(answer.status, JSON.stringify(answer.body)).toBe(202);
    expect(answer.headers.get('preference-applied')).toBe('respond-async');
    const id = answer.body.id as string;
    expect(answer.body).toMatchObject({
      function: 'recorder',
      eventId: event.id,
      statusUrl: `/api/v1/invocations/${id}`,
    });
    await recorder.waitFor('the queued event', () => recordedIds().includes(event.id));
    const hit = recorder.received.find((h) => h.json<{ event: { id: string } }>().event.id === event.id);
    expect(hit?.json()).toMatchObject({
      invocationId: id,
      event: { specversion: '1.0', type: 'com.example.later', source: '/jobs', data: { n: 1 } },
    });
    const record = await eventually('the invocation to succeed', async () => {
      const got = (await api<{ status: string }>(hearth.url, `/api/v1/invocations/${id}`)).body;
      return got.status === 'succeeded' ? got : undefined;
    });
    expect(record.status).toBe('succeeded');

    // The same event again (same source and id), say after a lost 202: the same message, not a second one.
    const again = await send(HTTP.binary(event), { prefer: 'respond-async' });
    expect(again.status).toBe(202);
    expect(again.body.id).toBe(id);
  });

  it('a queued event whose function fails is retried, then dead-lettered like an async invocation', async () => {
    const event = new CloudEvent({
      type: 'com.example.doomed',
      source: '/jobs',
      subject: 'recorder',
      data: { fail: true },
    });
    const answer = await send(HTTP.structured(event), { prefer: 'respond-async' });
    expect(answer.status, JSON.stringify(answer.body)).toBe(202);
    const id = answer.body.id as string;
    const dead = await eventually('the event to be dead-lettered', async () => {
      const got = (
        await api<{ status: string; attempts: number; error?: { code: string } }>(
          hearth.url,
          `/api/v1/invocations/${id}`,
        )
      ).body;
      return got.status === 'dead' ? got : undefined;
    });
    expect(dead.attempts).toBe(2);
    expect(dead.error?.code).toBe('HEARTH_E_FN_ERROR');
    expect(recordedIds().filter((seen) => seen === event.id)).toHaveLength(2);
  });

  it('a batch of 3 is accepted with 3 ids and every event is delivered', async () => {
    const events = [1, 2, 3].map(
      (n) =>
        new CloudEvent({ type: 'com.example.batch', source: '/batch', subject: 'recorder', data: { n } }),
    );
    const answer = await send({
      headers: { 'content-type': 'application/cloudevents-batch+json' },
      body: JSON.stringify(events),
    });
    expect(answer.status, JSON.stringify(answer.body)).toBe(202);
    const invocations = answer.body.invocations as { id: string; eventId: string }[];
    expect(answer.body.accepted).toBe(3);
    expect(invocations.map((i) => i.eventId)).toEqual(events.map((e) => e.id));
    expect(new Set(invocations.map((i) => i.id)).size).toBe(3);
    await recorder.waitFor('all three events', () => events.every((e) => recordedIds().includes(e.id)));
  });

  it('a batch with one bad event is refused whole, naming its index and attribute', async () => {
    const good = new CloudEvent({
      type: 'com.example.batch',
      source: '/refused',
      subject: 'recorder',
      data: 1,
    });
    const bad = { ...JSON.parse(JSON.stringify(good)), id: 'bad-1', type: undefined };
    const answer = await send({
      headers: { 'content-type': 'application/cloudevents-batch+json' },
      body: JSON.stringify([good, bad]),
    });
    expect(answer.status).toBe(400);
    expect(errorOf(answer)).toMatchObject({ code: 'HEARTH_E_VALIDATION', details: { field: '[1].type' } });
    expect(errorOf(answer).message).toContain('type');
    // Nothing of it was queued: a later event is delivered, the good half of the refused batch never is.
    const later = new CloudEvent({
      type: 'com.example.batch',
      source: '/refused',
      subject: 'recorder',
      data: 2,
    });
    expect((await send(HTTP.binary(later), { prefer: 'respond-async' })).status).toBe(202);
    await recorder.waitFor('the later event', () => recordedIds().includes(later.id));
    expect(recordedIds()).not.toContain(good.id);
  });
});

describe('POST /events, the function failing', () => {
  it("answers with the function's own error, as /function/ would", async () => {
    const event = new CloudEvent({ type: 't', source: 's', subject: 'recorder', data: { fail: true } });
    const answer = await send(HTTP.binary(event));
    expect(answer.status).toBe(500);
    expect(errorOf(answer).code).toBe('HEARTH_E_FN_ERROR');
    expect(answer.headers.get('x-hearth-invocation-id')).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('POST /events, refused', () => {
  const base = {
    'content-type': 'application/json',
    'ce-specversion': '1.0',
    'ce-id': 'e-1',
    'ce-source': '/tests',
    'ce-type': 'com.example.t',
    'ce-subject': 'echo',
  };

  it.each(['id', 'source', 'specversion', 'type'])('binary mode without %s: 400 naming it', async (name) => {
    const headers: Record<string, string> = { ...base };
    delete headers[`ce-${name}`];
    const answer = await send({ headers, body: '{}' });
    expect(answer.status).toBe(400);
    expect(errorOf(answer).code).toBe('HEARTH_E_VALIDATION');
    expect(errorOf(answer).message).toContain(`attribute ${name} is missing`);
    expect(errorOf(answer).details?.field).toBe(`ce-${name}`);
  });

  it.each(['id', 'source', 'specversion', 'type'])(
    'structured mode without %s: 400 naming it',
    async (name) => {
      const event: Record<string, unknown> = {
        specversion: '1.0',
        id: 'e-2',
        source: '/t',
        type: 't',
        subject: 'echo',
      };
      delete event[name];
      const answer = await send({
        headers: { 'content-type': 'application/cloudevents+json' },
        body: JSON.stringify(event),
      });
      expect(answer.status).toBe(400);
      expect(errorOf(answer).message).toContain(`attribute ${name} is missing`);
      expect(errorOf(answer).details?.field).toBe(name);
    },
  );

  it('specversion 0.3 is refused, naming the version accepted', async () => {
    const binary = await send({ headers: { ...base, 'ce-specversion': '0.3' }, body: '{}' });
    expect(binary.status).toBe(400);
    expect(errorOf(binary).message).toMatch(/specversion.*"0\.3".*"1\.0"/);
    const structured = await send({
      headers: { 'content-type': 'application/cloudevents+json' },
      body: JSON.stringify({ specversion: '0.3', id: 'x', source: 's', type: 't', subject: 'echo' }),
    });
    expect(structured.status).toBe(400);
    expect(errorOf(structured).details?.field).toBe('specversion');
  });

  it('a subject that names no function is 404 naming the subject; no subject is 400', async () => {
    const event = new CloudEvent({ type: 't', source: 's', subject: 'nobody-here', data: {} });
    const answer = await send(HTTP.binary(event), { prefer: 'respond-async' });
    expect(answer.status).toBe(404);
    expect(errorOf(answer).code).toBe('HEARTH_E_FN_NOT_FOUND');
    expect(errorOf(answer).message).toContain('"nobody-here"');
    const none = await send(HTTP.structured(new CloudEvent({ type: 't', source: 's', data: {} })));
    expect(none.status).toBe(400);
    expect(errorOf(none).details?.field).toBe('subject');
  });

  it('a request that is no CloudEvent, or not a POST, says what was expected', async () => {
    const plain = await send({ headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(plain.status).toBe(400);
    expect(errorOf(plain).message).toContain('ce-* headers');
    const get = await fetch(`${hearth.url}/events`);
    expect(get.status).toBe(405);
  });
});

describe('POST /events on an EventGateway http listener', () => {
  it('serves /events on the gateway port too', async () => {
    const port = await freePort();
    const put = await api(hearth.url, '/api/v1/namespaces/default/gateways/edge', {
      method: 'PUT',
      json: {
        apiVersion: 'hearth.dev/v1',
        kind: 'EventGateway',
        metadata: { name: 'edge' },
        spec: { protocols: [{ http: { port } }], functions: [{ name: 'echo', match: { path: '/edge' } }] },
      },
    });
    expect(put.status, JSON.stringify(put.body)).toBeLessThan(300);
    const event = new CloudEvent({ type: 't.gw', source: 's', subject: 'echo', data: { via: 'gateway' } });
    const answer = await send(HTTP.binary(event), {}, `http://127.0.0.1:${port}`);
    expect(answer.status, JSON.stringify(answer.body)).toBe(201);
    expect(answer.body).toMatchObject({ type: 't.gw', data: { via: 'gateway' } });
  });
});

describe('POST /events from the Python SDK (PyPI cloudevents)', () => {
  let target: TempFolder;

  beforeAll(async () => {
    target = await makeFolder({});
    folders.push(target);
    await run(
      'python3',
      [
        '-m',
        'pip',
        'install',
        '--quiet',
        '--disable-pip-version-check',
        '--target',
        target.dir,
        'cloudevents==2.2.0',
      ],
      {
        timeout: 120_000,
      },
    );
  }, 150_000);

  async function python(mode: 'binary' | 'structured', data: string): Promise<Answer> {
    const script = `
import http.client, json, sys, urllib.parse
from cloudevents.core.v1.event import CloudEvent
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
event = CloudEvent({"type": "com.example.py", "source": "/python", "subject": "echo", "id": "py-${mode}"}, json.loads(sys.argv[2]))
message = (to_binary_event if sys.argv[1] == "binary" else to_structured_event)(event)
# http.client sends the SDK's headers as they are (urllib would add a form content-type of its own).
url = urllib.parse.urlsplit(sys.argv[3])
connection = http.client.HTTPConnection(url.hostname, url.port)
connection.request("POST", url.path, body=message.body, headers=message.headers)
response = connection.getresponse()
print(json.dumps({"status": response.status, "body": response.read().decode()}))
`;
    const { stdout } = await run('python3', ['-c', script, mode, data, `${hearth.url}/events`], {
      env: { ...process.env, PYTHONPATH: target.dir },
    });
    const out = JSON.parse(stdout) as { status: number; body: string };
    return { status: out.status, headers: new Headers(), body: JSON.parse(out.body) };
  }

  it.each(['binary', 'structured'] as const)('%s mode: the function gets the event', async (mode) => {
    const answer = await python(mode, JSON.stringify({ from: 'python', mode }));
    expect(answer.status, JSON.stringify(answer.body)).toBe(201);
    expect(answer.body).toMatchObject({
      specversion: '1.0',
      id: `py-${mode}`,
      type: 'com.example.py',
      source: '/python',
      subject: 'echo',
      data: { from: 'python', mode },
    });
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}
