import { describe, expect, it } from 'vitest';
import {
  executionSpanIdOf,
  formatTraceparent,
  parseTraceparent,
  requestSpanIdOf,
  traceFor,
  traceIdOf,
} from './trace.js';

const ID = '9648e155-a64d-444f-b1ff-4ce72ba303de';

describe('W3C trace context', () => {
  it('parses a valid traceparent and refuses malformed ones, as the spec says', () => {
    expect(parseTraceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')).toEqual({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      parentId: 'b7ad6b7169203331',
      flags: 1,
    });
    expect(parseTraceparent(' 00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-00 ')?.flags).toBe(0);
    // A later version may append fields; version 00 may not.
    expect(parseTraceparent('01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra')?.traceId).toBe(
      '0af7651916cd43dd8448eb211c80319c',
    );
    for (const bad of [
      undefined,
      '',
      'garbage',
      '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra',
      'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      '00-00000000000000000000000000000000-b7ad6b7169203331-01',
      '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01',
      '00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01',
    ])
      expect(parseTraceparent(bad), String(bad)).toBeUndefined();
  });

  it('derives an invocation’s ids from its UUID: distinct, well-formed, stable', () => {
    expect(traceIdOf(ID)).toBe('9648e155a64d444fb1ff4ce72ba303de');
    expect(requestSpanIdOf(ID)).toBe('9648e155a64d444f');
    expect(executionSpanIdOf(ID)).toBe('b1ff4ce72ba303de');
    expect(formatTraceparent(traceIdOf(ID), executionSpanIdOf(ID), 1)).toBe(
      '00-9648e155a64d444fb1ff4ce72ba303de-b1ff4ce72ba303de-01',
    );
  });

  it('continues an incoming trace under the invocation’s execution span', () => {
    const incoming = parseTraceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00');
    expect(traceFor(ID, incoming, 'vendor=1')).toEqual({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b1ff4ce72ba303de',
      parentSpanId: 'b7ad6b7169203331',
      flags: 0,
      traceState: 'vendor=1',
    });
    expect(traceFor(ID, undefined)).toMatchObject({
      traceId: traceIdOf(ID),
      parentSpanId: undefined,
      flags: 1,
    });
  });
});
