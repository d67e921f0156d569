/**
 * @module End-to-end: other platforms' handler conventions (issue 18). The conformance table sends the same
 * request through every convention, in Node and Python, sandboxed, and expects the same answer; the rest
 * covers what a table cannot: streaming, waitUntil, Lambda's full context, classic templates, CloudEvents.
 */

import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deployFolder,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

/** Every handler answers the request with these, each in its own platform's way. */
const HEADERS_JS = `{ 'content-type': 'application/json', 'x-convention': 'same' }`;
const HEADERS_PY = `{"content-type": "application/json", "x-convention": "same"}`;
const ANSWER = { method: 'POST', path: '/items/7', color: 'red', tag: 'a', n: 1 };
const PY_DUMPS = `json.dumps({"method": method, "path": path, "color": color, "tag": tag, "n": n}, separators=(",", ":"))`;

const node = (
  name: string,
  eventFormat: string | undefined,
  file: string,
  code: string,
  handler = 'index.handler',
): [string, Record<string, string>] => [
  name,
  {
    'hearth.yaml': manifest(
      name,
      `{ runtime: node20, handler: ${handler}${eventFormat === undefined ? '' : `, eventFormat: ${eventFormat}`} }`,
    ),
    [file]: code,
  },
];
const python = (
  name: string,
  eventFormat: string | undefined,
  code: string,
  handler = 'main.handler',
): [string, Record<string, string>] => [
  name,
  {
    'hearth.yaml': manifest(
      name,
      `{ runtime: python3, handler: ${handler}${eventFormat === undefined ? '' : `, eventFormat: ${eventFormat}`} }`,
    ),
    'main.py': `import json\n\n${code}`,
  },
];

/** [name, folder, the convention describe should show]. */
const TABLE: [string, Record<string, string>, string][] = [
  [
    ...node(
      't-hearth-node',
      undefined,
      'index.mjs',
      `export default async (event) => ({
  statusCode: 201,
  headers: ${HEADERS_JS},
  body: JSON.stringify({ method: event.method, path: event.path, color: event.query.color, tag: event.headers['x-tag'], n: event.body.n }),
});
`,
      'index',
    ),
    'hearth',
  ],
  [
    ...node(
      't-lambda-v2-node',
      undefined,
      'index.js',
      `exports.handler = async (event) => ({
  statusCode: 201,
  headers: ${HEADERS_JS},
  body: JSON.stringify({ method: event.requestContext.http.method, path: event.rawPath, color: event.queryStringParameters.color, tag: event.headers['x-tag'], n: JSON.parse(event.body).n }),
});
`,
    ),
    'lambda-v2',
  ],
  [
    ...node(
      't-lambda-v1-node',
      'lambda-v1',
      'index.js',
      `exports.handler = async (event) => {
  const tag = Object.entries(event.headers).find(([name]) => name.toLowerCase() === 'x-tag')[1];
  return {
    statusCode: 201,
    headers: ${HEADERS_JS},
    body: JSON.stringify({ method: event.httpMethod, path: event.path, color: event.queryStringParameters.color, tag, n: JSON.parse(event.body).n }),
  };
};
`,
    ),
    'lambda-v1',
  ],
  [
    ...node(
      't-lambda-alb-node',
      'lambda-alb',
      'index.js',
      `exports.handler = async (event) => ({
  statusCode: 201,
  statusDescription: '201 Created',
  headers: ${HEADERS_JS},
  body: JSON.stringify({ method: event.httpMethod, path: event.path, color: event.queryStringParameters.color, tag: event.headers['x-tag'], n: JSON.parse(event.body).n }),
  isBase64Encoded: false,
});
`,
    ),
    'lambda-alb',
  ],
  [
    ...node(
      't-lambda-stream-node',
      undefined,
      'index.mjs',
      `export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
  const stream = awslambda.HttpResponseStream.from(responseStream, { statusCode: 201, headers: ${HEADERS_JS} });
  stream.write(JSON.stringify({ method: event.requestContext.http.method, path: event.rawPath, color: event.queryStringParameters.color, tag: event.headers['x-tag'], n: JSON.parse(event.body).n }));
  stream.end();
});
`,
    ),
    'lambda-stream',
  ],
  [
    ...node(
      't-web-node',
      'netlify-v2',
      'index.mjs',
      `export default async (req, context) => {
  const url = new URL(req.url);
  const { n } = await req.json();
  return new Response(JSON.stringify({ method: req.method, path: url.pathname, color: url.searchParams.get('color'), tag: req.headers.get('x-tag'), n }), {
    status: 201,
    headers: ${HEADERS_JS},
  });
};
export const config = { path: '/items/*' };
`,
      'index',
    ),
    'web',
  ],
  [
    ...node(
      't-workers-node',
      undefined,
      'index.mjs',
      `export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const { n } = await request.json();
    return Response.json({ method: request.method, path: url.pathname, color: url.searchParams.get('color'), tag: request.headers.get('x-tag'), n }, {
      status: 201,
      headers: { 'x-convention': 'same' },
    });
  },
};
`,
      'index',
    ),
    'workers',
  ],
  [
    ...node(
      't-openfaas-node',
      'openfaas',
      'handler.js',
      `'use strict';
module.exports = async (event, context) => {
  const result = { method: event.method, path: event.path, color: event.query.color, tag: event.headers['x-tag'], n: event.body.n };
  return context.status(201).headers(${HEADERS_JS}).succeed(result);
};
`,
      'handler',
    ),
    'openfaas',
  ],
  [
    ...node(
      't-gcf-node',
      undefined,
      'index.js',
      `const functions = require('@google-cloud/functions-framework');
functions.http('conformance', (req, res) => {
  res.status(201).set(${HEADERS_JS});
  res.send(JSON.stringify({ method: req.method, path: req.path, color: req.query.color, tag: req.get('X-Tag'), n: req.body.n }));
});
`,
      'index.conformance',
    ),
    'gcf',
  ],
  [
    ...node(
      't-fission-node',
      'fission',
      'hello.js',
      `module.exports = async function (context) {
  const req = context.request;
  return {
    status: 201,
    headers: ${HEADERS_JS},
    body: JSON.stringify({ method: req.method, path: req.path, color: req.query.color, tag: req.headers['x-tag'], n: req.body.n }),
  };
};
`,
      'hello',
    ),
    'fission',
  ],
  [
    ...node(
      't-netlify-node',
      'netlify',
      'index.js',
      `exports.handler = async (event, context) => ({
  statusCode: 201,
  headers: ${HEADERS_JS},
  body: JSON.stringify({ method: event.httpMethod, path: event.path, color: event.queryStringParameters.color, tag: event.headers['x-tag'], n: JSON.parse(event.body).n }),
});
`,
    ),
    'netlify',
  ],
  [
    ...python(
      't-hearth-py',
      undefined,
      `def handler(event, context):
    method, path, color, tag, n = event["method"], event["path"], event["query"]["color"], event["headers"]["x-tag"], event["body"]["n"]
    return {"statusCode": 201, "headers": ${HEADERS_PY}, "body": ${PY_DUMPS}}
`,
    ),
    'hearth',
  ],
  [
    ...python(
      't-lambda-v2-py',
      'lambda',
      `def handler(event, context):
    method, path, color = event["requestContext"]["http"]["method"], event["rawPath"], event["queryStringParameters"]["color"]
    tag, n = event["headers"]["x-tag"], json.loads(event["body"])["n"]
    return {"statusCode": 201, "headers": ${HEADERS_PY}, "body": ${PY_DUMPS}}
`,
    ),
    'lambda-v2',
  ],
  [
    ...python(
      't-lambda-v1-py',
      'lambda-v1',
      `def handler(event, context):
    method, path, color = event["httpMethod"], event["path"], event["queryStringParameters"]["color"]
    tag = next(v for k, v in event["headers"].items() if k.lower() == "x-tag")
    n = json.loads(event["body"])["n"]
    return {"statusCode": 201, "headers": ${HEADERS_PY}, "body": ${PY_DUMPS}}
`,
    ),
    'lambda-v1',
  ],
  [
    ...python(
      't-lambda-alb-py',
      'lambda-alb',
      `def handler(event, context):
    method, path, color = event["httpMethod"], event["path"], event["queryStringParameters"]["color"]
    tag, n = event["headers"]["x-tag"], json.loads(event["body"])["n"]
    return {"statusCode": 201, "statusDescription": "201 Created", "headers": ${HEADERS_PY}, "body": ${PY_DUMPS}, "isBase64Encoded": False}
`,
    ),
    'lambda-alb',
  ],
  [
    ...python(
      't-openfaas-py',
      'openfaas',
      `def handle(event, context):
    method, path, color, tag = event.method, event.path, event.query["color"], event.headers.get("X-Tag")
    n = json.loads(event.body)["n"]
    return {"statusCode": 201, "body": ${PY_DUMPS}, "headers": ${HEADERS_PY}}
`,
      'main.handle',
    ),
    'openfaas',
  ],
  [
    ...python(
      't-gcf-py',
      undefined,
      `import functions_framework


@functions_framework.http
def conformance(request):
    method, path, color, tag = request.method, request.path, request.args.get("color"), request.headers.get("X-Tag")
    n = request.get_json()["n"]
    return ${PY_DUMPS}, 201, ${HEADERS_PY}
`,
      'main.conformance',
    ),
    'gcf',
  ],
  [
    ...python(
      't-fission-py',
      'fission',
      `from flask import request


def main():
    method, path, color, tag = request.method, request.path, request.args.get("color"), request.headers.get("X-Tag")
    n = request.get_json()["n"]
    return ${PY_DUMPS}, 201, ${HEADERS_PY}
`,
      'main.main',
    ),
    'fission',
  ],
  [
    ...python(
      't-netlify-py',
      'netlify',
      `def handler(event, context):
    method, path, color = event["httpMethod"], event["path"], event["queryStringParameters"]["color"]
    tag, n = event["headers"]["x-tag"], json.loads(event["body"])["n"]
    return {"statusCode": 201, "headers": ${HEADERS_PY}, "body": ${PY_DUMPS}}
`,
    ),
    'netlify',
  ],
];

const OTHERS: [string, Record<string, string>][] = [
  node(
    'stream-node',
    undefined,
    'index.mjs',
    `export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.setContentType('text/plain');
  responseStream.write('first\\n');
  await new Promise((resolve) => setTimeout(resolve, 700));
  responseStream.write('second\\n');
  responseStream.end();
});
`,
  ),
  node(
    'stream-web-node',
    undefined,
    'index.mjs',
    `export default async () => {
  const body = new ReadableStream({
    async start(controller) {
      controller.enqueue(new TextEncoder().encode('first\\n'));
      await new Promise((resolve) => setTimeout(resolve, 700));
      controller.enqueue(new TextEncoder().encode('second\\n'));
      controller.close();
    },
  });
  return new Response(body, { headers: { 'content-type': 'text/plain' } });
};
`,
    'index',
  ),
  node(
    'invoke-stream-node',
    undefined,
    'index.mjs',
    `export default async (event, ctx) => (await ctx.invoke('stream-node')).body;
`,
    'index',
  ),
  node(
    'stream-gcf-node',
    'gcf',
    'index.js',
    `exports.progress = async (req, res) => {
  res.set('content-type', 'text/plain');
  res.write('first\\n');
  await new Promise((resolve) => setTimeout(resolve, 700));
  res.end('second\\n');
};
`,
    'index.progress',
  ),
  node(
    'stream-direct-node',
    'lambda-direct',
    'index.mjs',
    `export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.end(JSON.stringify({ got: event }));
});
`,
  ),
  node(
    'stream-fail-node',
    undefined,
    'index.mjs',
    `export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('partial\\n');
  throw new Error('broke part way');
});
`,
  ),
  node(
    'wait-until-node',
    'web',
    'index.mjs',
    `let finished = 0;
export default async (request, context) => {
  if (new URL(request.url).searchParams.has('check')) return new Response(String(finished));
  context.waitUntil(new Promise((resolve) => setTimeout(resolve, 300)).then(() => { finished += 1; }));
  return new Response(\`answered before the work: \${finished}\`);
};
`,
    'index',
  ),
  node(
    'vercel-node',
    'web',
    'route.mjs',
    `export function GET(request) {
  return Response.json({ query: new URL(request.url).searchParams.get('q') });
}
export async function POST(request) {
  return new Response(await request.text(), { status: 201 });
}
`,
    'route',
  ),
  node(
    'context-node',
    'lambda-direct',
    'index.js',
    `exports.handler = function (event, context) {
  setTimeout(() => context.succeed({
    awsRequestId: context.awsRequestId,
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    memoryLimitInMB: context.memoryLimitInMB,
    invokedFunctionArn: context.invokedFunctionArn,
    remaining: context.getRemainingTimeInMillis() > 0,
    callbackWaitsForEmptyEventLoop: context.callbackWaitsForEmptyEventLoop,
    env: [process.env.AWS_LAMBDA_FUNCTION_NAME, process.env._HANDLER, process.env.AWS_REGION, process.env.AWS_EXECUTION_ENV],
  }), 5);
};
`,
  ),
  node(
    'fail-node',
    'lambda-direct',
    'index.js',
    `exports.handler = (event, context) => context.fail(new TypeError('no good'));
`,
  ),
  python(
    'context-py',
    'lambda-direct',
    `import os


def handler(event, context):
    return {
        "awsRequestId": context.aws_request_id,
        "functionName": context.function_name,
        "functionVersion": context.function_version,
        "memoryLimitInMB": context.memory_limit_in_mb,
        "invokedFunctionArn": context.invoked_function_arn,
        "remaining": context.get_remaining_time_in_millis() > 0,
        "logGroupName": context.log_group_name,
        "env": [os.environ["AWS_LAMBDA_FUNCTION_NAME"], os.environ["_HANDLER"], os.environ["AWS_REGION"], os.environ["AWS_EXECUTION_ENV"][:18]],
    }
`,
  ),
  node(
    'classic-node',
    'openfaas-classic',
    'handler.js',
    `"use strict"
module.exports = (context, callback) => {
  callback(undefined, { status: "done", got: context });
};
`,
    'handler',
  ),
  python(
    'classic-py',
    'openfaas-classic',
    `def handle(req):
    return "got " + req
`,
    'main.handle',
  ),
  python(
    'flask-tmpl-py',
    'openfaas',
    `def handle(req):
    return req.upper()
`,
    'main.handle',
  ),
  node(
    'cloudevent-node',
    undefined,
    'index.mjs',
    `import functions from '@google-cloud/functions-framework';
functions.cloudEvent('onEvent', (cloudEvent) => ({ type: cloudEvent.type, source: cloudEvent.source, data: cloudEvent.data }));
`,
    'index.onEvent',
  ),
  python(
    'cloudevent-py',
    undefined,
    `import functions_framework


@functions_framework.cloud_event
def on_event(cloud_event):
    if cloud_event["type"] != "com.example.test" or cloud_event.data != {"x": 1}:
        raise ValueError(f"unexpected event {dict(cloud_event)}")
`,
    'main.on_event',
  ),
  node(
    'gcf-express-node',
    'gcf',
    'index.js',
    `exports.helloHttp = (req, res) => {
  res.json({ name: req.body.name ?? req.query.name ?? 'World', form: typeof req.body });
};
`,
    'index.helloHttp',
  ),
  python(
    'gcf-plain-py',
    'gcf',
    `def hello_http(request):
    request_json = request.get_json(silent=True)
    name = (request_json or {}).get("name") or request.args.get("name") or "World"
    return f"Hello {name}!"
`,
    'main.hello_http',
  ),
  node(
    'v1-nulls-node',
    'lambda-v1',
    'index.js',
    `exports.handler = async (event) => ({
  statusCode: 200,
  body: JSON.stringify({ identity: event.requestContext.identity, pathParameters: event.pathParameters, stageVariables: event.stageVariables, queryStringParameters: event.queryStringParameters, multiValueQueryStringParameters: event.multiValueQueryStringParameters, body: event.body }),
});
`,
  ),
  python(
    'v1-nulls-py',
    'lambda-v1',
    `def handler(event, context):
    keys = ("pathParameters", "stageVariables", "queryStringParameters", "multiValueQueryStringParameters", "body")
    return {"identity": event["requestContext"]["identity"], **{key: event[key] for key in keys}}
`,
  ),
  [
    'gcf-installed-node',
    {
      'hearth.yaml': manifest('gcf-installed-node', '{ runtime: node20, handler: index.hello }'),
      'package.json': JSON.stringify({
        name: 'gcf-installed',
        dependencies: { '@google-cloud/functions-framework': '^5.0.0' },
      }),
      'index.js': `const functions = require('@google-cloud/functions-framework');
functions.http('hello', (req, res) => res.send(\`installed \${typeof functions.cloudEvent} \${req.query.name}\`));
`,
    },
  ],
  [
    'fission-flask-py',
    {
      'hearth.yaml': manifest(
        'fission-flask-py',
        '{ runtime: python3, handler: main.main, eventFormat: fission }',
      ),
      'requirements.txt': 'flask\n',
      'main.py': `from flask import jsonify, request


def main():
    return jsonify(name=request.args.get("name"), real=type(request).__module__ != "hearth_adapters"), 202
`,
    },
  ],
  node(
    'netlify-empty-node',
    'netlify',
    'index.js',
    `exports.handler = async (event) => ({
  statusCode: 200,
  body: JSON.stringify({ q: event.queryStringParameters, mq: event.multiValueQueryStringParameters }),
});
`,
  ),
];

let hearth: Hearth;
const folders: TempFolder[] = [];

beforeAll(async () => {
  hearth = await startHearth();
  for (const [name, files] of [...TABLE.map(([n, f]) => [n, f] as const), ...OTHERS]) {
    const folder = await makeFolder(files);
    folders.push(folder);
    const deployed = await deployFolder(hearth.url, folder.dir, { name });
    expect(deployed.status, `deploy ${name}: ${JSON.stringify(deployed.body)}`).toBe(200);
  }
}, 300_000);

afterAll(async () => {
  await hearth?.stop();
  for (const folder of folders) await folder.cleanup();
});

describe('conformance: the same request through every convention gets the same answer', () => {
  it.each(TABLE.map(([name, , convention]) => [name, convention]))('%s (%s)', async (name, convention) => {
    const response = await invoke(hearth.url, name, {
      method: 'POST',
      path: '/items/7?color=red&size=m',
      headers: { 'content-type': 'application/json', 'x-tag': 'a' },
      body: '{"n":1}',
    });
    expect(response.status, response.text).toBe(201);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(response.headers.get('x-convention')).toBe('same');
    expect(response.json()).toEqual(ANSWER);
    const described = await runCli(['describe', name], { url: hearth.url });
    expect(described.stdout).toMatch(new RegExp(`^Events: +.*${convention}`, 'm'));
  });
});

/** The body's chunks as the client receives them. */
function chunksOf(
  path: string,
  chunkedBody?: string,
): Promise<{ status: number; headers: Record<string, unknown>; chunks: string[]; error?: Error }> {
  return new Promise((resolve) => {
    const chunks: string[] = [];
    const method = chunkedBody === undefined ? 'GET' : 'POST';
    const req = httpRequest(`${hearth.url}${path}`, { method }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, chunks }));
      res.on('error', (error) =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, chunks, error }),
      );
    });
    // A chunked request body is not the fast front's: node:http serves it.
    if (chunkedBody !== undefined) req.write(chunkedBody);
    req.end();
  });
}

describe('response streaming', () => {
  it.each(['stream-node', 'stream-web-node', 'stream-gcf-node'])(
    '%s: the first chunk reaches the client before the function writes the second',
    async (name) => {
      const answer = await chunksOf(`/function/${name}`);
      expect(answer.status).toBe(200);
      expect(answer.headers['transfer-encoding']).toBe('chunked');
      expect(answer.headers['content-type']).toBe('text/plain');
      expect(answer.chunks[0]).toBe('first\n');
      expect(answer.chunks.join('')).toBe('first\nsecond\n');
    },
  );

  it('streams through node:http too (a request with a chunked body)', async () => {
    const answer = await chunksOf('/function/stream-node', 'some body');
    expect(answer.status).toBe(200);
    expect(answer.headers['transfer-encoding']).toBe('chunked');
    expect(answer.chunks[0]).toBe('first\n');
    expect(answer.chunks.join('')).toBe('first\nsecond\n');
  });

  it("a streamified handler under lambda-direct gets the direct event (InvokeWithResponseStream's shape)", async () => {
    const response = await invoke(hearth.url, 'stream-direct-node', { method: 'POST', body: '{"a":1}' });
    expect(response.status, response.text).toBe(200);
    expect(response.headers.get('transfer-encoding')).toBe('chunked');
    expect(response.json()).toEqual({ got: { a: 1 } });
  });

  it('ctx.invoke of a streaming function gets its whole body', async () => {
    const response = await invoke(hearth.url, 'invoke-stream-node');
    expect(response.status, response.text).toBe(200);
    expect(response.text).toBe('first\nsecond\n');
  });

  it('a stream the function breaks part way ends without its last chunk', async () => {
    const answer = await chunksOf('/function/stream-fail-node');
    expect(answer.status).toBe(200);
    expect(answer.chunks.join('')).toBe('partial\n');
    expect(answer.error).toBeDefined();
  });
});

describe('web standard', () => {
  it('ctx.waitUntil work runs after the response', async () => {
    const first = await invoke(hearth.url, 'wait-until-node');
    expect(first.text).toBe('answered before the work: 0');
    let finished = '0';
    for (let i = 0; i < 50 && finished === '0'; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      finished = (await invoke(hearth.url, 'wait-until-node', { path: '?check' })).text;
    }
    expect(finished).toBe('1');
  });
});

describe('web standard: method exports (Vercel)', () => {
  it('GET and POST go to their exports; another method is 405 with Allow', async () => {
    expect((await invoke(hearth.url, 'vercel-node', { path: '?q=x' })).json()).toEqual({ query: 'x' });
    const posted = await invoke(hearth.url, 'vercel-node', { method: 'POST', body: 'hello' });
    expect([posted.status, posted.text]).toEqual([201, 'hello']);
    const deleted = await invoke(hearth.url, 'vercel-node', { method: 'DELETE' });
    expect(deleted.status).toBe(405);
    expect(deleted.headers.get('allow')).toBe('GET, POST');
  });
});

describe("AWS Lambda's context and environment", () => {
  it('Node: every context field, context.succeed, and Lambda environment variables', async () => {
    const response = await invoke(hearth.url, 'context-node', { method: 'POST', body: '{}' });
    expect(response.status, response.text).toBe(200);
    expect(response.json()).toEqual({
      awsRequestId: response.headers.get('x-hearth-invocation-id'),
      functionName: 'context-node',
      functionVersion: '1',
      memoryLimitInMB: '128',
      invokedFunctionArn: 'arn:hearth:function:default:context-node:1',
      remaining: true,
      callbackWaitsForEmptyEventLoop: true,
      env: ['context-node', 'index.handler', 'us-east-1', 'AWS_Lambda_nodejs20.x'],
    });
  });

  it("Node: context.fail answers in Lambda's error shape", async () => {
    const response = await invoke(hearth.url, 'fail-node', { method: 'POST', body: '{}' });
    expect(response.status).toBe(500);
    expect(response.headers.get('x-amz-function-error')).toBe('Unhandled');
    expect(response.json()).toMatchObject({ errorType: 'TypeError', errorMessage: 'no good' });
  });

  it('Python: the context object and Lambda environment variables', async () => {
    const response = await invoke(hearth.url, 'context-py', { method: 'POST', body: '{}' });
    expect(response.status, response.text).toBe(200);
    expect(response.json()).toEqual({
      awsRequestId: response.headers.get('x-hearth-invocation-id'),
      functionName: 'context-py',
      functionVersion: '1',
      memoryLimitInMB: '128',
      invokedFunctionArn: 'arn:hearth:function:default:context-py:1',
      remaining: true,
      logGroupName: '/hearth/default/context-py',
      env: ['context-py', 'main.handler', 'us-east-1', 'AWS_Lambda_python3'],
    });
  });
});

describe('OpenFaaS classic templates', () => {
  it('Node (context, callback): the body as text, an object answered as JSON', async () => {
    const response = await invoke(hearth.url, 'classic-node', { method: 'POST', body: 'hello' });
    expect(response.status, response.text).toBe(200);
    expect(response.json()).toEqual({ status: 'done', got: 'hello' });
  });

  it.each(['classic-py', 'flask-tmpl-py'])('Python %s: handle(req) gets the body as text', async (name) => {
    const response = await invoke(hearth.url, name, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"a":1}',
    });
    expect(response.status, response.text).toBe(200);
    expect(response.text).toBe(name === 'classic-py' ? 'got {"a":1}' : '{"A":1}');
  });
});

describe('Google Cloud Functions', () => {
  const binaryEvent = {
    'ce-specversion': '1.0',
    'ce-id': 'e-1',
    'ce-source': '//test',
    'ce-type': 'com.example.test',
    'content-type': 'application/json',
  };

  it('Node functions.cloudEvent (ESM import of the framework, not installed) gets the CloudEvent', async () => {
    const response = await invoke(hearth.url, 'cloudevent-node', {
      method: 'POST',
      headers: binaryEvent,
      body: '{"x":1}',
    });
    expect(response.status, response.text).toBe(200);
    expect(response.json()).toEqual({ type: 'com.example.test', source: '//test', data: { x: 1 } });
  });

  it('Python @functions_framework.cloud_event gets the CloudEvent and answers OK', async () => {
    const response = await invoke(hearth.url, 'cloudevent-py', {
      method: 'POST',
      headers: binaryEvent,
      body: '{"x":1}',
    });
    expect(response.status, response.text).toBe(200);
    expect(response.text).toBe('OK');
  });

  it('Node (req, res): req.body parsed by content type, res.json', async () => {
    const json = await invoke(hearth.url, 'gcf-express-node', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"name":"Ada"}',
    });
    expect(json.json()).toEqual({ name: 'Ada', form: 'object' });
    expect(json.headers.get('content-type')).toBe('application/json; charset=utf-8');
    const form = await invoke(hearth.url, 'gcf-express-node', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'name=Bob',
    });
    expect(form.json()).toEqual({ name: 'Bob', form: 'object' });
    expect((await invoke(hearth.url, 'gcf-express-node', { path: '?name=Cy' })).json()).toEqual({
      name: 'Cy',
      form: 'object',
    });
  });

  it('Node functions.http with the package installed registers in the real framework and runs', async () => {
    const response = await invoke(hearth.url, 'gcf-installed-node', { path: '?name=Ada' });
    expect(response.status, response.text).toBe(200);
    expect(response.text).toBe('installed function Ada');
    const described = await runCli(['describe', 'gcf-installed-node'], { url: hearth.url });
    expect(described.stdout).toMatch(/^Events: +auto \(in force: gcf\)$/m);
  });

  it('Python def fn(request): get_json(silent=True), args, text answered as HTML', async () => {
    const response = await invoke(hearth.url, 'gcf-plain-py', { path: '?name=Ada' });
    expect(response.status, response.text).toBe(200);
    expect(response.text).toBe('Hello Ada!');
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
  });
});

describe.each(['v1-nulls-node', 'v1-nulls-py'])('API Gateway REST v1 (%s)', (name) => {
  it("has AWS's nulls: identity fields without IAM or Cognito, no path parameters, stage variables, query or body", async () => {
    const response = await invoke(hearth.url, name, { headers: { 'user-agent': 'hearth-test' } });
    expect(response.status, response.text).toBe(200);
    expect(response.json()).toEqual({
      identity: {
        cognitoIdentityPoolId: null,
        accountId: null,
        cognitoIdentityId: null,
        caller: null,
        sourceIp: expect.any(String),
        principalOrgId: null,
        accessKey: null,
        cognitoAuthenticationType: null,
        cognitoAuthenticationProvider: null,
        userArn: null,
        userAgent: 'hearth-test',
        user: null,
      },
      pathParameters: null,
      stageVariables: null,
      queryStringParameters: null,
      multiValueQueryStringParameters: null,
      body: null,
    });
  });
});

describe('Fission', () => {
  it('Python main() with Flask installed reads the real flask.request', async () => {
    const response = await invoke(hearth.url, 'fission-flask-py', { path: '?name=Ada' });
    expect(response.status, response.text).toBe(202);
    expect(response.json()).toEqual({ name: 'Ada', real: true });
    expect(response.headers.get('content-type')).toBe('application/json');
  });
});

describe('Netlify v1', () => {
  it('queryStringParameters and multiValueQueryStringParameters are {} without a query', async () => {
    const response = await invoke(hearth.url, 'netlify-empty-node');
    expect(response.json()).toEqual({ q: {}, mq: {} });
  });
});
