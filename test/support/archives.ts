/** @module Hand-made .tar.gz archives for the tests of code intake: a member at a time, a gzip bomb. */

import { gzipSync } from 'node:zlib';
import * as tar from 'tar';

/** One tar member (a regular file): its header, then its content padded to a block. */
export function tarMember(path: string, content: Buffer): Buffer {
  const header = new tar.Header({
    path,
    size: content.length,
    type: 'File',
    mode: 0o644,
    mtime: new Date(0),
  });
  header.encode();
  const padding = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([header.block as Buffer, content, padding]);
}

/** The members, the end-of-archive marker, gzipped. */
export function tarGz(members: readonly Buffer[]): Buffer {
  return gzipSync(Buffer.concat([...members, Buffer.alloc(1024)]), { level: 1 });
}

/** One file of `bytes` zeros: about a thousandth of that on the wire. */
export function gzipBomb(bytes: number): Buffer {
  return tarGz([tarMember('zeros.bin', Buffer.alloc(bytes))]);
}
