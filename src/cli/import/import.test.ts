/**
 * @module Tests of `hearth import`'s mapping: the four fixture projects (test/fixtures/import/, written
 * following each platform's documented format), the conversions they share, and the command's files.
 */

import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { EVENT_FORMATS, parseFunctionManifest } from '../../domain/function.js';
import { parseGatewayManifest } from '../../domain/gateway.js';
import { main } from '../main.js';
import { captureIo } from '../test-support.js';
import { awsSchedule, hearthName, lambdaRuntime, planImport, readProject, routePath } from './index.js';

const FIXTURES = join(import.meta.dirname, '..', '..', '..', 'test', 'fixtures', 'import');

function plan(name: string): ReturnType<typeof planImport> {
  return planImport(readProject(join(FIXTURES, name)), undefined);
}

function specOf(result: ReturnType<typeof planImport>, name: string): Record<string, unknown> {
  const found = result.functions.find((fn) => fn.name === name);
  if (found === undefined)
    throw new Error(`no function ${name} in ${result.functions.map((fn) => fn.name).join(', ')}`);
  return found.manifest.spec as Record<string, unknown>;
}

function routesOf(result: ReturnType<typeof planImport>): string[] {
  return (result.gateway?.spec.functions ?? []).map(
    (route) => `${route.name} ${route.match.method ?? 'ANY'} ${route.match.path}`,
  );
}

function unmappedAt(result: ReturnType<typeof planImport>): string[] {
  return result.unmapped.map((item) => item.where);
}

describe('Serverless Framework serverless.yml', () => {
  const result = plan('serverless');

  it('maps provider defaults, function overrides, handlers and resolvable variables', () => {
    expect(result.project.format).toBe('serverless');
    expect(result.functions.map((fn) => fn.name)).toEqual([
      'create-user',
      'get-user',
      'nightly-report',
      'on-order',
    ]);
    expect(specOf(result, 'get-user')).toEqual({
      runtime: 'node20',
      handler: 'src/users.get',
      eventFormat: 'lambda-v1',
      env: { TABLE_NAME: 'users-dev', GREETING: 'hello', CACHE_SECONDS: '30' },
      limits: { memory: '512Mi', timeout: '10s' },
    });
    expect(result.functions[0]?.source).toBe(join(FIXTURES, 'serverless'));
  });

  it('turns http events into EventGateway routes, schedules into cron and kafka into a Kafka trigger', () => {
    expect(routesOf(result)).toEqual(['create-user POST /users', 'get-user GET /users/:id']);
    expect(result.gateway?.metadata).toEqual({ name: 'users-api' });
    expect(specOf(result, 'nightly-report')).toMatchObject({
      eventFormat: 'lambda-direct',
      limits: { timeout: '60s' },
      triggers: [
        { cron: { schedule: '0 3 * * MON-FRI', timezone: 'UTC' } },
        { cron: { schedule: '*/15 * * * *', timezone: 'UTC', data: { kind: 'quick' } } },
      ],
    });
    expect(specOf(result, 'on-order').triggers).toEqual([
      { kafka: { brokers: ['broker1:9092'], topic: 'orders', startFrom: 'earliest' } },
    ]);
  });

  it('says, one line each, what it could not map', () => {
    expect(unmappedAt(result)).toEqual([
      'provider.iam',
      'plugins',
      'resources',
      'provider.environment.API_SECRET',
      'functions.createUser.events[0].http.cors',
      'functions.onOrder.events[1].sqs',
      'functions.legacy.runtime',
    ]);
    expect(result.unmapped.find((item) => item.where === 'functions.legacy.runtime')?.what).toMatch(
      /"ruby3\.2": Hearth runs nodejs18\.x-22\.x and python3\.x; function not imported/,
    );
  });
});

describe('AWS SAM template.yaml', () => {
  const result = plan('sam');

  it('parses CloudFormation short tags and resolves !Ref, !Sub and !Join over parameter defaults', () => {
    expect(result.project.format).toBe('sam');
    expect(specOf(result, 'hello-world')).toEqual({
      runtime: 'python3',
      handler: 'app.lambda_handler',
      eventFormat: 'lambda-v1',
      env: { STAGE: 'prod', GREETING: 'hello from prod', REGION_LIST: 'eu-west-1,prod' },
      limits: { memory: '128Mi', timeout: '3s' },
    });
    expect(result.functions.find((fn) => fn.name === 'hello-world')?.source).toBe(
      join(FIXTURES, 'sam', 'hello_world'),
    );
  });

  it('maps Globals, Schedule and ScheduleV2 (weekday numbers shifted to cron), HttpApi and FunctionName', () => {
    expect(specOf(result, 'scheduled')).toMatchObject({
      runtime: 'node20',
      eventFormat: 'lambda-direct',
      env: { STAGE: 'prod' },
      limits: { memory: '256Mi', timeout: '30s' },
      triggers: [
        { cron: { schedule: '0 0 * * *', timezone: 'UTC', data: { mode: 'nightly' } } },
        { cron: { schedule: '0 9 * * 1', timezone: 'Europe/Paris' } },
      ],
    });
    expect(specOf(result, 'http-catch-all')).toMatchObject({ runtime: 'python3', eventFormat: 'lambda-v2' });
    expect(routesOf(result)).toEqual(['hello-world GET /hello', 'hello-world GET /items/:id']);
  });

  it('says what it could not map', () => {
    expect(unmappedAt(result)).toEqual([
      'Resources.HelloWorldFunction.Properties.Environment.Variables.TABLE',
      'Resources.HelloWorldFunction.Properties.Environment.Variables.QUEUE_URL',
      'Resources.ScheduledFunction.Properties.Policies',
      'Resources.ScheduledFunction.Properties.Events.FromQueue',
      'Resources.HttpFunction.Properties.Events.Everything',
      'Resources.JavaFunction.Properties.Runtime',
      'Resources.Queue',
    ]);
    expect(result.unmapped[1]?.what).toMatch(/^!GetAtt Queue\.QueueUrl cannot be resolved without AWS/);
  });
});

describe('OpenFaaS stack.yml', () => {
  const result = plan('openfaas');

  it('maps templates, handler folders, environment files, limits, timeouts and scaling labels', () => {
    expect(result.functions.map((fn) => fn.name)).toEqual(['hello-node', 'classify', 'nightly', 'on-order']);
    expect(specOf(result, 'hello-node')).toMatchObject({
      runtime: 'node20',
      handler: 'handler',
      env: { DB_HOST: 'postgres.default', write_debug: 'true', exec_timeout: '30s' },
      limits: { memory: '256Mi', cpu: '200m', timeout: '65s' },
      scaling: { min: 1, max: 5 },
    });
    expect(result.functions[0]?.source).toBe(join(FIXTURES, 'openfaas', 'hello-node'));
    expect(specOf(result, 'classify')).toMatchObject({ runtime: 'python3', handler: 'handler.handle' });
    expect(specOf(result, 'nightly').triggers).toEqual([
      { cron: { schedule: '*/5 * * * *', timezone: 'UTC' } },
    ]);
  });

  it('names the OpenFaaS convention when this build has it, and says so when it does not', () => {
    const known = (EVENT_FORMATS as readonly string[]).includes('openfaas');
    expect(specOf(result, 'hello-node').eventFormat).toBe(known ? 'openfaas' : undefined);
    expect(unmappedAt(result)).toEqual(
      expect.arrayContaining([
        'functions.classify.secrets',
        'functions.on-order.annotations.topic',
        'functions.go-fn.lang',
      ]),
    );
  });
});

describe('Netlify functions folder', () => {
  const result = plan('netlify');

  it('finds file and folder functions, v1 handler exports and v2 default exports, config.path and schedule', () => {
    expect(result.project.format).toBe('netlify');
    expect(result.functions.map((fn) => fn.name)).toEqual(['folder-fn', 'hello', 'hourly', 'items']);
    expect(specOf(result, 'hello')).toMatchObject({ runtime: 'node20', handler: 'hello.handler' });
    expect(specOf(result, 'folder-fn')).toMatchObject({ handler: 'folder-fn/index.handler' });
    expect(specOf(result, 'items')).toMatchObject({ handler: 'items' });
    expect(specOf(result, 'hourly').triggers).toEqual([{ cron: { schedule: '@hourly', timezone: 'UTC' } }]);
    expect(routesOf(result)).toEqual([
      'folder-fn ANY /.netlify/functions/folder-fn',
      'hello ANY /.netlify/functions/hello',
      'items ANY /api/items/:id',
      'items ANY /api/items',
    ]);
    expect(result.unmapped.find((item) => item.where.endsWith('typed.ts'))?.what).toMatch(/TypeScript/);
  });

  it('gives v1 functions the Netlify convention, or the REST (v1) event before it exists', () => {
    const known = (EVENT_FORMATS as readonly string[]).includes('netlify');
    expect(specOf(result, 'hello').eventFormat).toBe(known ? 'netlify' : 'lambda-v1');
  });
});

describe('conversions', () => {
  it.each([
    ['rate(1 minute)', '* * * * *'],
    ['rate(5 minutes)', '*/5 * * * *'],
    ['rate(120 minutes)', '0 */2 * * *'],
    ['rate(1 hour)', '0 * * * *'],
    ['rate(1 day)', '0 0 * * *'],
    ['cron(0 12 * * ? *)', '0 12 * * *'],
    ['cron(15 10 ? * 6L 2026)', undefined],
    ['cron(0 8 ? * 2-6 *)', '0 8 * * 1-5'],
    ['cron(0/10 * ? * MON-FRI *)', '0/10 * * * MON-FRI'],
    ['every day', undefined],
  ])('EventBridge %s → cron %s', (expression, cron) => {
    const converted = awsSchedule(expression);
    if (cron === undefined) expect(converted).toHaveProperty('problem');
    else expect(converted).toEqual({ cron });
  });

  it('API Gateway paths become route paths', () => {
    expect(routePath('users/{id}')).toEqual({ path: '/users/:id' });
    expect(routePath('/files/{proxy+}')).toEqual({ path: '/files/*' });
    expect(routePath('/a/{x+}/b')).toHaveProperty('problem');
    expect(routePath('/v{n}/x')).toHaveProperty('problem');
  });

  it('names become DNS labels, runtimes map to node20 and python3', () => {
    expect(hearthName('createUser')).toBe('create-user');
    expect(hearthName('HelloWorldFunction')).toBe('hello-world-function');
    expect(hearthName('send_SMSMessage')).toBe('send-sms-message');
    expect(
      ['nodejs18.x', 'nodejs22.x', 'python3.9', 'python3.13', 'java21', 'provided.al2'].map(lambdaRuntime),
    ).toEqual(['node20', 'node20', 'python3', 'python3', undefined, undefined]);
  });
});

describe('hearth import (the command)', () => {
  let out = '';
  beforeEach(async () => {
    out = await mkdtemp(join(tmpdir(), 'hearth-import-'));
  });
  afterEach(async () => {
    await rm(out, { recursive: true, force: true });
  });

  it.each(['serverless', 'sam', 'openfaas', 'netlify'])(
    'writes a hearth.yaml per function and all.yaml, all valid resources (%s)',
    async (fixture) => {
      const io = captureIo();
      expect(await main(['import', join(FIXTURES, fixture), '--out', out], io.io)).toBe(0);
      expect(io.stdout()).toMatch(/^Read .* \d+ functions?, \d+ routes?, \d+ not mapped\n/);
      expect(io.stdout()).toMatch(/Next: hearth apply -f .*all\.yaml/);
      // One line on stderr per thing not mapped.
      expect(io.stderrLines().every((line) => line.startsWith('not mapped: '))).toBe(true);
      const folders = (await readdir(out, { withFileTypes: true })).filter((entry) => entry.isDirectory());
      for (const folder of folders) {
        const manifest = parseFunctionManifest(
          parse(await readFile(join(out, folder.name, 'hearth.yaml'), 'utf8')),
        );
        expect(manifest.metadata.name).toBe(folder.name);
        // spec.source is relative to the file and names the code folder.
        const source = resolve(join(out, folder.name), manifest.spec.source ?? '');
        expect((await stat(source)).isDirectory(), source).toBe(true);
      }
      const documents = parseAllDocuments(await readFile(join(out, 'all.yaml'), 'utf8')).map((doc) =>
        doc.toJS(),
      );
      for (const document of documents)
        if (document.kind === 'EventGateway') parseGatewayManifest(document);
        else parseFunctionManifest(document);
      expect(documents.filter((document) => document.kind === 'Function')).toHaveLength(folders.length);
    },
  );

  it('--dry-run -o json writes nothing and reports the manifests and what was not mapped', async () => {
    const io = captureIo();
    expect(
      await main(
        [
          'import',
          join(FIXTURES, 'serverless', 'serverless.yml'),
          '--out',
          out,
          '--dry-run',
          '-o',
          'json',
          '-n',
          'team',
        ],
        io.io,
      ),
    ).toBe(0);
    expect(await readdir(out)).toEqual([]);
    const report = JSON.parse(io.stdout()) as {
      format: string;
      written: string[];
      functions: { name: string; manifest: { metadata: { namespace: string }; spec: { source: string } } }[];
      unmapped: { where: string; what: string }[];
    };
    expect(report.format).toBe('serverless');
    expect(report.written).toEqual([]);
    expect(report.functions[0]).toMatchObject({
      name: 'create-user',
      manifest: { metadata: { namespace: 'team' } },
    });
    expect(report.unmapped).toContainEqual({
      where: 'functions.legacy.runtime',
      what: expect.stringMatching(/ruby/),
    });
    expect(io.stderr()).toBe('');
  });

  it('refuses to overwrite an earlier import without --force, and a path that is no known project', async () => {
    expect(await main(['import', join(FIXTURES, 'sam'), '--out', out], captureIo().io)).toBe(0);
    const again = captureIo();
    expect(await main(['import', join(FIXTURES, 'sam'), '--out', out], again.io)).toBe(1);
    expect(again.stderrLines()).toEqual([
      expect.stringMatching(/^error: .*hearth\.yaml already exists; pass --force/),
    ]);
    expect(await main(['import', join(FIXTURES, 'sam'), '--out', out, '--force'], captureIo().io)).toBe(0);
    const unknown = captureIo();
    expect(await main(['import', out], unknown.io)).toBe(1);
    expect(unknown.stderrLines()).toEqual([
      expect.stringMatching(/^error: .*no serverless\.yml.*netlify\/functions folder/),
    ]);
  });
});
