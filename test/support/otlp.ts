/**
 * @module A small OTLP/HTTP trace receiver for tests: `POST /v1/traces` in protobuf
 * (`application/x-protobuf`, decoded here from the wire format of opentelemetry-proto's
 * ExportTraceServiceRequest) or JSON (`application/json`), answering as a collector does. Also a Loki
 * push receiver, for the same purpose.
 */

import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly name: string;
  /** 1 internal, 2 server, 3 client… (OTLP SpanKind). */
  readonly kind: number;
  readonly startNs: bigint;
  readonly endNs: bigint;
  readonly attributes: Record<string, string | number | boolean>;
  readonly statusCode: number;
  readonly resource: Record<string, string | number | boolean>;
  /** The encoding it arrived in. */
  readonly encoding: 'protobuf' | 'json';
}

export interface Collector {
  readonly url: string;
  readonly spans: ReceivedSpan[];
  readonly requests: { contentType: string; bytes: number }[];
  close(): Promise<void>;
}

async function body(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function listen(server: Server): Promise<string> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
    ),
  );
}

export async function startCollector(): Promise<Collector> {
  const spans: ReceivedSpan[] = [];
  const requests: { contentType: string; bytes: number }[] = [];
  const server = createServer((req, res) => {
    void body(req).then((data) => {
      const contentType = req.headers['content-type'] ?? '';
      requests.push({ contentType, bytes: data.length });
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      try {
        if (contentType.startsWith('application/x-protobuf')) {
          spans.push(...decodeProtobuf(data));
          res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
        } else if (contentType.startsWith('application/json')) {
          spans.push(...decodeJson(JSON.parse(data.toString('utf8')) as JsonRequest));
          res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        } else res.writeHead(415).end();
      } catch (error) {
        res.writeHead(400).end(String(error));
      }
    });
  });
  const url = await listen(server);
  return { url, spans, requests, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

// --- protobuf wire format --------------------------------------------------------------------------------

type Field = { wire: 0; value: bigint } | { wire: 1 | 2 | 5; value: Buffer };

function readVarint(buffer: Buffer, offset: number): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  let at = offset;
  for (;;) {
    const byte = buffer[at];
    if (byte === undefined) throw new Error('truncated varint');
    at += 1;
    result |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [result, at];
    shift += 7n;
  }
}

/** Every field of one message: field number → values in order. */
function fields(buffer: Buffer): Map<number, Field[]> {
  const out = new Map<number, Field[]>();
  let offset = 0;
  while (offset < buffer.length) {
    const [key, next] = readVarint(buffer, offset);
    offset = next;
    const number = Number(key >> 3n);
    const wire = Number(key & 7n);
    let field: Field;
    if (wire === 0) {
      const [value, after] = readVarint(buffer, offset);
      offset = after;
      field = { wire: 0, value };
    } else if (wire === 1) {
      field = { wire: 1, value: buffer.subarray(offset, offset + 8) };
      offset += 8;
    } else if (wire === 5) {
      field = { wire: 5, value: buffer.subarray(offset, offset + 4) };
      offset += 4;
    } else if (wire === 2) {
      const [length, after] = readVarint(buffer, offset);
      offset = after;
      field = { wire: 2, value: buffer.subarray(offset, offset + Number(length)) };
      offset += Number(length);
    } else throw new Error(`unsupported wire type ${wire}`);
    const list = out.get(number) ?? [];
    list.push(field);
    out.set(number, list);
  }
  return out;
}

const bytesOf = (message: Map<number, Field[]>, n: number): Buffer => {
  const field = message.get(n)?.[0];
  return field !== undefined && field.wire !== 0 ? field.value : Buffer.alloc(0);
};
const all = (message: Map<number, Field[]>, n: number): Buffer[] =>
  (message.get(n) ?? []).flatMap((field) => (field.wire === 2 ? [field.value] : []));
const varint = (message: Map<number, Field[]>, n: number): bigint => {
  const field = message.get(n)?.[0];
  return field?.wire === 0 ? field.value : 0n;
};

function anyValue(buffer: Buffer): string | number | boolean {
  const value = fields(buffer);
  if (value.has(1)) return bytesOf(value, 1).toString('utf8');
  if (value.has(2)) return varint(value, 2) !== 0n;
  if (value.has(3)) return Number(BigInt.asIntN(64, varint(value, 3)));
  if (value.has(4)) return bytesOf(value, 4).readDoubleLE(0);
  return '';
}

function keyValues(list: Buffer[]): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const item of list) {
    const kv = fields(item);
    out[bytesOf(kv, 1).toString('utf8')] = anyValue(bytesOf(kv, 2));
  }
  return out;
}

function decodeProtobuf(data: Buffer): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const resourceSpans of all(fields(data), 1)) {
    const rs = fields(resourceSpans);
    const resource = keyValues(all(fields(bytesOf(rs, 1)), 1));
    for (const scopeSpans of all(rs, 2)) {
      for (const spanBytes of all(fields(scopeSpans), 2)) {
        const span = fields(spanBytes);
        spans.push({
          traceId: bytesOf(span, 1).toString('hex'),
          spanId: bytesOf(span, 2).toString('hex'),
          parentSpanId: bytesOf(span, 4).toString('hex'),
          name: bytesOf(span, 5).toString('utf8'),
          kind: Number(varint(span, 6)),
          startNs: bytesOf(span, 7).readBigUInt64LE(0),
          endNs: bytesOf(span, 8).readBigUInt64LE(0),
          attributes: keyValues(all(span, 9)),
          statusCode: Number(varint(fields(bytesOf(span, 15)), 3)),
          resource,
          encoding: 'protobuf',
        });
      }
    }
  }
  return spans;
}

// --- OTLP/JSON -------------------------------------------------------------------------------------------

interface JsonAttribute {
  key: string;
  value: { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };
}
interface JsonRequest {
  resourceSpans?: {
    resource?: { attributes?: JsonAttribute[] };
    scopeSpans?: {
      spans?: {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind: number;
        startTimeUnixNano: string | number;
        endTimeUnixNano: string | number;
        attributes?: JsonAttribute[];
        status?: { code?: number };
      }[];
    }[];
  }[];
}

function jsonAttributes(list: JsonAttribute[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const { key, value } of list ?? [])
    out[key] =
      value.stringValue ??
      value.boolValue ??
      (value.intValue === undefined ? (value.doubleValue ?? '') : Number(value.intValue));
  return out;
}

function decodeJson(request: JsonRequest): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const resourceSpans of request.resourceSpans ?? []) {
    const resource = jsonAttributes(resourceSpans.resource?.attributes);
    for (const scope of resourceSpans.scopeSpans ?? [])
      for (const span of scope.spans ?? [])
        spans.push({
          traceId: span.traceId,
          spanId: span.spanId,
          parentSpanId: span.parentSpanId ?? '',
          name: span.name,
          kind: span.kind,
          startNs: BigInt(span.startTimeUnixNano),
          endNs: BigInt(span.endTimeUnixNano),
          attributes: jsonAttributes(span.attributes),
          statusCode: span.status?.code ?? 0,
          resource,
          encoding: 'json',
        });
  }
  return spans;
}

// --- Loki ------------------------------------------------------------------------------------------------

export interface LokiEntry {
  readonly labels: Record<string, string>;
  readonly ns: string;
  readonly line: string;
}

export interface LokiReceiver {
  readonly url: string;
  readonly entries: LokiEntry[];
  close(): Promise<void>;
}

/** Accepts Loki's JSON push API (`POST /loki/api/v1/push`, `{streams:[{stream, values:[[ns, line]]}]}`). */
export async function startLoki(): Promise<LokiReceiver> {
  const entries: LokiEntry[] = [];
  const server = createServer((req, res) => {
    void body(req).then((data) => {
      if (req.method !== 'POST' || req.url !== '/loki/api/v1/push') {
        res.writeHead(404).end();
        return;
      }
      const push = JSON.parse(data.toString('utf8')) as {
        streams: { stream: Record<string, string>; values: [string, string][] }[];
      };
      for (const stream of push.streams)
        for (const [ns, line] of stream.values) entries.push({ labels: stream.stream, ns, line });
      res.writeHead(204).end();
    });
  });
  const url = await listen(server);
  return { url, entries, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
