import { describe, expect, it } from 'vitest';
import { HearthError } from '../domain/errors.js';
import { attributesFromHeaders, eventFromJson } from './events-ingress.js';

const CONTEXT = { specversion: '1.0', id: 'e1', source: '/s', type: 't' };

function refusal(fn: () => unknown): { code: string; message: string; field: unknown } {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(HearthError);
    const failure = error as HearthError;
    return { code: failure.code, message: failure.message, field: failure.details?.field };
  }
  throw new Error('expected a refusal');
}

describe('structured-mode events', () => {
  it('turns JSON data into a JSON body and keeps its content type', () => {
    const event = eventFromJson({ ...CONTEXT, data: { a: 1 }, region: 'eu', n: 3, flag: true }, '');
    expect(event.data.toString()).toBe('{"a":1}');
    expect(event.attributes).toMatchObject({
      datacontenttype: 'application/json',
      extensions: { region: 'eu', n: 3, flag: true },
    });
  });

  it('keeps a string with a textual content type as the text itself, and decodes data_base64', () => {
    expect(eventFromJson({ ...CONTEXT, datacontenttype: 'text/plain', data: 'hi' }, '').data.toString()).toBe(
      'hi',
    );
    expect(
      eventFromJson({ ...CONTEXT, datacontenttype: 'application/json', data: 'hi' }, '').data.toString(),
    ).toBe('"hi"');
    const bytes = eventFromJson({ ...CONTEXT, data_base64: 'AAH/' }, '');
    expect([...bytes.data]).toEqual([0, 1, 255]);
    expect(bytes.attributes.datacontenttype).toBe('application/octet-stream');
  });

  it('treats a null attribute as absent and refuses bad ones, naming them with their place in a batch', () => {
    expect(refusal(() => eventFromJson({ ...CONTEXT, id: null }, '[2].'))).toMatchObject({
      code: 'HEARTH_E_VALIDATION',
      field: '[2].id',
    });
    expect(refusal(() => eventFromJson({ ...CONTEXT, id: '' }, '')).field).toBe('id');
    expect(refusal(() => eventFromJson({ ...CONTEXT, time: 'yesterday' }, '')).field).toBe('time');
    expect(refusal(() => eventFromJson({ ...CONTEXT, My_Ext: 'x' }, '')).field).toBe('My_Ext');
    expect(refusal(() => eventFromJson({ ...CONTEXT, nested: { a: 1 } }, '')).field).toBe('nested');
    expect(refusal(() => eventFromJson({ ...CONTEXT, data: 1, data_base64: 'AA==' }, '')).field).toBe(
      'data_base64',
    );
    expect(refusal(() => eventFromJson({ ...CONTEXT, data_base64: 'not base64!' }, '')).field).toBe(
      'data_base64',
    );
    expect(refusal(() => eventFromJson('an event', '[0].')).message).toContain('event [0] is a string');
  });
});

describe('binary-mode headers', () => {
  it('reads ce-* headers case-insensitively, percent-decoded, with content-type as datacontenttype', () => {
    const attributes = attributesFromHeaders([
      'CE-SpecVersion',
      '1.0',
      'ce-id',
      'e1',
      'ce-source',
      '/s',
      'ce-type',
      't',
      'ce-subject',
      'caf%C3%A9',
      'ce-note',
      '100%',
      'Content-Type',
      'text/plain',
    ]);
    expect(attributes).toMatchObject({
      subject: 'café',
      datacontenttype: 'text/plain',
      extensions: { note: '100%' },
    });
  });

  it('names the header of a missing or unsupported attribute', () => {
    expect(
      refusal(() => attributesFromHeaders(['ce-specversion', '1.0', 'ce-id', 'e1', 'ce-type', 't'])),
    ).toMatchObject({
      field: 'ce-source',
    });
    const version = refusal(() => attributesFromHeaders(['ce-specversion', '0.3', 'ce-id', 'e1']));
    expect(version.field).toBe('ce-specversion');
    expect(version.message).toContain('"1.0"');
  });
});
