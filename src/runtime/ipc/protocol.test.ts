import { describe, expect, it } from 'vitest';
import {
  CONTROL_FRAME_BYTES,
  checkResult,
  type Frame,
  FrameDecoder,
  FrameType,
  FrameWriter,
  writePlainJson,
} from './protocol.js';

function roundTrip(chunks: (data: Buffer) => Buffer[]): Frame[] {
  const writer = new FrameWriter();
  writer.add(FrameType.Invoke, 7, ['id', 'GET', '/', '', ['Host', 'x'], 1, '::1'], Buffer.from('body bytes'));
  writer.add(
    FrameType.Result,
    8,
    [200, ['content-type', 'text/plain; charset=utf-8']],
    Buffer.from('ünïcödé'),
  );
  writer.add(FrameType.Shutdown, 0, undefined);
  writer.add(FrameType.Log, 9, 1, Buffer.alloc(10_000, 0x61));
  const data = writer.take();
  if (data === undefined) throw new Error('nothing written');
  const frames: Frame[] = [];
  const decoder = new FrameDecoder((frame) => frames.push({ ...frame, body: Buffer.from(frame.body) }));
  for (const chunk of chunks(data)) decoder.push(chunk);
  return frames;
}

describe('instance wire protocol', () => {
  it('round-trips frames written back to back and read whole', () => {
    const frames = roundTrip((data) => [data]);
    expect(frames.map((f) => [f.type, f.id])).toEqual([
      [FrameType.Invoke, 7],
      [FrameType.Result, 8],
      [FrameType.Shutdown, 0],
      [FrameType.Log, 9],
    ]);
    expect(frames[0]?.meta).toEqual(['id', 'GET', '/', '', ['Host', 'x'], 1, '::1']);
    expect(frames[0]?.body.toString()).toBe('body bytes');
    expect(frames[1]?.body.toString()).toBe('ünïcödé');
    expect(frames[2]?.meta).toBeUndefined();
    expect(frames[3]?.body.length).toBe(10_000);
  });

  it('reassembles frames split at every possible byte boundary', () => {
    const whole = roundTrip((data) => [data]);
    const sizes = [1, 3, 7, 13, 4096];
    for (const size of sizes) {
      const split = roundTrip((data) => {
        const parts: Buffer[] = [];
        for (let offset = 0; offset < data.length; offset += size)
          parts.push(data.subarray(offset, offset + size));
        return parts;
      });
      expect(split.map((f) => [f.type, f.id, f.meta, f.body.toString('base64')])).toEqual(
        whole.map((f) => [f.type, f.id, f.meta, f.body.toString('base64')]),
      );
    }
  });

  it('refuses a corrupt length prefix', () => {
    const decoder = new FrameDecoder(() => {});
    expect(() => decoder.push(Buffer.from([0, 0, 0, 2, 1, 2]))).toThrow(/corrupt frame length/);
  });

  it('writes plain metas byte for byte as JSON.stringify would, and declines the rest', () => {
    const plain: unknown[] = [
      [
        '3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b',
        'GET',
        '/a/b',
        'x=1&y=2',
        ['Host', '127.0.0.1:8080'],
        1764409593123,
        '::1',
      ],
      [200, ['content-type', 'application/json']],
      [0, -0, 1.5, -2e-7, 1e21, null, undefined, true, false, [], ['']],
      'just a string',
      42,
      null,
    ];
    for (const value of plain) {
      const buffer = Buffer.alloc(512);
      const end = writePlainJson(buffer, 3, value, buffer.length);
      expect(buffer.toString('utf8', 3, end)).toBe(JSON.stringify(value));
    }
    const declined: unknown[] = [
      ['ünïcödé'],
      ['a "quoted" value'],
      ['back\\slash'],
      ['tab\there'],
      [{ an: 'object' }],
      [Number.NaN],
      [Number.POSITIVE_INFINITY],
    ];
    for (const value of declined) expect(writePlainJson(Buffer.alloc(512), 0, value, 512)).toBe(-1);
    // Too little room is declined too, never written past the limit.
    const small = Buffer.alloc(16, 0x2a);
    expect(writePlainJson(small, 0, ['0123456789', 'abcdef'], 12)).toBe(-1);
    expect(small.subarray(12).toString()).toBe('****');
  });

  it('round-trips metas on both paths, across a batch that outgrows the writer buffer', () => {
    const writer = new FrameWriter();
    const metas: unknown[] = [];
    for (let i = 0; i < 200; i++) {
      const meta =
        i % 3 === 0
          ? [`id-${i}`, 'POST', '/ünïcödé', '', ['X-Quote', '"q"'], i, '127.0.0.1']
          : [`id-${i}`, 'GET', `/path/${i}`, `n=${i}`, ['Host', 'h'], i, '127.0.0.1'];
      metas.push(meta);
      writer.add(FrameType.Invoke, i, meta, Buffer.from(`body ${i}`));
    }
    const data = writer.take();
    if (data === undefined) throw new Error('nothing written');
    const frames: Frame[] = [];
    new FrameDecoder((frame) => frames.push(frame)).push(data);
    expect(frames.map((f) => f.meta)).toEqual(metas);
    expect(frames.map((f) => f.body.toString())).toEqual(metas.map((_, i) => `body ${i}`));
  });

  it('reuses an unchanged Result meta, frozen, and parses a changed one anew', () => {
    const writer = new FrameWriter();
    const ok = [200, ['content-type', 'application/json']];
    const created = [201, ['content-type', 'application/json', 'location', '/orders/7']];
    for (const [id, meta] of [ok, ok, created, ok].entries()) writer.add(FrameType.Result, id, meta);
    const data = writer.take();
    if (data === undefined) throw new Error('nothing written');
    const metas: unknown[] = [];
    new FrameDecoder((frame) => metas.push(frame.meta)).push(data);
    expect(metas).toEqual([ok, ok, created, ok]);
    expect(metas[1]).toBe(metas[0]);
    expect(Object.isFrozen(metas[0])).toBe(true);
    expect(Object.isFrozen((metas[0] as unknown[])[1])).toBe(true);
  });

  it('refuses a frame longer than its type allows from its first five bytes, before buffering it', () => {
    const decoder = new FrameDecoder(() => {});
    decoder.setLimit(FrameType.Result, 7 * 1024 * 1024, 'limits.maxBody is 6 MiB, plus 1 MiB');
    const header = Buffer.alloc(5);
    header.writeUInt32BE(9 + 900 * 1024 * 1024, 0);
    header[4] = FrameType.Result;
    decoder.push(header.subarray(0, 3));
    expect(() => decoder.push(header.subarray(3))).toThrow(
      `it sent a Result frame of ${9 + 900 * 1024 * 1024} bytes; at most ${7 * 1024 * 1024} bytes are accepted (limits.maxBody is 6 MiB, plus 1 MiB)`,
    );
    // Log and instance-level frames have the small cap whatever the function's limits.
    const log = Buffer.alloc(5);
    log.writeUInt32BE(CONTROL_FRAME_BYTES + 1, 0);
    log[4] = FrameType.Log;
    expect(() => new FrameDecoder(() => {}).push(log)).toThrow(/Log frame of 1048577 bytes/);
  });

  it('reads a large frame arriving in socket-sized pieces into one buffer, and what follows it', () => {
    const writer = new FrameWriter();
    const big = Buffer.alloc(3 * 1024 * 1024 + 7);
    for (let i = 0; i < big.length; i++) big[i] = i % 251;
    writer.add(FrameType.Result, 1, [200, ['content-type', 'application/octet-stream']], big);
    writer.add(FrameType.Log, 2, 1, Buffer.from('after'));
    const data = writer.take();
    if (data === undefined) throw new Error('nothing written');
    const frames: Frame[] = [];
    const decoder = new FrameDecoder((frame) => frames.push(frame));
    decoder.setLimit(FrameType.Result, 4 * 1024 * 1024, '');
    for (let offset = 0; offset < data.length; offset += 65536)
      decoder.push(data.subarray(offset, offset + 65536));
    expect(frames.map((f) => f.type)).toEqual([FrameType.Result, FrameType.Log]);
    expect(frames[0]?.body.equals(big)).toBe(true);
    expect(frames[1]?.body.toString()).toBe('after');
  });

  it('lower-cases response header names and drops framing and hop-by-hop headers in any case', () => {
    expect(
      checkResult([
        201,
        [
          'Content-Type',
          'text/plain',
          'Transfer-Encoding',
          'chunked',
          'CONTENT-LENGTH',
          '5',
          'Connection',
          'close',
          'Keep-Alive',
          'timeout=5',
          'Upgrade',
          'h2c',
          'Trailer',
          'x',
          'TE',
          'trailers',
          'Proxy-Connection',
          'keep-alive',
          'Set-Cookie',
          'a=1',
          'set-cookie',
          'b=2',
          'X-Count',
          5,
        ],
      ]),
    ).toEqual([
      201,
      ['content-type', 'text/plain', 'set-cookie', 'a=1', 'set-cookie', 'b=2', 'x-count', '5'],
    ]);
  });

  it('says what is wrong with a response it refuses', () => {
    expect(checkResult([200, ['X Bad', 'v']])).toMatch(/^header name "X Bad" is not a valid HTTP token$/);
    expect(checkResult([200, ['x:y', 'v']])).toMatch(/not a valid HTTP token/);
    expect(checkResult([200, ['', 'v']])).toMatch(/not a valid HTTP token/);
    expect(checkResult([200, ['x', 'a\r\nset-cookie: s=1']])).toMatch(
      /^header x has a value that is not valid in HTTP/,
    );
    expect(checkResult([200, ['x', 'nul\u0000']])).toMatch(/header x has a value/);
    expect(checkResult([200, ['x', '\u010a']])).toMatch(/header x has a value/);
    expect(checkResult([200, ['x', { an: 'object' }]])).toMatch(/header x has a value/);
    expect(checkResult([200, ['x']])).toMatch(/pairs/);
    expect(checkResult([101, []])).toMatch(/^status 101 is not an integer from 200 to 599$/);
    expect(checkResult(['200', []])).toMatch(/status "200"/);
    expect(checkResult({ status: 200 })).toMatch(/not \[status, headers\]/);
    // Tabs and Latin-1 text are valid in a value, as node:http has them.
    expect(checkResult([200, ['x', 'caf\u00e9\tok']])).toEqual([200, ['x', 'caf\u00e9\tok']]);
  });

  it("checks a streamed response's head as it checks a Result, and bounds its chunks by their own limit", () => {
    const writer = new FrameWriter();
    writer.add(FrameType.StreamHead, 3, [
      200,
      ['Content-Type', 'text/plain', 'Transfer-Encoding', 'chunked'],
    ]);
    writer.add(FrameType.StreamHead, 4, [200, ['bad name', 'x']]);
    writer.add(FrameType.StreamChunk, 3, undefined, Buffer.from('first'));
    writer.add(FrameType.StreamEnd, 3, undefined);
    const frames: Frame[] = [];
    const decoder = new FrameDecoder((frame) => frames.push(frame));
    decoder.push(writer.take() ?? Buffer.alloc(0));
    expect(frames.map((f) => [f.type, f.id, f.meta])).toEqual([
      [FrameType.StreamHead, 3, [200, ['content-type', 'text/plain']]],
      [FrameType.StreamHead, 4, 'header name "bad name" is not a valid HTTP token'],
      [FrameType.StreamChunk, 3, undefined],
      [FrameType.StreamEnd, 3, undefined],
    ]);
    expect(frames[2]?.body.toString()).toBe('first');
    decoder.setLimit(FrameType.StreamChunk, 100, 'limits.maxBody');
    const big = new FrameWriter();
    big.add(FrameType.StreamChunk, 3, undefined, Buffer.alloc(200));
    expect(() => decoder.push(big.take() ?? Buffer.alloc(0))).toThrow(
      /StreamChunk frame of 209 bytes; at most 100/,
    );
  });
});
