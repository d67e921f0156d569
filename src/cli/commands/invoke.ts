/** @module `hearth invoke NAME`: one HTTP request to the function through the gateway, like a tiny curl. */

import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import type { Command } from 'commander';
import {
  openBody,
  PLAIN_TYPE_HEADER,
  parseSm4Key,
  SM4_CONTENT_TYPE,
  sealBody,
} from '../../compliance/sm4-gcm.js';
import { type ApiClient, hearthErrorOf, parseJson } from '../client.js';
import { CliError } from '../errors.js';
import { type CliIo, isTty, readAll } from '../io.js';
import {
  addConnectionOptions,
  addNamespaceOption,
  addOutputOption,
  type CommandContext,
  type ConnectionOptions,
  collect,
  connect,
  DEFAULT_NAMESPACE,
  functionName,
  type NamespaceOptions,
  namespaceOf,
  type OutputOptions,
} from '../options.js';
import { writeJson } from '../output.js';

interface InvokeOptions extends ConnectionOptions, NamespaceOptions, OutputOptions {
  readonly data?: string;
  readonly header: readonly string[];
  readonly method?: string;
  readonly path: string;
  readonly query: readonly string[];
  readonly verbose?: boolean;
  readonly async?: boolean;
  readonly callbackUrl?: string;
  readonly encrypt?: boolean;
  readonly keyFile?: string;
}

interface RequestBody {
  readonly bytes: Buffer;
  readonly contentType: string;
}

export function register(program: Command, context: CommandContext): void {
  const command = program
    .command('invoke')
    .description('call a function over HTTP and print its response body')
    .argument('<name>', 'function name')
    .option('-d, --data <data>', 'request body: JSON or text, @FILE to read a file, or - for stdin')
    .option('-H, --header <name=value>', 'request header (repeatable)', collect, [])
    .option('-X, --method <method>', 'HTTP method (default: POST with --data, else GET)')
    .option('--path <path>', 'path after the function name, e.g. /users/42', '/')
    .option('-q, --query <key=value>', 'query parameter (repeatable)', collect, [])
    .option('-v, --verbose', 'show the status and invocation ID on stderr')
    .option(
      '--async',
      'queue the invocation (POST /async-function/NAME): prints its id; `hearth get invocation ID` shows the result',
    )
    .option('--callback-url <url>', 'with --async: where the platform POSTs the result')
    .option('--encrypt', 'seal the body with SM4-GCM (application/hearth-sm4) and open the answer (issue 13)')
    .option('--key-file <file>', 'with --encrypt: the 128-bit SM4 key, 32 hex digits');
  addNamespaceOption(command);
  addOutputOption(command);
  addConnectionOptions(command);
  command.action(async (name: string, options: InvokeOptions) => {
    await invoke(functionName(name), options, context);
  });
}

async function invoke(name: string, options: InvokeOptions, context: CommandContext): Promise<void> {
  const { io } = context;
  const client = connect(options, io, context.version);
  const key = options.encrypt === true ? await readSm4Key(options.keyFile) : undefined;
  if (key === undefined && options.keyFile !== undefined) throw new CliError('--key-file needs --encrypt');
  const plainBody = options.data === undefined ? undefined : await readData(options.data, io);
  const body =
    key === undefined || plainBody === undefined
      ? plainBody
      : { bytes: sealBody(key, plainBody.bytes), contentType: SM4_CONTENT_TYPE };
  const method = (options.method ?? (body === undefined ? 'GET' : 'POST')).toUpperCase();
  if (body !== undefined && (method === 'GET' || method === 'HEAD')) {
    throw new CliError(`--data cannot be sent with ${method}; use --method POST (or PUT, PATCH)`);
  }
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = body.contentType;
  if (key !== undefined && plainBody !== undefined) headers[PLAIN_TYPE_HEADER] = plainBody.contentType;
  for (const header of options.header) {
    const [key, value] = splitPair(header, '--header', /[:=]/);
    headers[key.toLowerCase()] = value;
  }
  const started = performance.now();
  if (options.callbackUrl !== undefined) {
    if (options.async !== true) throw new CliError('--callback-url needs --async');
    headers['x-callback-url'] = options.callbackUrl;
  }
  const path = gatewayPath(name, namespaceOf(options), options.path);
  const target = options.async === true ? path.replace(/^\/function\//, '/async-function/') : path;
  const response = await client.request(target, {
    method,
    query: Object.fromEntries(options.query.map((pair) => splitPair(pair, '--query', /=/))),
    headers,
    body: body?.bytes,
  });
  const bytes = await readBytes(client, response);
  if (options.verbose === true) reportVerbose(response, performance.now() - started, io);
  if (key !== undefined && (response.headers.get('content-type') ?? '').startsWith(SM4_CONTENT_TYPE)) {
    let plain: Buffer;
    try {
      plain = openBody(key, bytes);
    } catch (error) {
      throw new CliError(`the answer could not be opened: ${(error as Error).message}`);
    }
    const headers = new Headers(response.headers);
    headers.set('content-type', response.headers.get(PLAIN_TYPE_HEADER) ?? 'application/octet-stream');
    report(new Response(null, { status: response.status, headers }), plain, options, io);
    return;
  }
  report(response, bytes, options, io);
}

/** The SM4 key of `--encrypt`: a file of 32 hex digits (or 16 raw bytes). */
async function readSm4Key(file: string | undefined): Promise<Buffer> {
  if (file === undefined)
    throw new CliError('--encrypt needs --key-file FILE (32 hex digits: openssl rand -hex 16)');
  const bytes = await readFile(file).catch((error: NodeJS.ErrnoException) => {
    throw new CliError(`--key-file ${file}: cannot read the file (${error.code ?? 'error'})`);
  });
  const key = parseSm4Key(bytes);
  if (key === undefined)
    throw new CliError(`--key-file ${file}: expected a 128-bit SM4 key as 32 hex digits`);
  return key;
}

async function readBytes(client: ApiClient, response: Response): Promise<Buffer> {
  try {
    return Buffer.from(await response.arrayBuffer());
  } catch (error) {
    throw client.networkError(error);
  }
}

/** `/function/NAME`, or `/function/NAME.NAMESPACE` outside the default namespace, then the rest. */
export function gatewayPath(name: string, namespace: string, rest: string): string {
  const qualified = namespace === DEFAULT_NAMESPACE ? name : `${name}.${namespace}`;
  const suffix = rest === '' || rest === '/' ? '' : rest.startsWith('/') ? rest : `/${rest}`;
  return `/function/${qualified}${suffix}`;
}

async function readData(data: string, io: CliIo): Promise<RequestBody> {
  if (data === '-') return literal(await readAll(io.stdin), 'application/octet-stream');
  if (data.startsWith('@')) {
    const file = data.slice(1);
    const bytes = await readFile(file).catch(() => {
      throw new CliError(`--data ${data}: cannot read ${file}`);
    });
    return {
      bytes,
      contentType: extname(file).toLowerCase() === '.json' ? 'application/json' : 'application/octet-stream',
    };
  }
  return literal(Buffer.from(data), 'text/plain; charset=utf-8');
}

/** Data that parses as JSON is sent as JSON; anything else with the fallback type. */
function literal(bytes: Buffer, fallback: string): RequestBody {
  const text = bytes.toString('utf8');
  const isJson = text.trim() !== '' && parseJson(text) !== undefined;
  return { bytes, contentType: isJson ? 'application/json' : fallback };
}

function splitPair(pair: string, option: string, separator: RegExp): [string, string] {
  const at = pair.search(separator);
  if (at <= 0) throw new CliError(`${option} "${pair}": expected KEY=VALUE`);
  return [pair.slice(0, at).trim(), pair.slice(at + 1).trim()];
}

function reportVerbose(response: Response, elapsedMs: number, io: CliIo): void {
  const invocation = response.headers.get('x-hearth-invocation-id') ?? '-';
  const cold = response.headers.get('x-hearth-cold-start') === '1' ? ', cold start' : '';
  io.stderr.write(`HTTP ${response.status} in ${Math.round(elapsedMs)}ms, invocation ${invocation}${cold}\n`);
}

function report(response: Response, bytes: Buffer, options: InvokeOptions, io: CliIo): void {
  const platformError = hearthErrorOf(parseJson(bytes.toString('utf8')));
  if (options.output === 'json')
    writeJson(io.stdout, {
      status: response.status,
      headers: headersOf(response),
      ...describeBody(response, bytes),
    });
  if (!response.ok && platformError !== undefined) {
    throw new CliError(platformError.message, {
      code: platformError.code,
      invocationId: platformError.invocationId ?? response.headers.get('x-hearth-invocation-id') ?? undefined,
    });
  }
  if (options.output === 'text') writeBody(bytes, io);
  if (!response.ok) throw new CliError(`function answered HTTP ${response.status}`);
}

function writeBody(bytes: Buffer, io: CliIo): void {
  io.stdout.write(bytes);
  // A shell prompt glued to the output is unreadable; a script piping the body gets it byte for byte.
  if (isTty(io.stdout) && bytes.length > 0 && bytes[bytes.length - 1] !== 0x0a) io.stdout.write('\n');
}

function headersOf(response: Response): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of response.headers) if (name !== 'set-cookie') headers[name] = value;
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) headers['set-cookie'] = cookies;
  return headers;
}

/** The body as JSON when it is JSON, as text when it is UTF-8 text, else base64. */
export function describeBody(
  response: Pick<Response, 'headers'>,
  bytes: Buffer,
): { body: unknown; bodyEncoding: 'json' | 'text' | 'base64' } {
  const contentType = response.headers.get('content-type') ?? '';
  const text = decodeUtf8(bytes);
  if (text !== undefined && /\bjson\b/i.test(contentType)) {
    const parsed = parseJson(text);
    if (parsed !== undefined) return { body: parsed, bodyEncoding: 'json' };
  }
  if (text !== undefined) return { body: text, bodyEncoding: 'text' };
  return { body: bytes.toString('base64'), bodyEncoding: 'base64' };
}

function decodeUtf8(bytes: Buffer): string | undefined {
  if (bytes.includes(0)) return undefined;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}
