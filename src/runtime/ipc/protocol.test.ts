import { describe, expect, it } from 'vitest';
import { type Frame, FrameDecoder, FrameType, FrameWriter } from './protocol.js';

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
});
