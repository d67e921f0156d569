/**
 * @module CloudFormation YAML for `hearth import`: the short intrinsic tags (`!Ref`, `!GetAtt`, `!Sub`…)
 * parse into their long forms (`{Ref: …}`, `{"Fn::GetAtt": …}`), and the few that can be worked out
 * without AWS (a parameter's Default, `!Sub` and `!Join` over those) are resolved to values.
 */

import type { CollectionTag, ScalarTag, YAMLMap, YAMLSeq } from 'yaml';
import { isRecord } from './model.js';

const FUNCTIONS = [
  'Base64',
  'Cidr',
  'FindInMap',
  'GetAtt',
  'GetAZs',
  'ImportValue',
  'Join',
  'Select',
  'Split',
  'Sub',
  'Transform',
  'And',
  'Equals',
  'If',
  'Not',
  'Or',
] as const;

/** The `yaml` library's custom tags for every CloudFormation short form, as scalar, sequence and map. */
export function cloudFormationTags(): (ScalarTag | CollectionTag)[] {
  const tags: (ScalarTag | CollectionTag)[] = [];
  const add = (tag: string, wrap: (value: unknown) => unknown): void => {
    tags.push({ tag, resolve: (text: string) => wrap(text) } as ScalarTag);
    tags.push({
      tag,
      collection: 'seq',
      resolve: (seq: YAMLSeq.Parsed) => wrap(seq.toJSON()),
    } as unknown as CollectionTag);
    tags.push({
      tag,
      collection: 'map',
      resolve: (map: YAMLMap.Parsed) => wrap(map.toJSON()),
    } as unknown as CollectionTag);
  };
  add('!Ref', (value) => ({ Ref: value }));
  add('!Condition', (value) => ({ Condition: value }));
  for (const name of FUNCTIONS)
    add(`!${name}`, (value) =>
      // `!GetAtt Res.Attr` is short for `Fn::GetAtt: [Res, Attr]`.
      name === 'GetAtt' && typeof value === 'string'
        ? { 'Fn::GetAtt': value.split('.', 2) }
        : { [`Fn::${name}`]: value },
    );
  return tags;
}

/** A value worked out, or the expression shown as the user wrote it (for the line saying it was not). */
export type Resolution = { readonly value: unknown } | { readonly unresolved: string };

/** Resolves intrinsics against the template's parameter defaults; `AWS::` pseudo parameters stay unresolved. */
export function resolveIntrinsic(value: unknown, parameters: Readonly<Record<string, unknown>>): Resolution {
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    for (const item of value) {
      const resolved = resolveIntrinsic(item, parameters);
      if ('unresolved' in resolved) return resolved;
      out.push(resolved.value);
    }
    return { value: out };
  }
  if (!isRecord(value)) return { value };
  const keys = Object.keys(value);
  if (keys.length === 1) {
    const key = keys[0] as string;
    const argument = value[key];
    if (key === 'Ref' && typeof argument === 'string') {
      const parameter = parameters[argument];
      if (isRecord(parameter) && parameter.Default !== undefined) return { value: parameter.Default };
      return { unresolved: `!Ref ${argument}` };
    }
    if (key === 'Fn::Sub') return substitute(argument, parameters);
    if (key === 'Fn::Join' && Array.isArray(argument) && typeof argument[0] === 'string') {
      const parts = resolveIntrinsic(argument[1], parameters);
      if ('unresolved' in parts) return parts;
      return Array.isArray(parts.value)
        ? { value: parts.value.map(String).join(argument[0]) }
        : { unresolved: '!Join' };
    }
    if (key === 'Fn::GetAtt')
      return { unresolved: `!GetAtt ${Array.isArray(argument) ? argument.join('.') : String(argument)}` };
    if (key.startsWith('Fn::') || key === 'Condition') return { unresolved: `!${key.replace('Fn::', '')}` };
  }
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    const resolved = resolveIntrinsic(item, parameters);
    if ('unresolved' in resolved) return resolved;
    out[key] = resolved.value;
  }
  return { value: out };
}

function substitute(argument: unknown, parameters: Readonly<Record<string, unknown>>): Resolution {
  const [template, variables] = Array.isArray(argument) ? argument : [argument, {}];
  if (typeof template !== 'string') return { unresolved: '!Sub' };
  let missing: string | undefined;
  const text = template.replace(/\$\{([^}!][^}]*)\}/g, (_match, name: string) => {
    const given = isRecord(variables) ? variables[name] : undefined;
    const resolved =
      given !== undefined ? resolveIntrinsic(given, parameters) : resolveIntrinsic({ Ref: name }, parameters);
    if (
      'unresolved' in resolved ||
      (typeof resolved.value !== 'string' && typeof resolved.value !== 'number')
    ) {
      missing ??= `\${${name}}`;
      return '';
    }
    return String(resolved.value);
  });
  return missing === undefined
    ? { value: text.replace(/\$\{!/g, '${') }
    : { unresolved: `!Sub ${JSON.stringify(template)} (${missing})` };
}
