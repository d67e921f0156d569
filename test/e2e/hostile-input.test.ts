/**
 * @module End-to-end: hostile input to the control API and the gateway (issue 19) — deep JSON, bad
 * percent-escapes, invalid UTF-8, oversized manifests, bad list cursors, a taken gateway port, clients
 * that hang up mid-body. Each is the caller's mistake: a 4xx naming it, no stack trace, no error-level log
 * line, and the platform keeps serving.
 */

import { connect, createServer, type Server } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  api,
  deployArchive,
  deployFolder,
  eventually,
  FIXTURES,
  functionApiPath,
  getFunction,
  type Hearth,
  invoke,
  makeFolder,
  packFolder,
  stackTraceIn,
  startHearth,
} from '../support/hearth.js';

interface ErrorAnswer {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

let hearth: Hearth;

beforeAll(async () => {
  hearth = await startHearth();
  const deployed = await deployFolder(hearth.url, `${FIXTURES}/node-binary`, { name: 'node-binary' });
  expect(deployed.status).toBe(200);
});

let logMark = 0;
beforeEach(() => {
  logMark = hearth.log.length;
});

// Whatever a test sent, the platform answers the next caller, and logged no error for it.
afterEach(async () => {
  expect((await invoke(hearth.url, 'node-binary', { body: Buffer.from('ok') })).text).toBe('ko');
  expect(errorLogLines()).toEqual([]);
});

afterAll(async () => {
  await hearth?.stop();
});

/** Error-level lines of the platform's log since this test began. */
function errorLogLines(): Record<string, unknown>[] {
  return hearth.log.slice(logMark).filter((line) => line.level === 'error' || line.level === 'fatal');
}

async function send(
  path: string,
  method: string,
  body: string | Buffer,
): Promise<{ status: number; text: string; headers: Headers }> {
  const response = await fetch(`${hearth.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body,
  });
  return { status: response.status, text: await response.text(), headers: response.headers };
}

/** A user-facing error: the status and code, a message, and nothing from the platform's insides. */
function expectError(
  answer: { status: number; text: string },
  status: number,
  code: string,
  mentions: readonly (string | RegExp)[],
): ErrorAnswer {
  expect(answer.status, answer.text).toBe(status);
  const body = JSON.parse(answer.text) as ErrorAnswer;
  expect(body.error.code).toBe(code);
  for (const text of mentions)
    if (typeof text === 'string') expect(body.error.message).toContain(text);
    else expect(body.error.message).toMatch(text);
  expect(stackTraceIn(body)).toBeUndefined();
  expect(answer.text).not.toContain('node:internal');
  return body;
}

function functionResource(name: string, spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 'hearth.dev/v1', kind: 'Function', metadata: { name }, spec };
}

function gatewayResource(name: string, spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 'hearth.dev/v1', kind: 'EventGateway', metadata: { name }, spec };
}

const DEEP = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;

describe('JSON nested 100,000 deep', () => {
  it.each([
    ['PUT', functionApiPath('node-binary')],
    ['PUT', '/api/v1/namespaces/default/gateways/deep'],
    ['POST', '/api/v1/dlq/redrive'],
  ])('%s %s answers 400 naming the depth limit', async (method, path) => {
    const answer = await send(path, method, DEEP);
    const body = expectError(answer, 400, 'HEARTH_E_BAD_REQUEST', ['64 levels']);
    expect(body.error.details).toMatchObject({ limit: 64 });
    expect(answer.text.length).toBeLessThan(1000);
  });

  it('deep values inside a body within the limit are echoed as a short preview', async () => {
    let deep: unknown = 1;
    for (let i = 0; i < 60; i++) deep = [deep];
    const answer = await send('/api/v1/dlq/redrive', 'POST', JSON.stringify({ ids: deep }));
    const body = expectError(answer, 400, 'HEARTH_E_VALIDATION', ['ids']);
    expect(body.error.details?.field).toBe('ids');
  });

  it('a megabyte-long value is not echoed back whole', async () => {
    const answer = await send('/api/v1/dlq/redrive', 'POST', JSON.stringify({ ids: 'x'.repeat(900_000) }));
    const body = expectError(answer, 400, 'HEARTH_E_VALIDATION', ['ids']);
    expect(String(body.error.details?.value).length).toBeLessThanOrEqual(200);
    expect(answer.text.length).toBeLessThan(1000);
  });
});

describe('a hearth.yaml nested 30,000 deep (under the 64 KiB manifest cap)', () => {
  it('is refused with 400 saying so, in our words', async () => {
    const folder = await makeFolder({
      'hearth.yaml': `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: yaml-deep }\nspec: { runtime: node20, env: ${'['.repeat(30_000)}${']'.repeat(30_000)} }\n`,
      'index.mjs': 'export default async () => "ok";\n',
    });
    try {
      const answer = await deployArchive(hearth.url, await packFolder(folder.dir), { name: 'yaml-deep' });
      expectError(answer, 400, 'HEARTH_E_VALIDATION', ['hearth.yaml', 'nested deeper than 64 levels']);
      expect(answer.text).not.toContain('call stack');
    } finally {
      await folder.cleanup();
    }
  });
});

describe('a malformed percent-escape in the path', () => {
  it.each([
    ['name', '/api/v1/namespaces/default/functions/%E0%A4%A'],
    ['namespace', '/api/v1/namespaces/%ZZ/functions/node-binary'],
    ['name', '/api/v1/namespaces/default/gateways/%C3'],
  ])('answers 400 naming the %s', async (field, path) => {
    const answer = await api(hearth.url, path);
    const body = expectError(answer, 400, 'HEARTH_E_BAD_REQUEST', [field, 'percent-encoding']);
    expect(body.error.details).toMatchObject({ field });
  });
});

describe('invalid UTF-8 in a JSON body', () => {
  it('is refused with 400 naming the byte offset, and the function keeps its configuration', async () => {
    const before = await getFunction(hearth.url, 'node-binary');
    const prefix = JSON.stringify(functionResource('node-binary', { runtime: 'node20', env: { A: 'x' } }));
    const at = prefix.indexOf('"x"') + 1;
    const bytes = Buffer.concat([
      Buffer.from(prefix.slice(0, at)),
      Buffer.from([0xff, 0xfe]),
      Buffer.from(prefix.slice(at + 1)),
    ]);
    const answer = await send(functionApiPath('node-binary'), 'PUT', bytes);
    const body = expectError(answer, 400, 'HEARTH_E_BAD_REQUEST', ['UTF-8', `byte ${at}`]);
    expect(body.error.details).toMatchObject({ offset: at });
    expect((await getFunction(hearth.url, 'node-binary'))?.version).toBe(before?.version);
  });

  it.each([
    ['an overlong encoding', [0xc0, 0xaf]],
    ['a UTF-16 surrogate', [0xed, 0xa0, 0x80]],
    ['a truncated sequence', [0xe2, 0x82]],
  ])('%s in a gateway manifest is refused', async (_problem, bad) => {
    const text = JSON.stringify(gatewayResource('utf', { functions: [{ name: 'node-binary' }] }));
    const at = text.indexOf('"utf"') + 1;
    const bytes = Buffer.concat([
      Buffer.from(text.slice(0, at)),
      Buffer.from(bad),
      Buffer.from(text.slice(at)),
    ]);
    const answer = await send('/api/v1/namespaces/default/gateways/utf', 'PUT', bytes);
    expectError(answer, 400, 'HEARTH_E_BAD_REQUEST', [`byte ${at}`]);
    expect((await api(hearth.url, '/api/v1/namespaces/default/gateways/utf')).status).toBe(404);
  });

  it('a function still gets the raw bytes of a body that is not UTF-8', async () => {
    const bytes = Buffer.from([0x7b, 0xff, 0xfe, 0x22, 0x7d]);
    const response = await fetch(`${hearth.url}/function/node-binary`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    expect(response.status).toBe(200);
    expect(Buffer.from(await response.arrayBuffer())).toEqual(Buffer.from(bytes).reverse());
  });
});

describe('an API body over its limit', () => {
  it('gets a 413 about the API limit, not a function maxBody', async () => {
    const manifest = functionResource('node-binary', {
      runtime: 'node20',
      env: { BIG: 'x'.repeat(1_100_000) },
    });
    const answer = await send(functionApiPath('node-binary'), 'PUT', JSON.stringify(manifest));
    const body = expectError(answer, 413, 'HEARTH_E_BODY_TOO_LARGE', ['API', '1MiB']);
    expect(body.error.message).not.toContain('maxBody');
    expect(body.error.details).toMatchObject({ limit: 1024 * 1024 });
  });
});

describe('list query parameters', () => {
  it.each([
    ['before', '/api/v1/invocations?before=zzz'],
    ['before', '/api/v1/dlq?before=zzz'],
    ['after', `${functionApiPath('node-binary')}/logs?after=-5`],
    ['after', `${functionApiPath('node-binary')}/logs?after=`],
    ['limit', '/api/v1/invocations?limit=0'],
    ['limit', '/api/v1/invocations?limit=0x10'],
    ['limit', `${functionApiPath('node-binary')}/logs?limit=1e3`],
    ['namespace', '/api/v1/functions?namespace=Not_A_Label'],
    ['namespace', '/api/v1/gateways?namespace=%20'],
    ['function', '/api/v1/dlq?function=../x'],
  ])('a bad ?%s answers 400 naming it', async (parameter, path) => {
    const answer = await api(hearth.url, path);
    const body = expectError(answer, 400, 'HEARTH_E_VALIDATION', [parameter]);
    expect(body.error.details?.field).toBe(parameter);
  });

  it('a cursor that is a listed invocation is accepted', async () => {
    const accepted = await fetch(`${hearth.url}/async-function/node-binary`, { method: 'POST', body: 'a' });
    expect(accepted.status).toBe(202);
    const id = accepted.headers.get('x-hearth-invocation-id') ?? '';
    const answer = await api<{ items: unknown[] }>(
      hearth.url,
      `/api/v1/invocations?function=node-binary&before=${id}`,
    );
    expect(answer.status, answer.text).toBe(200);
    expect(answer.body.items).toEqual([]);
  });
});

describe('validation messages', () => {
  it('name the bad key of a map and what a key must be, in our words', async () => {
    const answer = await api(hearth.url, functionApiPath('node-binary'), {
      method: 'PUT',
      json: functionResource('node-binary', { runtime: 'node20', env: { 'BAD-KEY': 'x' } }),
    });
    const body = expectError(answer, 400, 'HEARTH_E_VALIDATION', [
      'spec.env',
      '"BAD-KEY"',
      'environment variable name',
    ]);
    expect(body.error.message).not.toMatch(/Invalid key|in record/);
  });

  it('say "an object", not "a object"', async () => {
    const answer = await api(hearth.url, functionApiPath('node-binary'), {
      method: 'PUT',
      json: functionResource('node-binary', { runtime: 'node20', limits: 'lots' }),
    });
    const body = expectError(answer, 400, 'HEARTH_E_VALIDATION', ['spec.limits', 'expected an object']);
    expect(answer.text).not.toMatch(/a object|a array|a record|Invalid input/);
    expect(body.error.details?.field).toBe('spec.limits');
  });

  it('refuse an EventGateway route path with ".." segments', async () => {
    for (const path of ['/shop/../admin', '/shop/%2e%2e/admin', '/shop/./x']) {
      const answer = await api(hearth.url, '/api/v1/namespaces/default/gateways/dots', {
        method: 'PUT',
        json: gatewayResource('dots', { functions: [{ name: 'node-binary', match: { path } }] }),
      });
      expectError(answer, 400, 'HEARTH_E_VALIDATION', ['spec.functions.0.match.path', 'segments']);
    }
    expect((await api(hearth.url, '/api/v1/namespaces/default/gateways/dots')).status).toBe(404);
  });
});

describe('an EventGateway http.port already in use', () => {
  let squatter: Server;
  let port: number;

  beforeAll(async () => {
    squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    port = (squatter.address() as { port: number }).port;
  });

  afterAll(async () => {
    await new Promise((resolve) => squatter.close(resolve));
  });

  it('is refused, naming the port, and nothing is configured', async () => {
    const answer = await api(hearth.url, '/api/v1/namespaces/default/gateways/taken', {
      method: 'PUT',
      json: gatewayResource('taken', {
        protocols: [{ http: { port } }],
        functions: [{ name: 'node-binary', match: { path: '/taken' } }],
      }),
    });
    expectError(answer, 409, 'HEARTH_E_CONFLICT', [String(port), 'in use']);
    expect((await api(hearth.url, '/api/v1/namespaces/default/gateways/taken')).status).toBe(404);
    expect((await fetch(`${hearth.url}/taken`)).status).toBe(404);
  });

  it('in a multi-document apply, refuses the whole file, naming the document and the port', async () => {
    const answer = await api(hearth.url, '/api/v1/apply', {
      method: 'POST',
      json: {
        documents: [
          {
            manifest: gatewayResource('free-one', {
              functions: [{ name: 'node-binary', match: { path: '/free-one' } }],
            }),
          },
          {
            manifest: gatewayResource('taken-two', {
              protocols: [{ http: { port } }],
              functions: [{ name: 'node-binary', match: { path: '/taken-two' } }],
            }),
          },
        ],
      },
    });
    expectError(answer, 409, 'HEARTH_E_CONFLICT', ['documents.1', 'taken-two', String(port), 'in use']);
    for (const name of ['free-one', 'taken-two'])
      expect((await api(hearth.url, `/api/v1/namespaces/default/gateways/${name}`)).status).toBe(404);
    expect((await fetch(`${hearth.url}/free-one`)).status).toBe(404);
  });

  it('a gateway moved onto a taken port keeps its old port and routes', async () => {
    const first = await api(hearth.url, '/api/v1/namespaces/default/gateways/mover', {
      method: 'PUT',
      json: gatewayResource('mover', { functions: [{ name: 'node-binary', match: { path: '/mover' } }] }),
    });
    expect(first.status, first.text).toBe(200);
    const moved = await api(hearth.url, '/api/v1/namespaces/default/gateways/mover', {
      method: 'PUT',
      json: gatewayResource('mover', {
        protocols: [{ http: { port } }],
        functions: [{ name: 'node-binary', match: { path: '/moved' } }],
      }),
    });
    expectError(moved, 409, 'HEARTH_E_CONFLICT', [String(port)]);
    const detail = await api<{ manifest: { spec: { protocols?: unknown } } }>(
      hearth.url,
      '/api/v1/namespaces/default/gateways/mover',
    );
    expect(detail.body.manifest.spec.protocols).toBeUndefined();
    expect((await fetch(`${hearth.url}/mover`, { method: 'POST', body: 'ab' })).status).toBe(200);
    expect(
      (await api(hearth.url, '/api/v1/namespaces/default/gateways/mover', { method: 'DELETE' })).status,
    ).toBe(200);
  });
});

describe('a client that disconnects mid-body', () => {
  /** Sends a head announcing `declared` bytes, then `sent` of them, then hangs up. */
  async function hangUp(path: string, method: string, declared: number, sent: number): Promise<void> {
    const socket = connect(hearth.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(
      `${method} ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${declared}\r\n\r\n`,
    );
    socket.write('x'.repeat(sent));
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.destroy();
  }

  async function closedCount(surface: string): Promise<number> {
    const text = await (await fetch(`${hearth.url}/metrics`)).text();
    const match = new RegExp(`^hearth_client_closed_total\\{surface="${surface}"\\} (\\d+)$`, 'm').exec(text);
    return Number(match?.[1] ?? 0);
  }

  it.each([
    ['api', 'PUT', '/api/v1/namespaces/default/gateways/gone', 1000],
    ['api', 'POST', '/api/v1/dlq/redrive', 1000],
    ['function', 'POST', '/function/node-binary', 1000],
    ['function', 'POST', '/function/node-binary', 500_000],
    ['async', 'POST', '/async-function/node-binary', 500_000],
  ])(
    'on the %s (%s %s, %i bytes) is counted, not logged as an error',
    async (surface, method, path, size) => {
      const before = await closedCount(surface);
      await hangUp(path, method, size, 10);
      await eventually(`hearth_client_closed_total{surface="${surface}"} to grow`, async () =>
        (await closedCount(surface)) > before ? true : undefined,
      );
      expect(errorLogLines()).toEqual([]);
    },
  );
});
