/**
 * @module End-to-end: the Lambda Invoke API (issue 18) driven by real AWS clients — `@aws-sdk/client-lambda`,
 * boto3 and the AWS CLI v1 with `--endpoint-url` — against Node and Python handlers written as Lambda's
 * documentation shows them and deployed with their default eventFormat: the payload is the event anyway.
 */

import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  GetFunctionCommand,
  GetFunctionConfigurationCommand,
  InvokeCommand,
  type InvokeCommandOutput,
  LambdaClient,
  ResourceNotFoundException,
} from '@aws-sdk/client-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InvocationRecord } from '../../src/control/api/events-types.js';
import { awsClients } from '../support/aws/clients.mjs';
import {
  api,
  deployFolder,
  eventually,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

const run = promisify(execFile);

// A CommonJS `exports.handler`: its default format is API Gateway v2 over /function/, direct here.
const NODE_HANDLER = `exports.handler = async (event, context) => {
  console.log('adding', JSON.stringify(event));
  if (event.fail) throw new RangeError(\`cannot add: \${event.fail}\`);
  return { sum: event.a + (event.b ?? 0), requestId: context.awsRequestId, fn: context.functionName };
};
`;

// Hearth's own format by default for Python; direct here.
const PY_HANDLER = `import time


def lambda_handler(event, context):
    print("adding", event)
    if event.get("fail"):
        raise ValueError(f"cannot add: {event['fail']}")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"sum": event["a"] + event.get("b", 0), "requestId": context.aws_request_id}
`;

const FUNCTIONS: Record<string, { namespace?: string; files: Record<string, string> }> = {
  'add-node': {
    files: {
      'hearth.yaml': manifest('add-node', '{ runtime: node20, handler: index.handler }'),
      'index.js': NODE_HANDLER,
    },
  },
  'add-py': {
    files: {
      'hearth.yaml': manifest(
        'add-py',
        '{ runtime: python3, handler: lambda_function.lambda_handler, limits: { timeout: 1s } }',
      ),
      'lambda_function.py': PY_HANDLER,
    },
  },
  'team-add': {
    namespace: 'team',
    files: {
      'hearth.yaml': manifest('team-add', '{ runtime: node20, handler: index.handler }', 'namespace: team'),
      'index.js': NODE_HANDLER,
    },
  },
};

let hearth: Hearth;
let lambda: LambdaClient;
let awsBin: string;
const folders: TempFolder[] = [];

// The functions here are public on a loopback platform without keys: their SigV4 is not checked
// (tenants.test.ts checks a key's AWS credentials against a key function).
const CREDENTIALS = { accessKeyId: 'AKIDHEARTHTEST', secretAccessKey: 'unchecked-for-public-functions' };

beforeAll(async () => {
  awsBin = awsClients();
  hearth = await startHearth();
  for (const [name, { namespace, files }] of Object.entries(FUNCTIONS)) {
    const folder = await makeFolder(files);
    folders.push(folder);
    const deployed = await deployFolder(hearth.url, folder.dir, {
      name,
      ...(namespace ? { namespace } : {}),
    });
    expect(deployed.status, `deploy ${name}: ${JSON.stringify(deployed.body)}`).toBe(200);
  }
  lambda = new LambdaClient({ endpoint: hearth.url, region: 'eu-west-1', credentials: CREDENTIALS });
});

afterAll(async () => {
  lambda?.destroy();
  await hearth?.stop();
  for (const folder of folders) await folder.cleanup();
});

function payloadOf(output: InvokeCommandOutput): unknown {
  return JSON.parse(Buffer.from(output.Payload ?? new Uint8Array()).toString('utf8'));
}

function encode(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

describe.each(['add-node', 'add-py'])('@aws-sdk/client-lambda invokes %s', (name) => {
  it('RequestResponse: the payload is the event and the return value the payload back', async () => {
    const output = await lambda.send(
      new InvokeCommand({ FunctionName: name, Payload: encode({ a: 40, b: 2 }) }),
    );
    expect(output.StatusCode).toBe(200);
    expect(output.FunctionError).toBeUndefined();
    expect(output.ExecutedVersion).toBe('$LATEST');
    const payload = payloadOf(output) as { sum: number; requestId: string };
    expect(payload.sum).toBe(42);
    // The request id the client sees is the one the function's context had.
    expect(payload.requestId).toBe(output.$metadata.requestId);
  });

  it("LogType Tail: the invocation's own log, base64, framed as Lambda frames it", async () => {
    const output = await lambda.send(
      new InvokeCommand({
        FunctionName: name,
        Payload: encode({ a: 1, marker: 'tail-me' }),
        LogType: 'Tail',
      }),
    );
    const log = Buffer.from(output.LogResult ?? '', 'base64').toString('utf8');
    const id = output.$metadata.requestId;
    expect(log).toMatch(new RegExp(`^START RequestId: ${id} Version: \\$LATEST\\n`));
    expect(log).toMatch(/adding .*tail-me/);
    expect(log).toMatch(new RegExp(`END RequestId: ${id}\\nREPORT RequestId: ${id}\\tDuration: [\\d.]+ ms`));
  });

  it('a thrown error: 200, FunctionError Unhandled, the error in the payload', async () => {
    const output = await lambda.send(
      new InvokeCommand({ FunctionName: name, Payload: encode({ a: 1, fail: 'x' }), LogType: 'Tail' }),
    );
    expect(output.StatusCode).toBe(200);
    expect(output.FunctionError).toBe('Unhandled');
    expect(payloadOf(output)).toMatchObject(
      name === 'add-node'
        ? { errorType: 'RangeError', errorMessage: 'cannot add: x' }
        : { errorType: 'ValueError', errorMessage: 'cannot add: x' },
    );
    // The stack went to the log, so the tail shows it.
    expect(Buffer.from(output.LogResult ?? '', 'base64').toString('utf8')).toMatch(/cannot add: x/);
  });

  it('DryRun: 204, nothing invoked', async () => {
    const output = await lambda.send(new InvokeCommand({ FunctionName: name, InvocationType: 'DryRun' }));
    expect(output.StatusCode).toBe(204);
  });

  it('Event: 202, then the function runs from the durable queue with the payload as its event', async () => {
    const output = await lambda.send(
      new InvokeCommand({ FunctionName: name, InvocationType: 'Event', Payload: encode({ a: 2, b: 3 }) }),
    );
    expect(output.StatusCode).toBe(202);
    const id = output.$metadata.requestId as string;
    const record = await eventually(`Event invocation ${id} to succeed`, async () => {
      const answer = await api<InvocationRecord>(hearth.url, `/api/v1/invocations/${id}`);
      return answer.body.status === 'succeeded' ? answer.body : undefined;
    });
    expect(record.result?.statusCode).toBe(200);
    expect(JSON.parse(record.result?.body ?? '')).toMatchObject({ sum: 5, requestId: id });
  });
});

describe('function names, qualifiers and errors as Lambda has them', () => {
  it('a full ARN, a partial ARN, name:$LATEST, ?Qualifier= and name.namespace all name a function', async () => {
    for (const FunctionName of [
      'arn:aws:lambda:eu-west-1:123456789012:function:add-node',
      '123456789012:function:add-node:$LATEST',
      'add-node:$LATEST',
      'team-add.team',
    ]) {
      const output = await lambda.send(new InvokeCommand({ FunctionName, Payload: encode({ a: 1 }) }));
      expect(output.StatusCode, FunctionName).toBe(200);
      expect(payloadOf(output), FunctionName).toMatchObject({ sum: 1 });
    }
    const qualified = await lambda.send(
      new InvokeCommand({ FunctionName: 'add-node', Qualifier: '1', Payload: encode({ a: 1 }) }),
    );
    expect(qualified.ExecutedVersion).toBe('1');
  });

  it('an unknown function is ResourceNotFoundException (404) naming its ARN', async () => {
    const error = await lambda
      .send(new InvokeCommand({ FunctionName: 'nope', Payload: encode({}) }))
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ResourceNotFoundException);
    const notFound = error as ResourceNotFoundException;
    expect(notFound.$metadata.httpStatusCode).toBe(404);
    expect(notFound.Type).toBe('User');
    expect(notFound.message).toMatch(
      /^Function not found: arn:aws:lambda:eu-west-1:000000000000:function:nope/,
    );
  });

  it('a version Hearth does not serve is ResourceNotFoundException too', async () => {
    const error = await lambda
      .send(new InvokeCommand({ FunctionName: 'add-node', Qualifier: '7', Payload: encode({}) }))
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ResourceNotFoundException);
    expect((error as Error).message).toMatch(/add-node:7 \(Hearth serves only the active version, 1/);
  });

  it('a payload that is not JSON is InvalidRequestContentException (400), the function not invoked', async () => {
    const response = await fetch(`${hearth.url}/2015-03-31/functions/add-node/invocations`, {
      method: 'POST',
      body: 'a=1',
    });
    expect(response.status).toBe(400);
    expect(response.headers.get('x-amzn-errortype')).toBe('InvalidRequestContentException');
    expect(await response.json()).toEqual({
      Type: 'User',
      Message: expect.stringMatching(/^Could not parse request body into json/),
    });
  });

  it('an unknown invocation type is ValidationException naming the allowed values', async () => {
    const response = await fetch(`${hearth.url}/2015-03-31/functions/add-node/invocations`, {
      method: 'POST',
      headers: { 'x-amz-invocation-type': 'Sometimes' },
      body: '{}',
    });
    expect(response.status).toBe(400);
    expect(response.headers.get('x-amzn-errortype')).toBe('ValidationException');
    expect(((await response.json()) as { Message: string }).Message).toMatch(
      /'Sometimes' at 'invocationType'.*\[Event, RequestResponse, DryRun\]/,
    );
  });

  it("a timeout is the function's error: 200, Unhandled, Sandbox.Timedout", async () => {
    const output = await lambda.send(
      new InvokeCommand({ FunctionName: 'add-py', Payload: encode({ a: 1, sleep: 3 }) }),
    );
    expect(output.StatusCode).toBe(200);
    expect(output.FunctionError).toBe('Unhandled');
    expect(payloadOf(output)).toEqual({
      errorType: 'Sandbox.Timedout',
      errorMessage: `RequestId: ${output.$metadata.requestId} Error: Task timed out after 1.00 seconds`,
    });
  });

  it('GetFunction answers the configuration from the active version', async () => {
    const output = await lambda.send(new GetFunctionCommand({ FunctionName: 'add-py' }));
    expect(output.Configuration).toMatchObject({
      FunctionName: 'add-py',
      FunctionArn: 'arn:aws:lambda:eu-west-1:000000000000:function:add-py',
      Runtime: 'python3.12',
      Handler: 'lambda_function.lambda_handler',
      Timeout: 1,
      MemorySize: 128,
      Version: '1',
      State: 'Active',
    });
  });

  it('GetFunctionConfiguration too, for a function outside the default namespace', async () => {
    const output = await lambda.send(new GetFunctionConfigurationCommand({ FunctionName: 'team-add.team' }));
    expect(output).toMatchObject({
      FunctionName: 'team-add',
      FunctionArn: 'arn:aws:lambda:eu-west-1:000000000000:function:team-add.team',
      Runtime: 'nodejs20.x',
      Handler: 'index.handler',
    });
  });

  it('the same function over /function/ still gets its own format (no override there)', async () => {
    const response = await invoke(hearth.url, 'add-py', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"a":1}',
    });
    // Hearth's event for Python: event["a"] is missing, so the handler fails on the HTTP path.
    expect(response.status).toBe(500);
  });
});

describe('boto3 and the AWS CLI', () => {
  const env = (): NodeJS.ProcessEnv => ({
    ...process.env,
    AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_EC2_METADATA_DISABLED: 'true',
  });

  it('boto3: RequestResponse, Tail, Event, DryRun, a function error and a missing function', async () => {
    const script = `import base64, json, sys
import boto3
from botocore.config import Config

client = boto3.client("lambda", endpoint_url=sys.argv[1], config=Config(retries={"max_attempts": 1}))
out = {}
for name in ("add-node", "add-py"):
    r = client.invoke(FunctionName=name, Payload=json.dumps({"a": 20, "b": 22}), LogType="Tail")
    out[name] = {
        "status": r["StatusCode"],
        "payload": json.loads(r["Payload"].read()),
        "version": r["ExecutedVersion"],
        "log": base64.b64decode(r["LogResult"]).decode(),
        "error": r.get("FunctionError"),
    }
    failed = client.invoke(FunctionName=name, Payload=b'{"a": 1, "fail": "y"}')
    out[name]["failed"] = [failed["StatusCode"], failed.get("FunctionError"), json.loads(failed["Payload"].read())]
    out[name]["event"] = client.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")["StatusCode"]
    out[name]["dry"] = client.invoke(FunctionName=name, InvocationType="DryRun")["StatusCode"]
try:
    client.invoke(FunctionName="nope", Payload=b"{}")
except client.exceptions.ResourceNotFoundException as error:
    out["missing"] = [error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"], str(error)]
print(json.dumps(out))
`;
    const folder = await makeFolder({ 'invoke.py': script });
    folders.push(folder);
    const { stdout } = await run(join(awsBin, 'python'), [join(folder.dir, 'invoke.py'), hearth.url], {
      env: env(),
    });
    const out = JSON.parse(stdout) as Record<string, Record<string, unknown>> & { missing: unknown[] };
    for (const name of ['add-node', 'add-py']) {
      expect(out[name], name).toMatchObject({
        status: 200,
        payload: { sum: 42 },
        version: '$LATEST',
        log: expect.stringMatching(/^START RequestId: [\s\S]*adding[\s\S]*REPORT RequestId/),
        error: null,
        failed: [200, 'Unhandled', expect.objectContaining({ errorMessage: 'cannot add: y' })],
        event: 202,
        dry: 204,
      });
    }
    expect(out.missing).toEqual([
      'ResourceNotFoundException',
      404,
      expect.stringMatching(/ResourceNotFoundException.*Function not found: arn:aws:lambda:us-east-1:/),
    ]);
  });

  it('aws lambda invoke --endpoint-url, with --log-type Tail, and a missing function', async () => {
    const folder = await makeFolder({ 'payload.json': '{"a": 5, "b": 6}' });
    folders.push(folder);
    const outFile = join(folder.dir, 'out.json');
    const { stdout } = await run(
      join(awsBin, 'aws'),
      [
        'lambda',
        'invoke',
        '--endpoint-url',
        hearth.url,
        '--function-name',
        'add-py',
        '--payload',
        `fileb://${join(folder.dir, 'payload.json')}`,
        '--log-type',
        'Tail',
        outFile,
      ],
      { env: env() },
    );
    const answer = JSON.parse(stdout) as { StatusCode: number; LogResult: string; ExecutedVersion: string };
    expect(answer.StatusCode).toBe(200);
    expect(answer.ExecutedVersion).toBe('$LATEST');
    expect(Buffer.from(answer.LogResult, 'base64').toString('utf8')).toMatch(/adding \{'a': 5, 'b': 6\}/);
    expect(JSON.parse(await readFile(outFile, 'utf8'))).toMatchObject({ sum: 11 });

    const missing = await run(
      join(awsBin, 'aws'),
      ['lambda', 'invoke', '--endpoint-url', hearth.url, '--function-name', 'nope', outFile],
      { env: env() },
    ).catch((error: { code: number; stderr: string }) => error);
    expect('code' in missing ? missing.code : 0).toBe(255);
    expect('stderr' in missing ? missing.stderr : '').toMatch(
      /An error occurred \(ResourceNotFoundException\) when calling the Invoke operation: Function not found/,
    );
    await writeFile(outFile, '');
  });
});
