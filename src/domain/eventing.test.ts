import { describe, expect, it } from 'vitest';
import type { CloudEventAttributes } from './deployment.js';
import { deliveryPolicy, filterMatches, parseEventTriggerManifest } from './eventing.js';

const event: CloudEventAttributes = {
  specversion: '1.0',
  id: '1',
  source: '/shop/web',
  type: 'com.shop.order.paid',
  extensions: { region: 'eu1', attempt: 2 },
};

describe('Trigger filters', () => {
  it('exact, prefix and suffix all hold, on context attributes and extensions', () => {
    expect(filterMatches(undefined, event)).toBe(true);
    expect(filterMatches({ attributes: { type: 'com.shop.order.paid', region: 'eu1' } }, event)).toBe(true);
    expect(filterMatches({ prefix: { source: '/shop/' }, suffix: { type: '.paid' } }, event)).toBe(true);
    expect(filterMatches({ attributes: { attempt: '2' } }, event)).toBe(true);
    expect(filterMatches({ attributes: { region: 'us1' } }, event)).toBe(false);
    expect(filterMatches({ prefix: { subject: '' } }, event)).toBe(false);
    expect(filterMatches({ suffix: { type: '.created' } }, event)).toBe(false);
  });

  it('reads Knative delivery options: retries after the first, ISO 8601 delays, a dead-letter function', () => {
    const manifest = parseEventTriggerManifest({
      apiVersion: 'hearth.dev/v1',
      kind: 'Trigger',
      metadata: { name: 't' },
      spec: {
        subscriber: { function: 'fn' },
        delivery: { retry: 4, backoffDelay: 'PT0.2S', deadLetter: { function: 'dlq.ops' } },
      },
    });
    expect(deliveryPolicy(manifest)).toMatchObject({ attempts: 5, backoffMs: 200, deadLetter: 'dlq.ops' });
  });

  it('names the field of a bad filter', () => {
    expect(() =>
      parseEventTriggerManifest({
        apiVersion: 'hearth.dev/v1',
        kind: 'Trigger',
        metadata: { name: 't' },
        spec: { subscriber: { function: 'fn' }, filter: { prefix: { 'Bad-Name': 'x' } } },
      }),
    ).toThrow(/spec\.filter\.prefix/);
  });
});
