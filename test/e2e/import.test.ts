/**
 * @module End-to-end: `hearth import` of a Serverless Framework service (Node and Python handlers, http
 * events, a schedule, a function invoked directly), then `hearth apply -f` of what it wrote and `hearth
 * deploy` of one function's folder; the functions answer through their routes, /function/ and the Lambda
 * Invoke API as they would on AWS.
 */

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionDetail } from '../../src/control/api/types.js';
import {
  api,
  type Hearth,
  invoke,
  makeFolder,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

const SERVERLESS_YML = `service: shop
frameworkVersion: '3'
provider:
  name: aws
  runtime: nodejs20.x
  stage: \${opt:stage, 'dev'}
  memorySize: 256
  timeout: 10
  environment:
    STAGE: \${sls:stage}
    SHOP_NAME: \${self:custom.shopName}
custom:
  shopName: Corner Shop
functions:
  createOrder:
    handler: src/orders.create
    events:
      - http:
          path: orders
          method: post
  getOrder:
    handler: src/orders.get
    events:
      - http: GET orders/{id}
  price:
    handler: pricing.handler
    runtime: python3.12
    memorySize: 128
  nightly:
    handler: src/nightly.run
    events:
      - schedule: rate(1 day)
      - sqs: arn:aws:sqs:eu-west-1:123456789012:orders
`;

// Handlers as Serverless's aws-node-rest-api and aws-python templates write them.
const ORDERS_JS = `exports.create = async (event) => {
  const order = JSON.parse(event.body || '{}');
  return {
    statusCode: 201,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ created: order.item, shop: process.env.SHOP_NAME, stage: process.env.STAGE }),
  };
};

exports.get = async (event) => ({
  statusCode: 200,
  body: JSON.stringify({ path: event.path, method: event.httpMethod }),
});
`;

const PRICING_PY = `def handler(event, context):
    return {"total": sum(item["price"] * item["qty"] for item in event["items"])}
`;

const NIGHTLY_JS = `exports.run = async (event) => ({ ran: true, input: event });
`;

let hearth: Hearth;
let project: TempFolder;

beforeAll(async () => {
  hearth = await startHearth();
  project = await makeFolder({
    'serverless.yml': SERVERLESS_YML,
    'src/orders.js': ORDERS_JS,
    'src/nightly.js': NIGHTLY_JS,
    'pricing.py': PRICING_PY,
  });
});

afterAll(async () => {
  await hearth?.stop();
  await project?.cleanup();
});

describe('hearth import, then apply', () => {
  it('writes the resources and says what it could not map', async () => {
    const imported = await runCli(['import', project.dir]);
    expect(imported.code, imported.stderr).toBe(0);
    expect(imported.stdout).toMatch(
      /^Read .*serverless\.yml \(Serverless Framework\): 4 functions, 2 routes, 1 not mapped$/m,
    );
    expect(imported.stdout).toMatch(
      /^create-order +node20 +src\/orders\.create +lambda-v1 +POST \/orders +0$/m,
    );
    expect(imported.stdout).toMatch(/^price +python3 +pricing\.handler +lambda-direct +- +0$/m);
    expect(imported.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^not mapped: functions\.nightly\.events\[1\]\.sqs: Hearth has no SQS trigger/),
    ]);
  });

  it('hearth apply -f hearth/all.yaml deploys every function and the routes', async () => {
    const applied = await runCli(['apply', '-f', join(project.dir, 'hearth', 'all.yaml')], {
      url: hearth.url,
    });
    expect(applied.code, applied.stderr).toBe(0);

    const created = await fetch(`${hearth.url}/orders`, { method: 'POST', body: '{"item":"tea"}' });
    expect(created.status).toBe(201);
    expect(await created.json()).toEqual({ created: 'tea', shop: 'Corner Shop', stage: 'dev' });

    const fetched = await fetch(`${hearth.url}/orders/42`);
    expect(fetched.status).toBe(200);
    expect(await fetched.json()).toEqual({ path: '/orders/42', method: 'GET' });
  });

  it('a function without http events is invoked directly, over /function/ and the Lambda Invoke API', async () => {
    const payload = '{"items":[{"price":2,"qty":3},{"price":1,"qty":4}]}';
    const direct = await invoke(hearth.url, 'price', { method: 'POST', body: payload });
    expect(direct.status, direct.text).toBe(200);
    expect(direct.json()).toEqual({ total: 10 });
    const lambda = await fetch(`${hearth.url}/2015-03-31/functions/price/invocations`, {
      method: 'POST',
      body: payload,
    });
    expect(lambda.status).toBe(200);
    expect(await lambda.json()).toEqual({ total: 10 });
  });

  it('limits, environment and the schedule arrive as the service declared them', async () => {
    const detail = (await api<FunctionDetail>(hearth.url, '/api/v1/namespaces/default/functions/nightly'))
      .body;
    expect(detail.spec).toMatchObject({
      runtime: 'node20',
      handler: 'src/nightly.run',
      env: { STAGE: 'dev', SHOP_NAME: 'Corner Shop' },
    });
    expect(detail.spec.limits).toMatchObject({ memory: '256Mi', timeout: '10s' });
    const described = await runCli(['describe', 'nightly'], { url: hearth.url });
    expect(described.code, described.stderr).toBe(0);
    expect(described.stdout).toMatch(/cron/);
    expect(described.stdout).toMatch(/0 0 \* \* \*/);
  });

  it('hearth deploy hearth/NAME uploads the code folder its spec.source names', async () => {
    await writeFile(
      join(project.dir, 'src', 'orders.js'),
      ORDERS_JS.replace('method: event.httpMethod', 'method: event.httpMethod, edited: true'),
    );
    const deployed = await runCli(['deploy', join(project.dir, 'hearth', 'get-order')], { url: hearth.url });
    expect(deployed.code, deployed.stderr).toBe(0);
    expect(deployed.stdout).toMatch(/^deployed default\/get-order version 2 /);
    const fetched = await fetch(`${hearth.url}/orders/7`);
    expect(await fetched.json()).toEqual({ path: '/orders/7', method: 'GET', edited: true });
  });
});
