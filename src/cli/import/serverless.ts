/**
 * @module Reads a Serverless Framework `serverless.yml` (v3/v4, provider aws): provider and function
 * runtime, memory, timeout and environment, handlers, and the events Hearth can take (http and httpApi as
 * EventGateway routes, schedule as cron, self-managed kafka as a Kafka trigger).
 */

import { basename, dirname } from 'node:path';
import type { EventFormat } from '../../domain/function.js';
import type { TriggerInput } from '../../domain/triggers.js';
import {
  awsSchedule,
  envValue,
  firstKnownFormat,
  hearthName,
  type ImportedFunction,
  type ImportedProject,
  type ImportedRoute,
  isRecord,
  lambdaRuntime,
  routeMethod,
  routePath,
  UnmappedList,
} from './model.js';

/** Provider settings that describe AWS deployment, not the function: nothing to map, nothing to say. */
const QUIET_PROVIDER_KEYS = new Set([
  'name',
  'runtime',
  'memorySize',
  'timeout',
  'environment',
  'stage',
  'region',
  'profile',
  'deploymentBucket',
  'deploymentMethod',
  'stackName',
  'tags',
  'stackTags',
  'versionFunctions',
  'lambdaHashingVersion',
  'logRetentionInDays',
  'httpApi',
  'apiGateway',
]);
const QUIET_FUNCTION_KEYS = new Set([
  'handler',
  'runtime',
  'memorySize',
  'timeout',
  'environment',
  'events',
  'name',
  'description',
  'tags',
  'package',
]);

const WHY_NOT: Record<string, string> = {
  sqs: 'Hearth has no SQS trigger; its durable queue takes POST /async-function/NAME and Lambda Event invocations, and Kafka or NATS JetStream triggers are the nearest sources',
  sns: 'Hearth has no SNS trigger; an SNS HTTP subscription to /async-function/NAME is the nearest',
  s3: 'Hearth has no S3 trigger',
  stream: 'Hearth has no DynamoDB or Kinesis stream trigger',
  iot: "an AWS IoT rule; Hearth's MQTT trigger subscribes to a broker itself: add spec.triggers [{mqtt: {url, topic}}] by hand",
  msk: 'Amazon MSK is named by its ARN; a Hearth Kafka trigger needs the brokers: add spec.triggers [{kafka: {brokers, topic}}]',
  eventBridge: 'Hearth has no EventBridge; POST the events to /events (CloudEvents) instead',
  cloudwatchEvent: 'Hearth has no EventBridge; POST the events to /events (CloudEvents) instead',
  cloudwatchLog: 'Hearth has no CloudWatch Logs subscription',
  websocket: 'Hearth has no WebSocket API',
  cognitoUserPool: 'Hearth has no Cognito trigger',
  alexaSkill: 'Hearth has no Alexa trigger',
  alexaSmartHome: 'Hearth has no Alexa trigger',
  cloudFront: 'Hearth has no CloudFront (Lambda@Edge) trigger',
  activemq: 'Hearth has no Amazon MQ trigger',
  rabbitmq: 'Hearth has no Amazon MQ trigger',
};

export function readServerless(file: string, document: unknown): ImportedProject {
  const unmapped = new UnmappedList();
  const root = isRecord(document) ? document : {};
  const provider = isRecord(root.provider) ? root.provider : {};
  const service = typeof root.service === 'string' ? root.service : basename(dirname(file));
  const resolve = variableResolver(root);
  if (provider.name !== undefined && provider.name !== 'aws')
    unmapped.add('provider.name', `"${String(provider.name)}": only the aws provider's functions are read`);
  for (const key of Object.keys(provider))
    if (!QUIET_PROVIDER_KEYS.has(key)) unmapped.add(`provider.${key}`, notMapped(key));
  if (root.plugins !== undefined) unmapped.add('plugins', 'Serverless plugins are not run by hearth import');
  if (root.resources !== undefined)
    unmapped.add(
      'resources',
      'CloudFormation resources are not created by Hearth (databases, queues, buckets…)',
    );
  const providerEnv = environment(provider.environment, 'provider.environment', resolve, unmapped);
  const payload10 = isRecord(provider.httpApi) && String(provider.httpApi.payload) === '1.0';

  const functions: ImportedFunction[] = [];
  const declared = isRecord(root.functions) ? root.functions : {};
  for (const [key, value] of Object.entries(declared)) {
    const where = `functions.${key}`;
    if (!isRecord(value)) {
      unmapped.add(where, 'not a function definition');
      continue;
    }
    if (typeof value.image === 'string' || isRecord(value.image)) {
      unmapped.add(
        `${where}.image`,
        'container image functions are not imported; Hearth runs Node and Python handlers',
      );
      continue;
    }
    const runtimeId = String(value.runtime ?? provider.runtime ?? 'nodejs20.x');
    const runtime = lambdaRuntime(runtimeId);
    if (runtime === undefined) {
      unmapped.add(
        `${where}.runtime`,
        `"${runtimeId}": Hearth runs nodejs18.x-22.x and python3.x; function not imported`,
      );
      continue;
    }
    if (typeof value.handler !== 'string') {
      unmapped.add(`${where}.handler`, 'missing; function not imported');
      continue;
    }
    for (const field of Object.keys(value))
      if (!QUIET_FUNCTION_KEYS.has(field)) unmapped.add(`${where}.${field}`, notMapped(field));
    const routes: ImportedRoute[] = [];
    const triggers: TriggerInput[] = [];
    const shapes = new Set<'v1' | 'v2' | 'alb'>();
    const events = Array.isArray(value.events) ? value.events : [];
    for (const [index, event] of events.entries()) {
      const at = `${where}.events[${index}]`;
      if (!isRecord(event)) continue;
      const [kind, spec] = Object.entries(event)[0] ?? [];
      if (kind === 'http' || kind === 'httpApi') {
        const route = httpRoute(spec, kind);
        if ('problem' in route) unmapped.add(`${at}.${kind}`, route.problem);
        else routes.push(route);
        if (isRecord(spec))
          for (const field of Object.keys(spec))
            if (field !== 'path' && field !== 'method')
              unmapped.add(
                `${at}.${kind}.${field}`,
                field === 'authorizer' || field === 'private'
                  ? 'routes have no authorizers in Hearth yet; check the caller in the function'
                  : field === 'cors'
                    ? "CORS headers are the function's to answer in Hearth"
                    : 'no Hearth equivalent',
              );
        shapes.add(kind === 'http' || payload10 ? 'v1' : 'v2');
      } else if (kind === 'schedule') triggers.push(...schedules(spec, `${at}.schedule`, unmapped));
      else if (kind === 'kafka') {
        const kafka = kafkaTrigger(spec, `${at}.kafka`, unmapped);
        if (kafka !== undefined) triggers.push(kafka);
      } else if (kind === 'alb') shapes.add('alb');
      else if (kind !== undefined)
        unmapped.add(`${at}.${kind}`, WHY_NOT[kind] ?? `Hearth has no ${kind} trigger`);
    }
    if (shapes.size > 1)
      unmapped.add(
        `${where}.events`,
        'http (REST, v1) and httpApi (v2) events together: every route gets the REST (v1) event',
      );
    const format: EventFormat | undefined = shapes.has('v1')
      ? 'lambda-v1'
      : shapes.has('v2')
        ? 'lambda-v2'
        : shapes.has('alb')
          ? firstKnownFormat('lambda-alb', 'lambda-v1')
          : 'lambda-direct';
    const memory = value.memorySize ?? provider.memorySize;
    const timeout = value.timeout ?? provider.timeout;
    functions.push({
      name: hearthName(key),
      origin: where,
      source: dirname(file),
      runtime,
      handler: value.handler.replace(/^\.\//, ''),
      env: { ...providerEnv, ...environment(value.environment, `${where}.environment`, resolve, unmapped) },
      memory: typeof memory === 'number' ? `${memory}Mi` : undefined,
      timeout: typeof timeout === 'number' ? `${timeout}s` : undefined,
      cpu: undefined,
      scaling: undefined,
      eventFormat: format,
      triggers,
      routes,
    });
  }
  return {
    format: 'serverless',
    file,
    projectDir: dirname(file),
    service,
    functions,
    unmapped: unmapped.items,
  };
}

function notMapped(key: string): string {
  if (key === 'iam' || key === 'iamRoleStatements' || key === 'role' || key === 'iamRoleStatementsName')
    return 'IAM permissions have no Hearth equivalent (functions reach what spec.egress allows)';
  if (key === 'vpc')
    return "a VPC has no Hearth equivalent; spec.egress and hostAliases set a function's network";
  if (key === 'layers')
    return 'Lambda layers are not imported; put the dependencies in package.json or requirements.txt';
  return 'no Hearth equivalent';
}

const CATCH_ALL =
  'a catch-all route: EventGateway routes start with a path segment; the function answers every path at /function/NAME/…';

/** `GET users/{id}`, `{ path, method }`, `*` → a route. */
function httpRoute(spec: unknown, kind: string): ImportedRoute | { problem: string } {
  let method: string | undefined;
  let path: string | undefined;
  if (typeof spec === 'string') {
    if (spec.trim() === '*') return { problem: CATCH_ALL };
    const [first, second] = spec.trim().split(/\s+/);
    if (second === undefined) path = first;
    else {
      method = first;
      path = second;
    }
  } else if (isRecord(spec)) {
    path = typeof spec.path === 'string' ? spec.path : undefined;
    method = typeof spec.method === 'string' ? spec.method : undefined;
  }
  if (path === undefined) return { problem: `${kind} event without a path` };
  const converted = routePath(path);
  if ('problem' in converted) return converted;
  return { path: converted.path, method: routeMethod(method) };
}

function schedules(spec: unknown, where: string, unmapped: UnmappedList): TriggerInput[] {
  const expressions: unknown[] = [];
  let data: unknown;
  if (typeof spec === 'string') expressions.push(spec);
  else if (isRecord(spec)) {
    if (spec.enabled === false) {
      unmapped.add(where, 'disabled (enabled: false); not imported');
      return [];
    }
    if (Array.isArray(spec.rate)) expressions.push(...spec.rate);
    else expressions.push(spec.rate);
    data = spec.input;
    if (spec.inputPath !== undefined || spec.inputTransformer !== undefined)
      unmapped.add(where, 'inputPath and inputTransformer have no Hearth equivalent; input is kept');
  }
  const triggers: TriggerInput[] = [];
  for (const expression of expressions) {
    const cron = awsSchedule(String(expression));
    if ('problem' in cron) {
      unmapped.add(where, cron.problem);
      continue;
    }
    if (cron.note !== undefined) unmapped.add(where, `approximated: ${cron.note}`);
    // EventBridge schedules run in UTC.
    triggers.push({
      cron: { schedule: cron.cron, timezone: 'UTC', ...(data === undefined ? {} : { data }) },
    });
  }
  return triggers;
}

function kafkaTrigger(spec: unknown, where: string, unmapped: UnmappedList): TriggerInput | undefined {
  if (!isRecord(spec) || typeof spec.topic !== 'string' || !Array.isArray(spec.bootstrapServers)) {
    unmapped.add(where, 'expected { topic, bootstrapServers }');
    return undefined;
  }
  if (spec.accessConfigurations !== undefined)
    unmapped.add(
      `${where}.accessConfigurations`,
      'SASL, TLS and VPC access are not set on Hearth Kafka triggers yet',
    );
  const start = spec.startingPosition;
  return {
    kafka: {
      brokers: spec.bootstrapServers.map(String),
      topic: spec.topic,
      ...(typeof spec.consumerGroupId === 'string' ? { group: spec.consumerGroupId } : {}),
      ...(start === 'TRIM_HORIZON'
        ? { startFrom: 'earliest' }
        : start === 'LATEST'
          ? { startFrom: 'latest' }
          : {}),
    },
  };
}

function environment(
  value: unknown,
  where: string,
  resolve: (text: string) => string | undefined,
  unmapped: UnmappedList,
): Record<string, string> {
  const env: Record<string, string> = {};
  if (!isRecord(value)) return env;
  for (const [name, raw] of Object.entries(value)) {
    const text = envValue(raw);
    const resolved = text === undefined ? undefined : resolve(text);
    if (resolved === undefined) {
      unmapped.add(
        `${where}.${name}`,
        `${JSON.stringify(raw)} cannot be resolved here; set it in hearth.yaml by hand`,
      );
      continue;
    }
    env[name] = resolved;
  }
  return env;
}

/**
 * Serverless variables as far as they resolve without AWS: `${self:path}`, and a source with a default
 * (`${env:X, 'x'}`, `${opt:stage, 'dev'}`), `${sls:stage}` and `${opt:stage}` ('dev', the framework's own
 * default). Anything else (`${ssm:…}`, `${cf:…}`, an env var without default) is left to the user.
 */
function variableResolver(root: Record<string, unknown>): (text: string) => string | undefined {
  const provider = isRecord(root.provider) ? root.provider : {};
  let stage = 'dev';
  const resolveOne = (expression: string, depth: number): string | undefined => {
    const [source = '', fallback] = splitDefault(expression);
    if (source.startsWith('self:')) {
      let node: unknown = root;
      for (const key of source.slice(5).split('.')) node = isRecord(node) ? node[key] : undefined;
      const found = envValue(node);
      if (found !== undefined) return depth > 5 ? undefined : resolveText(found, depth + 1);
    }
    if (source === 'sls:stage' || source === 'opt:stage' || source === 'self:provider.stage')
      return fallback ?? stage;
    if (source === 'opt:region' || source === 'self:provider.region')
      return fallback ?? (typeof provider.region === 'string' ? provider.region : 'us-east-1');
    return fallback;
  };
  const resolveText = (text: string, depth: number): string | undefined => {
    let failed = false;
    const out = text.replace(/\$\{([^{}]+)\}/g, (_match, expression: string) => {
      const value = resolveOne(expression.trim(), depth);
      if (value === undefined) failed = true;
      return value ?? '';
    });
    return failed ? undefined : out;
  };
  // The stage is often itself a variable: `${opt:stage, 'dev'}`.
  if (typeof provider.stage === 'string') stage = resolveText(provider.stage, 1) ?? 'dev';
  return (text) => resolveText(text, 0);
}

/** `env:X, 'fallback'` → [`env:X`, `fallback`]. */
function splitDefault(expression: string): [string, string | undefined] {
  const comma = expression.indexOf(',');
  if (comma < 0) return [expression.trim(), undefined];
  const fallback = expression
    .slice(comma + 1)
    .trim()
    .replace(/^(['"])(.*)\1$/, '$2');
  return [expression.slice(0, comma).trim(), fallback];
}
