/** @module A small client for Hearth's HTTP API over Node's fetch: base URL, API key, JSON and NDJSON. */

import type { ErrorBody } from '../domain/errors.js';
import { CliError } from './errors.js';

export const DEFAULT_URL = 'http://127.0.0.1:8080';
export const API_PREFIX = '/api/v1';

export type Query = Readonly<Record<string, string | undefined>>;

export interface RequestOptions {
  readonly method?: string;
  readonly query?: Query;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: RequestInit['body'];
  readonly signal?: AbortSignal | undefined;
}

/** Network failures that mean "nothing is listening there", as opposed to a broken exchange. */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** TLS verification failures: the server is there, but its certificate is not one this process trusts. */
const UNTRUSTED_CERTIFICATE = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

export class ApiClient {
  readonly baseUrl: string;

  constructor(
    baseUrl: string,
    private readonly apiKey: string | undefined,
    private readonly userAgent = 'hearth-cli',
  ) {
    this.baseUrl = normaliseBaseUrl(baseUrl);
  }

  url(path: string, query: Query = {}): URL {
    const url = new URL(`${this.baseUrl}${path}`);
    for (const [key, value] of Object.entries(query))
      if (value !== undefined) url.searchParams.set(key, value);
    return url;
  }

  /** Sends one request; a failure to connect becomes a CliError with the `hearth up` hint. */
  async request(path: string, options: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { 'user-agent': this.userAgent };
    if (this.apiKey !== undefined) headers.authorization = `Bearer ${this.apiKey}`;
    Object.assign(headers, lowerCaseKeys(options.headers ?? {}));
    const init: RequestInit = { method: options.method ?? 'GET', headers, redirect: 'manual' };
    if (options.body !== undefined) {
      init.body = options.body;
      // Node's fetch refuses a streamed request body unless told it is sent before the response is read.
      init.duplex = 'half';
    }
    if (options.signal !== undefined) init.signal = options.signal;
    try {
      return await fetch(this.url(path, options.query), init);
    } catch (error) {
      throw this.networkError(error);
    }
  }

  /** A JSON request and response; non-2xx answers become CliErrors carrying the server's code. */
  async json<T>(path: string, options: RequestOptions & { readonly json?: unknown } = {}): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    let body = options.body;
    if (options.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.json);
    }
    const response = await this.request(path, { ...options, headers, body });
    await ensureOk(response);
    const text = await this.readText(response);
    if (text === '') return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new CliError(`the server at ${this.baseUrl} answered ${path} with something that is not JSON`);
    }
  }

  async readText(response: Response): Promise<string> {
    try {
      return await response.text();
    } catch (error) {
      throw this.networkError(error);
    }
  }

  /** Lines of newline-delimited JSON as they arrive; the connection dropping midway is a CliError. */
  async *ndjson<T>(response: Response): AsyncGenerator<T> {
    if (response.body === null) return;
    const decoder = new TextDecoder();
    let pending = '';
    try {
      for await (const chunk of response.body) {
        pending += decoder.decode(chunk, { stream: true });
        let newline = pending.indexOf('\n');
        while (newline >= 0) {
          const line = pending.slice(0, newline).trim();
          pending = pending.slice(newline + 1);
          if (line !== '') yield parseEventLine<T>(line);
          newline = pending.indexOf('\n');
        }
      }
    } catch (error) {
      if (isAbort(error) || error instanceof CliError) throw error;
      throw this.networkError(error);
    }
    const rest = (pending + decoder.decode()).trim();
    if (rest !== '') yield parseEventLine<T>(rest);
  }

  networkError(error: unknown): Error {
    if (isAbort(error) || error instanceof CliError) return error as Error;
    const code = networkCode(error);
    if (code === 'ECONNREFUSED') {
      return new CliError(`cannot reach Hearth at ${this.baseUrl} (is \`hearth up\` running?)`, {
        cause: error,
      });
    }
    if (code !== undefined && UNTRUSTED_CERTIFICATE.has(code)) {
      // The CLI trusts what Node trusts: the system's CAs plus NODE_EXTRA_CA_CERTS, read at start.
      return new CliError(
        `Hearth at ${this.baseUrl} presented a certificate this machine does not trust (${code}); point NODE_EXTRA_CA_CERTS at the PEM file of its CA (for a self-signed certificate, the certificate itself)`,
        { cause: error },
      );
    }
    if (code !== undefined && UNREACHABLE.has(code)) {
      return new CliError(`cannot reach Hearth at ${this.baseUrl} (${code}; is \`hearth up\` running?)`, {
        cause: error,
      });
    }
    return new CliError(
      `the connection to Hearth at ${this.baseUrl} failed: ${describeNetworkError(error)}`,
      {
        cause: error,
      },
    );
  }
}

/** The server sends the gateway path; people want something they can paste into curl. */
export function invokeUrl(client: Pick<ApiClient, 'baseUrl'>, url: string): string {
  return /^https?:\/\//.test(url) ? url : `${client.baseUrl}${url.startsWith('/') ? '' : '/'}${url}`;
}

/** Throws the server's error (or a plain HTTP status) for any non-2xx response. */
export async function ensureOk(response: Response): Promise<Response> {
  if (response.ok) return response;
  throw await errorFromResponse(response);
}

export async function errorFromResponse(response: Response): Promise<CliError> {
  const text = await response.text().catch(() => '');
  const body = hearthErrorOf(parseJson(text));
  if (body !== undefined)
    return new CliError(body.message, { code: body.code, invocationId: body.invocationId });
  const detail = text.trim() === '' ? '' : `: ${text.trim().slice(0, 200)}`;
  return new CliError(`HTTP ${response.status} ${response.statusText} from ${response.url}${detail}`);
}

/** The `error` member of a Hearth error body, or undefined when the value is anything else. */
export function hearthErrorOf(value: unknown): ErrorBody['error'] | undefined {
  if (value === null || typeof value !== 'object' || !('error' in value)) return undefined;
  const error: unknown = value.error;
  if (error === null || typeof error !== 'object') return undefined;
  if (!('code' in error) || !('message' in error)) return undefined;
  if (typeof error.code !== 'string' || !/^HEARTH_E_[A-Z_]+$/.test(error.code)) return undefined;
  if (typeof error.message !== 'string') return undefined;
  return error as ErrorBody['error'];
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export function isAbort(error: unknown): boolean {
  return error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError');
}

function parseEventLine<T>(line: string): T {
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new CliError(`the server sent a line that is not JSON: ${line.slice(0, 120)}`);
  }
}

function normaliseBaseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(`invalid Hearth URL "${raw}": expected something like ${DEFAULT_URL}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CliError(`invalid Hearth URL "${raw}": expected an http:// or https:// URL`);
  }
  return `${url.origin}${url.pathname}`.replace(/\/+$/, '');
}

function lowerCaseKeys(headers: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value]));
}

/** undici hides the socket error in `cause` (sometimes an AggregateError of one error per address). */
function networkCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 6 && current !== null && typeof current === 'object'; depth++) {
    if ('code' in current && typeof current.code === 'string') return current.code;
    if ('errors' in current && Array.isArray(current.errors) && current.errors.length > 0) {
      current = current.errors[0];
    } else if ('cause' in current) current = current.cause;
    else return undefined;
  }
  return undefined;
}

function describeNetworkError(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current instanceof Error; depth++) {
    if (current.message !== '' && !parts.includes(current.message)) parts.push(current.message);
    current = current.cause;
  }
  return parts.join(': ') || 'unknown error';
}
