/**
 * @module A Function CR's code from a URL: a gzip bomb or an archive of too many entries is refused at the
 * operator's caps (CodeTooLarge, naming the cap) before it fills the disk; an ordinary archive is packed.
 */

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as tar from 'tar';
import { afterEach, describe, expect, it } from 'vitest';
import { gzipBomb, tarMember as member, tarGz } from '../../test/support/archives.js';
import { CODE_LIMITS, CodeError, packCode } from './code.js';

const MANIFEST = { apiVersion: 'hearth.dev/v1', kind: 'Function', metadata: { name: 'f' }, spec: {} };

let server: Server | undefined;

afterEach(async () => {
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
  server = undefined;
});

async function serve(body: Buffer): Promise<string> {
  server = createServer((_request, response) =>
    response.writeHead(200, { 'content-type': 'application/gzip' }).end(body),
  );
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/code.tar.gz`;
}

async function refusal(url: string): Promise<CodeError> {
  const error = await packCode(MANIFEST, { url }, async () => undefined).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(CodeError);
  return error as CodeError;
}

describe('a code URL', () => {
  it('that unpacks past the cap (a gzip bomb) is refused as CodeTooLarge naming the cap', async () => {
    // A few hundred KiB on the wire, more than the cap once inflated.
    const bomb = gzipBomb(CODE_LIMITS.maxUnpackedBytes + 1024);
    expect(bomb.length).toBeLessThan(CODE_LIMITS.maxArchiveBytes);
    const error = await refusal(await serve(bomb));
    expect(error.reason).toBe('CodeTooLarge');
    expect(error.message).toContain(`more than ${CODE_LIMITS.maxUnpackedBytes} bytes`);
    expect(error.message).toContain('256 MiB unpacked');
  });

  it('of more entries than the cap is refused as CodeTooLarge naming the count', async () => {
    const many = Array.from({ length: CODE_LIMITS.maxFiles + 1 }, (_, i) => member(`f${i}`, Buffer.alloc(0)));
    const error = await refusal(await serve(tarGz(many)));
    expect(error.reason).toBe('CodeTooLarge');
    expect(error.message).toContain(`more than ${CODE_LIMITS.maxFiles} entries`);
  });

  it('that is not a .tar.gz is InvalidCode', async () => {
    const error = await refusal(await serve(Buffer.from('not an archive')));
    expect(error.reason).toBe('InvalidCode');
  });

  it('within the caps is packed with the CR as its hearth.yaml', async () => {
    const url = await serve(
      tarGz([
        member('index.js', Buffer.from('export default () => 1;\n')),
        member('hearth.yaml', Buffer.from('x')),
      ]),
    );
    const packed = await packCode(MANIFEST, { url }, async () => undefined);
    const names: string[] = [];
    const lister = tar.t({ onReadEntry: (entry) => names.push(entry.path) });
    await new Promise<void>((resolve, reject) => {
      lister.on('error', reject);
      lister.on('close', resolve);
      lister.end(packed.archive);
    });
    expect(names).toEqual(expect.arrayContaining(['./index.js', './hearth.yaml']));
  });
});
