/**
 * @module Traces and logs leaving the platform: OTLP/HTTP (protobuf) spans for the gateway request,
 * queue, cold start phases and execution, W3C traceparent continued from a client through a function
 * and across ctx.invoke, ctx.traceId in Node and Python; function logs pushed to Loki. Real receivers.
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { executionSpanIdOf, requestSpanIdOf, traceIdOf } from '../../src/domain/trace.js';
import {
  api,
  deployFolder,
  eventually,
  FIXTURES,
  functionApiPath,
  type Hearth,
  invoke,
  startHearth,
} from '../support/hearth.js';
import {
  type Collector,
  type LokiReceiver,
  type ReceivedSpan,
  startCollector,
  startLoki,
} from '../support/otlp.js';

let hearth: Hearth;
let collector: Collector;
let loki: LokiReceiver;
let configDir: string;

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_SPAN = '00f067aa0ba902b7';

beforeAll(async () => {
  collector = await startCollector();
  loki = await startLoki();
  configDir = await mkdtemp(join(tmpdir(), 'hearth-tracing-'));
  const config = join(configDir, 'hearth.yaml');
  await writeFile(
    config,
    `otlp: { endpoint: "${collector.url}" }\nloki: { url: "${loki.url}", labels: { env: test } }\n`,
  );
  hearth = await startHearth({ args: ['--config', config] });
  for (const name of ['node-caller', 'py-sync', 'node-state', 'py-state']) {
    const { status, body } = await deployFolder(hearth.url, join(FIXTURES, name), { name });
    expect(status, JSON.stringify(body)).toBe(200);
  }
});

afterAll(async () => {
  await hearth?.stop();
  await collector?.close();
  await loki?.close();
  await rm(configDir, { recursive: true, force: true });
});

function spansOf(traceId: string): ReceivedSpan[] {
  return collector.spans.filter((span) => span.traceId === traceId);
}

async function waitForSpans(traceId: string, count: number): Promise<ReceivedSpan[]> {
  return eventually(
    `${count} spans of trace ${traceId}`,
    () => {
      const spans = spansOf(traceId);
      return spans.length >= count ? spans : undefined;
    },
    { timeoutMs: 15_000 },
  );
}

function one(spans: ReceivedSpan[], predicate: (span: ReceivedSpan) => boolean, what: string): ReceivedSpan {
  const found = spans.filter(predicate);
  expect(found, `${what} among ${spans.map((span) => span.name).join(', ')}`).toHaveLength(1);
  return found[0] as ReceivedSpan;
}

describe('traces', () => {
  it('continues a client traceparent through a function and across ctx.invoke', async () => {
    const response = await invoke(hearth.url, 'node-caller', {
      headers: { traceparent: `00-${TRACE}-${CLIENT_SPAN}-01` },
    });
    expect(response.status, response.text).toBe(200);
    const callerId = response.headers.get('x-hearth-invocation-id') ?? '';
    const spans = await waitForSpans(TRACE, 4);
    const callerRequest = one(spans, (span) => span.name === 'GET /function/node-caller', 'the gateway span');
    expect(callerRequest.kind).toBe(2);
    expect(callerRequest.parentSpanId).toBe(CLIENT_SPAN);
    expect(callerRequest.spanId).toBe(requestSpanIdOf(callerId));
    expect(callerRequest.attributes).toMatchObject({
      'faas.invocation_id': callerId,
      'faas.name': 'node-caller',
      'http.response.status_code': 200,
      'hearth.trigger': 'http',
    });
    expect(callerRequest.resource['service.name']).toBe('hearth');
    expect(callerRequest.encoding).toBe('protobuf');
    const callerExec = one(
      spans,
      (span) => span.name === 'execute default/node-caller',
      'the execution span',
    );
    expect(callerExec.parentSpanId).toBe(callerRequest.spanId);
    expect(callerExec.spanId).toBe(executionSpanIdOf(callerId));
    expect(
      callerExec.startNs >= callerRequest.startNs && callerExec.endNs <= callerRequest.endNs + 1_000_000n,
    ).toBe(true);
    // The callee joined the same trace, under the caller's execution span.
    const calleeRequest = one(
      spans,
      (span) => span.name === 'invoke default/py-sync',
      "the callee's request span",
    );
    expect(calleeRequest.parentSpanId).toBe(callerExec.spanId);
    expect(calleeRequest.attributes['hearth.trigger']).toBe('invoke');
    const calleeId = String(calleeRequest.attributes['faas.invocation_id']);
    const calleeExec = one(
      spans,
      (span) => span.name === 'execute default/py-sync',
      "the callee's execution span",
    );
    expect(calleeExec.parentSpanId).toBe(calleeRequest.spanId);
    expect(calleeExec.spanId).toBe(executionSpanIdOf(calleeId));
  });

  it('gives functions ctx.traceId and a traceparent for their own calls (Node and Python)', async () => {
    const node = await invoke(hearth.url, 'node-state', {
      headers: { traceparent: `00-${TRACE}-${CLIENT_SPAN}-01` },
    });
    const nodeId = node.headers.get('x-hearth-invocation-id') ?? '';
    expect(node.json()).toMatchObject({
      traceId: TRACE,
      traceparent: `00-${TRACE}-${executionSpanIdOf(nodeId)}-01`,
    });
    const py = await invoke(hearth.url, 'py-state', {
      headers: { traceparent: `00-${TRACE}-${CLIENT_SPAN}-01` },
    });
    const pyId = py.headers.get('x-hearth-invocation-id') ?? '';
    const expected = `00-${TRACE}-${executionSpanIdOf(pyId)}-01`;
    expect(py.json()).toMatchObject({ trace_id: TRACE, traceparent: expected, env_traceparent: expected });
    // Without a traceparent the invocation starts its own trace, named after its id.
    const own = await invoke(hearth.url, 'node-state');
    const ownId = own.headers.get('x-hearth-invocation-id') ?? '';
    expect((own.json() as { traceId: string }).traceId).toBe(traceIdOf(ownId));
    await waitForSpans(traceIdOf(ownId), 2);
  });

  it('records a cold start with its phases, and says so in Server-Timing', async () => {
    const released = await api(hearth.url, `${functionApiPath('py-sync')}/instances`, { method: 'DELETE' });
    expect(released.status, released.text).toBe(200);
    const response = await invoke(hearth.url, 'py-sync');
    expect(response.status).toBe(200);
    expect(response.headers.get('x-hearth-cold-start')).toBe('1');
    const timing = response.headers.get('server-timing') ?? '';
    for (const metric of [
      'queue',
      'cold',
      'cold-code',
      'cold-stemcell',
      'cold-attach',
      'cold-load',
      'exec',
      'total',
    ])
      expect(timing, timing).toMatch(new RegExp(`(^|, )${metric};dur=\\d+(\\.\\d+)?`));
    const id = response.headers.get('x-hearth-invocation-id') ?? '';
    const spans = await waitForSpans(traceIdOf(id), 7);
    const cold = one(spans, (span) => span.name === 'cold start', 'the cold start span');
    expect(cold.parentSpanId).toBe(requestSpanIdOf(id));
    const phases = spans.filter((span) => span.parentSpanId === cold.spanId).map((span) => span.name);
    expect(phases.sort()).toEqual([
      'attach code and dependency layer',
      'code checkout',
      'load handler',
      'stem cell',
    ]);
    const request = one(spans, (span) => span.spanId === requestSpanIdOf(id), 'the request span');
    expect(request.attributes['faas.coldstart']).toBe(true);
  });

  it('records nothing for a client that asked not to sample, yet passes its trace on', async () => {
    const unsampled = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
    const response = await invoke(hearth.url, 'node-state', {
      headers: { traceparent: `00-${unsampled}-${CLIENT_SPAN}-00` },
    });
    expect((response.json() as { traceparent: string }).traceparent).toMatch(
      new RegExp(`^00-${unsampled}-[0-9a-f]{16}-00$`),
    );
    // A later, sampled request's spans arriving proves the unsampled one's would have too.
    const later = await invoke(hearth.url, 'node-state');
    await waitForSpans(traceIdOf(later.headers.get('x-hearth-invocation-id') ?? ''), 2);
    expect(spansOf(unsampled)).toEqual([]);
  });

  it('starts a new trace when the traceparent is malformed', async () => {
    const response = await invoke(hearth.url, 'node-state', { headers: { traceparent: 'not-a-trace' } });
    const id = response.headers.get('x-hearth-invocation-id') ?? '';
    expect((response.json() as { traceId: string }).traceId).toBe(traceIdOf(id));
  });
});

describe('Loki', () => {
  it('ships function output with the function as labels and the invocation in the line', async () => {
    const response = await invoke(hearth.url, 'py-sync');
    const id = response.headers.get('x-hearth-invocation-id') ?? '';
    const entry = await eventually(
      'the log line in Loki',
      () => loki.entries.find((candidate) => candidate.line.includes(`py log ${id}`)),
      { timeoutMs: 10_000 },
    );
    expect(entry.labels).toMatchObject({
      service: 'hearth',
      namespace: 'default',
      function: 'py-sync',
      stream: 'stdout',
      env: 'test',
    });
    expect(JSON.parse(entry.line)).toMatchObject({ msg: `py log ${id}`, invocation: id });
    expect(BigInt(entry.ns)).toBeGreaterThan(BigInt(Date.now() - 60_000) * 1_000_000n);
  });
});
