/**
 * @module Reads an AWS SAM `template.yaml`: `Globals.Function` and each `AWS::Serverless::Function`'s
 * Handler, Runtime, CodeUri, MemorySize, Timeout, Environment and the Events Hearth can take (Api and
 * HttpApi as EventGateway routes, Schedule and ScheduleV2 as cron, SelfManagedKafka as a Kafka trigger).
 */

import { basename, dirname, resolve } from 'node:path';
import type { EventFormat } from '../../domain/function.js';
import type { TriggerInput } from '../../domain/triggers.js';
import { type Resolution, resolveIntrinsic } from './cloudformation.js';
import {
  awsSchedule,
  envValue,
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

const MAPPED = new Set([
  'Handler',
  'Runtime',
  'CodeUri',
  'MemorySize',
  'Timeout',
  'Environment',
  'Events',
  'FunctionName',
]);
/** Properties about AWS deployment only: nothing to map and nothing to say. */
const QUIET = new Set([
  'Description',
  'Tags',
  'Tracing',
  'Architectures',
  'AutoPublishAlias',
  'DeploymentPreference',
]);

const WHY_NOT: Record<string, string> = {
  SQS: 'Hearth has no SQS trigger; its durable queue takes POST /async-function/NAME and Lambda Event invocations',
  SNS: 'Hearth has no SNS trigger; an SNS HTTP subscription to /async-function/NAME is the nearest',
  S3: 'Hearth has no S3 trigger',
  Kinesis: 'Hearth has no Kinesis trigger',
  DynamoDB: 'Hearth has no DynamoDB stream trigger',
  EventBridgeRule: 'Hearth has no EventBridge; POST the events to /events (CloudEvents) instead',
  CloudWatchEvent: 'Hearth has no EventBridge; POST the events to /events (CloudEvents) instead',
  IoTRule:
    "an AWS IoT rule; Hearth's MQTT trigger subscribes to a broker itself: add spec.triggers [{mqtt: {url, topic}}] by hand",
  MSK: 'Amazon MSK is named by its ARN; a Hearth Kafka trigger needs the brokers: add spec.triggers [{kafka: {brokers, topic}}]',
  MQ: 'Hearth has no Amazon MQ trigger',
};

export function readSam(file: string, document: unknown): ImportedProject {
  const unmapped = new UnmappedList();
  const root = isRecord(document) ? document : {};
  const parameters = isRecord(root.Parameters) ? root.Parameters : {};
  const globals = isRecord(root.Globals) && isRecord(root.Globals.Function) ? root.Globals.Function : {};
  const resources = isRecord(root.Resources) ? root.Resources : {};
  const value = (given: unknown, where: string): unknown => {
    const resolved: Resolution = resolveIntrinsic(given, parameters);
    if ('unresolved' in resolved) {
      unmapped.add(
        where,
        `${resolved.unresolved} cannot be resolved without AWS; set it in hearth.yaml by hand`,
      );
      return undefined;
    }
    return resolved.value;
  };
  const functions: ImportedFunction[] = [];
  for (const [logicalId, resource] of Object.entries(resources)) {
    const where = `Resources.${logicalId}`;
    if (!isRecord(resource)) continue;
    if (resource.Type !== 'AWS::Serverless::Function') {
      if (resource.Type !== 'AWS::Serverless::Api' && resource.Type !== 'AWS::Serverless::HttpApi')
        unmapped.add(where, `${String(resource.Type)}: not created by Hearth`);
      continue;
    }
    const own = isRecord(resource.Properties) ? resource.Properties : {};
    const props: Record<string, unknown> = { ...globals, ...own };
    if (isRecord(globals.Environment) && isRecord(own.Environment))
      props.Environment = {
        Variables: {
          ...(isRecord(globals.Environment.Variables) ? globals.Environment.Variables : {}),
          ...(isRecord(own.Environment.Variables) ? own.Environment.Variables : {}),
        },
      };
    if (props.PackageType === 'Image') {
      unmapped.add(
        `${where}.Properties.PackageType`,
        'container image functions are not imported; Hearth runs Node and Python handlers',
      );
      continue;
    }
    const runtimeId = String(value(props.Runtime, `${where}.Properties.Runtime`) ?? '');
    const runtime = lambdaRuntime(runtimeId);
    if (runtime === undefined) {
      unmapped.add(
        `${where}.Properties.Runtime`,
        `"${runtimeId}": Hearth runs nodejs18.x-22.x and python3.x; function not imported`,
      );
      continue;
    }
    const handler = value(props.Handler, `${where}.Properties.Handler`);
    if (typeof handler !== 'string') {
      unmapped.add(`${where}.Properties.Handler`, 'missing; function not imported');
      continue;
    }
    const codeUri = props.CodeUri === undefined ? '.' : value(props.CodeUri, `${where}.Properties.CodeUri`);
    if (typeof codeUri !== 'string') {
      if (props.InlineCode !== undefined)
        unmapped.add(
          `${where}.Properties.InlineCode`,
          'inline code is not imported; put it in a file and set CodeUri',
        );
      else
        unmapped.add(
          `${where}.Properties.CodeUri`,
          'an S3 location; Hearth deploys a local folder; function not imported',
        );
      continue;
    }
    for (const key of Object.keys(props))
      if (!MAPPED.has(key) && !QUIET.has(key)) unmapped.add(`${where}.Properties.${key}`, notMapped(key));
    const env: Record<string, string> = {};
    const variables = isRecord(props.Environment) ? props.Environment.Variables : undefined;
    if (isRecord(variables))
      for (const [name, raw] of Object.entries(variables)) {
        const text = envValue(value(raw, `${where}.Properties.Environment.Variables.${name}`));
        if (text !== undefined) env[name] = text;
      }
    const routes: ImportedRoute[] = [];
    const triggers: TriggerInput[] = [];
    const shapes = new Set<'v1' | 'v2'>();
    for (const [eventId, event] of Object.entries(isRecord(props.Events) ? props.Events : {})) {
      const at = `${where}.Properties.Events.${eventId}`;
      if (!isRecord(event)) continue;
      const type = String(event.Type);
      const properties = isRecord(event.Properties) ? event.Properties : {};
      if (type === 'Api' || type === 'HttpApi') {
        const path = value(properties.Path, `${at}.Properties.Path`);
        const method = value(properties.Method, `${at}.Properties.Method`);
        if (type === 'HttpApi' && properties.Path === undefined)
          unmapped.add(
            at,
            'a catch-all HttpApi: EventGateway routes start with a path segment; the function answers every path at /function/NAME/…',
          );
        else if (typeof path === 'string') {
          const converted = routePath(path);
          if ('problem' in converted) unmapped.add(`${at}.Properties.Path`, converted.problem);
          else
            routes.push({
              path: converted.path,
              method: routeMethod(typeof method === 'string' ? method : undefined),
            });
        }
        if (properties.Auth !== undefined)
          unmapped.add(
            `${at}.Properties.Auth`,
            'routes have no authorizers in Hearth yet; check the caller in the function',
          );
        const v1 = type === 'Api' || String(properties.PayloadFormatVersion) === '1.0';
        shapes.add(v1 ? 'v1' : 'v2');
      } else if (type === 'Schedule' || type === 'ScheduleV2') {
        const expression = value(
          type === 'Schedule' ? properties.Schedule : properties.ScheduleExpression,
          at,
        );
        if (properties.Enabled === false || properties.State === 'DISABLED') {
          unmapped.add(at, 'disabled; not imported');
          continue;
        }
        const cron = awsSchedule(String(expression));
        if ('problem' in cron) {
          unmapped.add(at, cron.problem);
          continue;
        }
        if (cron.note !== undefined) unmapped.add(at, `approximated: ${cron.note}`);
        const input = typeof properties.Input === 'string' ? parseJsonOrText(properties.Input) : undefined;
        const timezone =
          typeof properties.ScheduleExpressionTimezone === 'string'
            ? properties.ScheduleExpressionTimezone
            : 'UTC';
        triggers.push({
          cron: { schedule: cron.cron, timezone, ...(input === undefined ? {} : { data: input }) },
        });
      } else if (type === 'SelfManagedKafka') {
        const brokers = value(properties.KafkaBootstrapServers, `${at}.Properties.KafkaBootstrapServers`);
        const topics = value(properties.Topics, `${at}.Properties.Topics`);
        if (!Array.isArray(brokers) || !Array.isArray(topics)) {
          unmapped.add(at, 'expected KafkaBootstrapServers and Topics lists');
          continue;
        }
        if (properties.SourceAccessConfigurations !== undefined)
          unmapped.add(
            `${at}.Properties.SourceAccessConfigurations`,
            'SASL, TLS and VPC access are not set on Hearth Kafka triggers yet',
          );
        for (const topic of topics)
          triggers.push({
            kafka: {
              brokers: brokers.map(String),
              topic: String(topic),
              ...(typeof properties.ConsumerGroupId === 'string'
                ? { group: properties.ConsumerGroupId }
                : {}),
              ...(properties.StartingPosition === 'TRIM_HORIZON' ? { startFrom: 'earliest' } : {}),
              ...(properties.StartingPosition === 'LATEST' ? { startFrom: 'latest' } : {}),
            },
          });
      } else unmapped.add(at, `${type}: ${WHY_NOT[type] ?? `Hearth has no ${type} trigger`}`);
    }
    if (shapes.size > 1)
      unmapped.add(
        `${where}.Properties.Events`,
        'Api (REST, v1) and HttpApi (v2) events together: every route gets the REST (v1) event',
      );
    const format: EventFormat = shapes.has('v1')
      ? 'lambda-v1'
      : shapes.has('v2')
        ? 'lambda-v2'
        : 'lambda-direct';
    const memory = value(props.MemorySize, `${where}.Properties.MemorySize`);
    const timeout = value(props.Timeout, `${where}.Properties.Timeout`);
    const explicitName = typeof own.FunctionName === 'string' ? own.FunctionName : undefined;
    functions.push({
      name: hearthName(explicitName ?? logicalId.replace(/Function$/, '')),
      origin: where,
      source: resolve(dirname(file), codeUri),
      runtime,
      handler: handler.replace(/^\.\//, ''),
      env,
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
    format: 'sam',
    file,
    projectDir: dirname(file),
    // A SAM stack is named at deploy time (samconfig.toml), not in the template: the folder's name stands in.
    service: basename(dirname(file)),
    functions,
    unmapped: unmapped.items,
  };
}

function notMapped(key: string): string {
  if (key === 'Policies' || key === 'Role' || key === 'PermissionsBoundary')
    return 'IAM permissions have no Hearth equivalent (functions reach what spec.egress allows)';
  if (key === 'VpcConfig')
    return "a VPC has no Hearth equivalent; spec.egress and hostAliases set a function's network";
  if (key === 'Layers')
    return 'Lambda layers are not imported; put the dependencies in package.json or requirements.txt';
  if (key === 'ReservedConcurrentExecutions')
    return 'set spec.scaling.max in hearth.yaml for a concurrency cap';
  return 'no Hearth equivalent';
}

function parseJsonOrText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
