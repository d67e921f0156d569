/**
 * @module What the per-process wasm guest (bootstrap.mts) and the wasm host (wasm-host.mts, wasm-worker.mts)
 * share of the wasm ABI: the handler naming, the module rewrite that makes its memory an import, and the
 * WASI command's CGI conventions. Pure functions, no state: each guest keeps its own instances and WASI.
 */

/** The invocation as the platform's frames carry it (see src/runtime/ipc/protocol.ts). */
export type InvokeWire = [string, string, string, string, string[], number, string, ...unknown[]];
/** status, flat header list, body. */
export type Answer = [status: number, headers: string[], body: Buffer];

const EMPTY = Buffer.alloc(0);
/** NUL-terminated, as WASI hands strings over. */
export const cString = (text: string): Buffer => Buffer.from(`${text}\0`);

/** `main` → main.wasm `_start`; `main.handle` → main.wasm `handle`; `dir/app.wasm` → that file, `_start`. */
export function parseHandler(handler: string): { file: string; entry: string } {
  if (handler.endsWith('.wasm')) return { file: handler, entry: '_start' };
  const dot = handler.lastIndexOf('.');
  if (dot <= handler.lastIndexOf('/')) return { file: `${handler}.wasm`, entry: '_start' };
  return { file: `${handler.slice(0, dot)}.wasm`, entry: handler.slice(dot + 1) };
}

export function readLeb(bytes: Uint8Array, start: number): [value: number, next: number] {
  let value = 0;
  let shift = 0;
  let at = start;
  for (;;) {
    const byte = bytes[at++];
    if (byte === undefined || shift > 28) throw new Error('malformed LEB128 number');
    value |= (byte & 0x7f) << shift;
    shift += 7;
    if ((byte & 0x80) === 0) return [value >>> 0, at];
  }
}

export function leb(value: number): number[] {
  const out: number[] = [];
  let rest = value >>> 0;
  do {
    let byte = rest & 0x7f;
    rest >>>= 7;
    if (rest !== 0) byte |= 0x80;
    out.push(byte);
  } while (rest !== 0);
  return out;
}

const MEMORY_IMPORT = [...leb(6), ...Buffer.from('hearth'), ...leb(6), ...Buffer.from('memory')];

/**
 * The module with its one memory turned into an import (`hearth.memory`), and that memory's initial size.
 * Written by hand because no well-kept JS library edits wasm binaries this small a way without a toolchain:
 * only the import (2) and memory (5) sections are touched; every index stays the same because an imported
 * memory takes index 0, as the defined one had. The host checked the module at deploy (one memory, 32-bit,
 * not shared, no memory import).
 */
export function importMemory(bytes: Uint8Array): { bytes: Uint8Array; minPages: number; hasStart: boolean } {
  const parts: Uint8Array[] = [bytes.subarray(0, 8)];
  let minPages = -1;
  // A start function (section 8) runs the module's own code at instantiation.
  let hasStart = false;
  let importEntries: number[] | undefined;
  let importsAt = -1;
  let at = 8;
  while (at < bytes.length) {
    const id = bytes[at] as number;
    const [size, start] = readLeb(bytes, at + 1);
    const end = start + size;
    if (id === 8) hasStart = true;
    if (id === 5) {
      const [count, p] = readLeb(bytes, start);
      if (count !== 1) throw new Error(`the module defines ${count} memories; one is supported`);
      const flags = bytes[p] as number;
      if (flags > 1)
        throw new Error('the module memory is shared or 64-bit; a plain 32-bit memory is supported');
      [minPages] = readLeb(bytes, p + 1);
    } else if (id === 2) {
      importsAt = parts.length;
      const [count, p] = readLeb(bytes, start);
      importEntries = [...leb(count + 1), ...bytes.subarray(p, end)];
      parts.push(EMPTY);
    } else {
      // An import section, when the module has none, goes before the first section that must follow it.
      if (importsAt < 0 && id !== 0 && id !== 1) {
        importsAt = parts.length;
        importEntries = [...leb(1)];
        parts.push(EMPTY);
      }
      parts.push(bytes.subarray(at, end));
    }
    at = end;
  }
  if (minPages < 0) return { bytes, minPages: -1, hasStart };
  // Flags 0: no maximum in the import; the memory given at instantiation carries the cap.
  const entries = [...(importEntries ?? leb(1)), ...MEMORY_IMPORT, 2, 0, ...leb(minPages)];
  const section = Uint8Array.from([2, ...leb(entries.length), ...entries]);
  if (importsAt < 0) parts.push(section);
  else parts[importsAt] = section;
  return { bytes: Buffer.concat(parts), minPages, hasStart };
}

/** RFC 3875's meta-variables, as WAGI gives them; each request header also as HTTP_<NAME>. */
export function cgiEnv(wire: InvokeWire, length: number): Buffer[] {
  const [invocationId, method, path, rawQuery, rawHeaders, , sourceIp] = wire;
  const env: Record<string, string> = {
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_PROTOCOL: 'HTTP/1.1',
    SERVER_SOFTWARE: 'hearth',
    REQUEST_METHOD: method,
    PATH_INFO: path,
    QUERY_STRING: rawQuery,
    REMOTE_ADDR: sourceIp,
    HEARTH_INVOCATION_ID: invocationId,
  };
  if (length > 0) env.CONTENT_LENGTH = String(length);
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    const value = rawHeaders[i + 1] as string;
    if (name === 'content-type') env.CONTENT_TYPE = value;
    else if (name === 'host') env.SERVER_NAME = value.replace(/:\d+$/, '');
    const key = `HTTP_${name.toUpperCase().replace(/-/g, '_')}`;
    env[key] = env[key] === undefined ? value : `${env[key]}, ${value}`;
  }
  return Object.entries(env).map(([key, value]) => cString(`${key}=${value}`));
}

const HEADER_LINE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:/;

/**
 * CGI's response (RFC 3875 §6): header lines, a blank line, the body. `Status: 404 Not Found` sets the
 * status; `Location` without a Status is a 302. Output whose first line is not a header is all body
 * (`text/plain; charset=utf-8`), so a module that only prints still answers.
 */
export function parseCgi(output: Buffer): Answer {
  const firstLineEnd = output.indexOf(10);
  const firstLine = output.toString('latin1', 0, firstLineEnd < 0 ? output.length : firstLineEnd);
  if (!HEADER_LINE.test(firstLine)) return [200, ['content-type', 'text/plain; charset=utf-8'], output];
  let at = 0;
  let status = 0;
  const headers: string[] = [];
  let location = false;
  while (at < output.length) {
    let end = output.indexOf(10, at);
    if (end < 0) end = output.length;
    const line = output.toString('latin1', at, end > at && output[end - 1] === 13 ? end - 1 : end);
    at = end + 1;
    if (line === '') break;
    const colon = line.indexOf(':');
    if (colon <= 0) throw cgiError(`"${line.slice(0, 80)}" is not a header line (Name: value)`);
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    const lower = name.toLowerCase();
    if (lower === 'status') {
      status = Number.parseInt(value, 10);
      if (!Number.isInteger(status)) throw cgiError(`Status "${value}" does not start with a number`);
    } else {
      if (lower === 'location') location = true;
      headers.push(name, value);
    }
  }
  return [
    status !== 0 ? status : location ? 302 : 200,
    headers,
    output.subarray(Math.min(at, output.length)),
  ];
}

export function cgiError(message: string): Error {
  return Object.assign(new Error(`the module's CGI header block is malformed: ${message}`), {
    name: 'WasmCgiError',
  });
}

const WASI_MODULE = 'wasi_snapshot_preview1';
const text = (value: string): number[] => [value.length, ...Buffer.from(value)];
const section = (id: number, content: number[]): number[] => [id, content.length, ...content];

/**
 * A WASI command that writes "ok" to stdout: `(import "wasi_snapshot_preview1" "fd_write")`, one memory. Both
 * guests run it before they report ready, so a cold start does not pay WebAssembly's, node:wasi's and their
 * own code's first-run costs.
 */
export function warmModule(): Uint8Array {
  return Uint8Array.from([
    ...[0, 97, 115, 109, 1, 0, 0, 0],
    // types: (i32 i32 i32 i32) -> i32, and () -> ()
    ...section(1, [2, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0]),
    ...section(2, [1, ...text(WASI_MODULE), ...text('fd_write'), 0, 0]),
    ...section(3, [1, 1]),
    ...section(5, [1, 0, 1]),
    ...section(7, [2, ...text('memory'), 2, 0, ...text('_start'), 0, 1]),
    // _start: fd_write(1, iovs = 0, 1, nwritten = 8)
    ...section(10, [1, 13, 0, 0x41, 1, 0x41, 0, 0x41, 1, 0x41, 8, 0x10, 0, 0x1a, 0x0b]),
    // the iovec {16, 2} at 0, "ok" at 16
    ...section(11, [2, 0, 0x41, 0, 0x0b, 8, 16, 0, 0, 0, 2, 0, 0, 0, 0, 0x41, 16, 0x0b, 2, 111, 107]),
  ]);
}
