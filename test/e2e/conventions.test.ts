/**
 * @module End-to-end: Lambda's event conventions (`spec.eventFormat`), with handlers written the way
 * Lambda's documentation shows them, in Node and Python: API Gateway REST (v1) proxy events, HTTP API (v2)
 * events, and direct invocation (the JSON body is the event, errors in Lambda's shape).
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deployFolder,
  getFunction,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { exchange } from '../support/raw-http.js';

const NODE_V1 = `// API Gateway REST API proxy integration (payload 1.0).
exports.handler = async (event, context) => {
  return {
    statusCode: 200,
    headers: { 'Content-Type': 'application/json' },
    multiValueHeaders: { 'Set-Cookie': ['a=1', 'b=2'] },
    body: JSON.stringify({
      resource: event.resource,
      path: event.path,
      httpMethod: event.httpMethod,
      queryStringParameters: event.queryStringParameters,
      multiValueQueryStringParameters: event.multiValueQueryStringParameters,
      pathParameters: event.pathParameters,
      stageVariables: event.stageVariables,
      tag: event.headers['X-Tag'] ?? null,
      tags: event.multiValueHeaders['X-Tag'] ?? null,
      sameRequest: event.requestContext.requestId === context.awsRequestId,
      requestMethod: event.requestContext.httpMethod,
      body: event.body,
      isBase64Encoded: event.isBase64Encoded,
    }),
  };
};
`;

const PY_V1 = `import json


def lambda_handler(event, context):
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": json.dumps({
            "resource": event["resource"],
            "path": event["path"],
            "httpMethod": event["httpMethod"],
            "queryStringParameters": event["queryStringParameters"],
            "multiValueQueryStringParameters": event["multiValueQueryStringParameters"],
            "pathParameters": event["pathParameters"],
            "stageVariables": event["stageVariables"],
            "tag": event["headers"].get("X-Tag"),
            "tags": event["multiValueHeaders"].get("X-Tag"),
            "sameRequest": event["requestContext"]["requestId"] == context.aws_request_id,
            "requestMethod": event["requestContext"]["httpMethod"],
            "body": event["body"],
            "isBase64Encoded": event["isBase64Encoded"],
        }),
    }
`;

const NODE_DIRECT = `export const handler = async (event) => {
  if (event.fail) throw new RangeError(\`cannot add: \${event.fail}\`);
  return { sum: event.a + (event.b ?? 0) };
};
`;

const PY_DIRECT = `def lambda_handler(event, context):
    if event.get("fail"):
        raise ValueError(f"cannot add: {event['fail']}")
    return {"sum": event["a"] + event.get("b", 0)}
`;

const PY_V2 = `def lambda_handler(event, context):
    return {
        "statusCode": 200,
        "body": f'{event["requestContext"]["http"]["method"]} {event["rawPath"]} {event["rawQueryString"]}',
    }
`;

const FUNCTIONS: Record<string, Record<string, string>> = {
  'v1-node': {
    'hearth.yaml': manifest('v1-node', '{ runtime: node20, handler: index.handler, eventFormat: lambda-v1 }'),
    'index.js': NODE_V1,
  },
  'v1-py': {
    'hearth.yaml': manifest(
      'v1-py',
      '{ runtime: python3, handler: lambda_function.lambda_handler, eventFormat: lambda-v1 }',
    ),
    'lambda_function.py': PY_V1,
  },
  'direct-node': {
    'hearth.yaml': manifest(
      'direct-node',
      '{ runtime: node20, handler: index.handler, eventFormat: lambda-direct }',
    ),
    'index.mjs': NODE_DIRECT,
  },
  'direct-py': {
    'hearth.yaml': manifest(
      'direct-py',
      '{ runtime: python3, handler: lambda_function.lambda_handler, eventFormat: lambda-direct }',
    ),
    'lambda_function.py': PY_DIRECT,
  },
  'v2-py': {
    'hearth.yaml': manifest(
      'v2-py',
      '{ runtime: python3, handler: lambda_function.lambda_handler, eventFormat: lambda-v2 }',
    ),
    'lambda_function.py': PY_V2,
  },
};

let hearth: Hearth;
const folders: TempFolder[] = [];

beforeAll(async () => {
  hearth = await startHearth();
  for (const [name, files] of Object.entries(FUNCTIONS)) {
    const folder = await makeFolder(files);
    folders.push(folder);
    const deployed = await deployFolder(hearth.url, folder.dir, { name });
    expect(deployed.status, `deploy ${name}: ${JSON.stringify(deployed.body)}`).toBe(200);
  }
});

afterAll(async () => {
  await hearth?.stop();
  for (const folder of folders) await folder.cleanup();
});

describe.each(['v1-node', 'v1-py'])('eventFormat lambda-v1 (%s)', (name) => {
  it('gets the REST proxy event: method, path, last and all values of each query and header', async () => {
    const { answers, socket } = await exchange(
      hearth.port,
      [
        `GET /function/${name}/items/7?color=red&color=blue&size=m HTTP/1.1\r\nHost: h\r\nX-Tag: a\r\nX-Tag: b\r\n\r\n`,
      ],
      1,
    );
    socket.destroy();
    const [answer] = answers;
    expect(answer?.status, answer?.body).toBe(200);
    expect(answer?.headers['content-type']).toBe('application/json');
    expect(answer?.head.match(/^set-cookie: .*$/gim)).toEqual(['set-cookie: a=1', 'set-cookie: b=2']);
    expect(JSON.parse(answer?.body ?? '')).toEqual({
      resource: '/{proxy+}',
      path: '/items/7',
      httpMethod: 'GET',
      queryStringParameters: { color: 'blue', size: 'm' },
      multiValueQueryStringParameters: { color: ['red', 'blue'], size: ['m'] },
      pathParameters: { proxy: 'items/7' },
      stageVariables: null,
      tag: 'b',
      tags: ['a', 'b'],
      sameRequest: true,
      requestMethod: 'GET',
      body: null,
      isBase64Encoded: false,
    });
  });

  it('has null queryStringParameters without a query, as AWS does, and the body as a string', async () => {
    const response = await invoke(hearth.url, name, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"n":1}',
    });
    expect(response.status, response.text).toBe(200);
    expect(response.json()).toMatchObject({
      resource: '/',
      path: '/',
      httpMethod: 'POST',
      queryStringParameters: null,
      multiValueQueryStringParameters: null,
      pathParameters: null,
      body: '{"n":1}',
      isBase64Encoded: false,
    });
  });
});

describe.each(['direct-node', 'direct-py'])('eventFormat lambda-direct (%s)', (name) => {
  it('the JSON body is the event and the return value is the JSON answer', async () => {
    const response = await invoke(hearth.url, name, { method: 'POST', body: '{"a":1}' });
    expect(response.status, response.text).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(response.json()).toEqual({ sum: 1 });
    expect((await invoke(hearth.url, name, { method: 'POST', body: '{"a":40,"b":2}' })).json()).toEqual({
      sum: 42,
    });
  });

  it("a thrown error answers in Lambda's shape with X-Amz-Function-Error: Unhandled", async () => {
    const response = await invoke(hearth.url, name, { method: 'POST', body: '{"a":1,"fail":"x"}' });
    expect(response.status).toBe(500);
    expect(response.headers.get('x-amz-function-error')).toBe('Unhandled');
    expect(response.headers.get('content-type')).toBe('application/json');
    const body = response.json() as Record<string, unknown>;
    if (name === 'direct-node') {
      expect(body).toEqual({
        errorType: 'RangeError',
        errorMessage: 'cannot add: x',
        trace: expect.any(Array),
      });
      expect((body.trace as string[])[0]).toBe('RangeError: cannot add: x');
      expect((body.trace as string[]).join('\n')).toMatch(/index\.mjs:2/);
    } else {
      expect(body).toEqual({
        errorMessage: 'cannot add: x',
        errorType: 'ValueError',
        requestId: response.headers.get('x-hearth-invocation-id'),
        stackTrace: [
          expect.stringMatching(/lambda_function\.py", line 3, in lambda_handler\n {4}raise ValueError/),
        ],
      });
    }
  });

  it('a body that is not JSON is refused with 400 naming it, not counted as the function failing', async () => {
    const response = await invoke(hearth.url, name, { method: 'POST', body: 'a=1' });
    expect(response.status).toBe(400);
    expect(response.json()).toMatchObject({
      error: {
        code: 'HEARTH_E_BAD_REQUEST',
        message: expect.stringMatching(/^body: .*not JSON.*lambda-direct/),
      },
    });
    expect(response.headers.get('x-amz-function-error')).toBeNull();
  });
});

describe('eventFormat in the spec', () => {
  it('lambda-v2 gives a Python handler the HTTP API event', async () => {
    const response = await invoke(hearth.url, 'v2-py', { path: '/a/b?x=1' });
    expect(response.status, response.text).toBe(200);
    expect(response.text).toBe('GET /a/b x=1');
  });

  it('describe shows it', async () => {
    const described = await runCli(['describe', 'v1-node'], { url: hearth.url });
    expect(described.code, described.stderr).toBe(0);
    expect(described.stdout).toMatch(/^Events: +lambda-v1$/m);
    expect((await getFunction(hearth.url, 'v1-node'))?.spec.eventFormat).toBe('lambda-v1');
    expect((await getFunction(hearth.url, 'direct-py'))?.spec.eventFormat).toBe('lambda-direct');
  });

  it('an unknown one is refused naming the field, the value and the formats', async () => {
    const folder = await makeFolder({
      'hearth.yaml': manifest('bad-format', '{ runtime: node20, eventFormat: lambda-v3 }'),
      'index.mjs': 'export default () => 1;\n',
    });
    folders.push(folder);
    const refused = await deployFolder(hearth.url, folder.dir, { name: 'bad-format' });
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({
      error: {
        code: 'HEARTH_E_VALIDATION',
        message: expect.stringMatching(/spec\.eventFormat.*lambda-v3.*lambda-v1.*lambda-direct/),
      },
    });
    expect(await getFunction(hearth.url, 'bad-format')).toBeUndefined();
  });
});
