/**
 * @module The CustomResourceDefinitions of Kubernetes mode (issue 12), derived from the same zod schemas
 * that validate local resources (domain/function.ts, domain/gateway.ts): zod's JSON Schema is turned into a
 * Kubernetes structural schema. What the API server's OpenAPI subset cannot say (a string-or-number size,
 * a RE2-incompatible pattern, a cross-field refinement) is left to the operator, which validates every CR
 * with the domain schema itself and reports the problem in the CR's status (reason InvalidSpec).
 */

import { stringify } from 'yaml';
import { z } from 'zod';
import { functionSpecSchema } from '../domain/function.js';
import { gatewaySpecSchema } from '../domain/gateway.js';

export const GROUP = 'hearth.dev';
export const VERSION = 'v1';

/** A node of a Kubernetes structural schema (the OpenAPI v3 subset CRDs accept). */
export interface StructuralSchema {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  description?: string;
  properties?: Record<string, StructuralSchema>;
  additionalProperties?: StructuralSchema;
  items?: StructuralSchema;
  required?: string[];
  enum?: (string | number | boolean)[];
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  'x-kubernetes-int-or-string'?: true;
  'x-kubernetes-preserve-unknown-fields'?: true;
}

type JsonSchema = {
  type?: string | string[];
  description?: string;
  properties?: Record<string, JsonSchema>;
  additionalProperties?: JsonSchema | boolean;
  propertyNames?: JsonSchema;
  items?: JsonSchema;
  prefixItems?: JsonSchema[];
  required?: string[];
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minItems?: number;
  maxItems?: number;
};

const ANY: StructuralSchema = { 'x-kubernetes-preserve-unknown-fields': true };

/** RE2 (the API server's regex engine) has no look-around nor back-references. */
function re2Compatible(pattern: string): boolean {
  return !/\(\?[=!<]|\\[1-9]/.test(pattern);
}

function scalar(schema: JsonSchema, type: StructuralSchema['type']): StructuralSchema {
  const out: StructuralSchema = { type };
  if (schema.description) out.description = schema.description;
  if (schema.enum?.every((v) => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean'))
    out.enum = schema.enum as (string | number | boolean)[];
  if (schema.const !== undefined && (typeof schema.const === 'string' || typeof schema.const === 'number'))
    out.enum = [schema.const];
  if (type === 'string') {
    if (schema.pattern !== undefined && re2Compatible(schema.pattern)) out.pattern = schema.pattern;
    if (schema.minLength !== undefined) out.minLength = schema.minLength;
    if (schema.maxLength !== undefined) out.maxLength = schema.maxLength;
  }
  if (type === 'integer' || type === 'number') {
    // zod writes the safe-integer bounds of z.int(): they add nothing a user would hit.
    if (
      schema.minimum !== undefined &&
      Number.isSafeInteger(schema.minimum) &&
      schema.minimum > -(2 ** 53 - 1)
    )
      out.minimum = schema.minimum;
    if (schema.maximum !== undefined && schema.maximum < 2 ** 53 - 1) out.maximum = schema.maximum;
  }
  return out;
}

function branchesOf(schema: JsonSchema): JsonSchema[] | undefined {
  return schema.anyOf ?? schema.oneOf;
}

/** Converts one node of zod's JSON Schema (draft 2020-12) into a structural schema node. */
export function toStructural(schema: JsonSchema): StructuralSchema {
  if (schema.allOf && schema.allOf.length === 1)
    return toStructural({ ...schema.allOf[0], ...schema, allOf: undefined });
  const branches = branchesOf(schema);
  if (branches) {
    const types = new Set(branches.map((b) => (typeof b.type === 'string' ? b.type : 'mixed')));
    if (types.size === 1 && types.has('string')) {
      // A union of string enums (or literals) is one enum.
      const values = branches.flatMap((b) => b.enum ?? (b.const !== undefined ? [b.const] : []));
      if (values.length > 0 && branches.every((b) => b.enum || b.const !== undefined))
        return { type: 'string', enum: values as string[] };
      return withDescription({ type: 'string' }, schema);
    }
    if (types.size === 2 && types.has('string') && types.has('integer'))
      return withDescription({ 'x-kubernetes-int-or-string': true }, schema);
    if (types.size === 1 && types.has('object')) {
      // A union of single-key objects ({http: …} | {kafka: …}): every key optional, one object.
      const properties: Record<string, StructuralSchema> = {};
      for (const branch of branches)
        for (const [key, value] of Object.entries(branch.properties ?? {}))
          properties[key] = toStructural(value);
      return withDescription({ type: 'object', properties }, schema);
    }
    if (types.size === 1 && types.has('array')) return toStructural(branches[0] as JsonSchema);
    // string-or-number (sizes, durations, CPU) and the like: the domain schema checks them.
    return withDescription({ ...ANY }, schema);
  }
  const type = Array.isArray(schema.type) ? undefined : schema.type;
  switch (type) {
    case 'object': {
      const out: StructuralSchema = { type: 'object' };
      if (schema.description) out.description = schema.description;
      if (schema.properties && Object.keys(schema.properties).length > 0) {
        out.properties = Object.fromEntries(
          Object.entries(schema.properties).map(([key, value]) => [key, toStructural(value)]),
        );
        if (schema.required?.length) out.required = [...schema.required];
      } else if (typeof schema.additionalProperties === 'object') {
        out.additionalProperties = toStructural(schema.additionalProperties);
      } else {
        out['x-kubernetes-preserve-unknown-fields'] = true;
      }
      return out;
    }
    case 'array': {
      const out: StructuralSchema = {
        type: 'array',
        items: schema.items ? toStructural(schema.items) : { ...ANY },
      };
      if (schema.description) out.description = schema.description;
      if (schema.minItems !== undefined) out.minItems = schema.minItems;
      if (schema.maxItems !== undefined) out.maxItems = schema.maxItems;
      return out;
    }
    case 'string':
    case 'integer':
    case 'number':
    case 'boolean':
      return scalar(schema, type);
    default:
      if (schema.enum?.every((v) => typeof v === 'string'))
        return { type: 'string', enum: schema.enum as string[] };
      return withDescription({ ...ANY }, schema);
  }
}

function withDescription(node: StructuralSchema, schema: JsonSchema): StructuralSchema {
  return schema.description ? { description: schema.description, ...node } : node;
}

function jsonSchemaOf(schema: z.ZodType): JsonSchema {
  return z.toJSONSchema(schema, {
    io: 'input',
    unrepresentable: 'any',
    target: 'draft-2020-12',
  }) as JsonSchema;
}

/**
 * Where a Function CR's code comes from (Kubernetes mode only): `inline` files (name → content), a
 * ConfigMap in the CR's namespace whose keys are file names (`hearth deploy --target k8s` writes one), or a
 * `url` of a .tar.gz or .zip the operator downloads. Exactly one.
 */
export const codeSchema: StructuralSchema = {
  type: 'object',
  description: 'Where the code comes from: exactly one of inline, configMap or url.',
  properties: {
    inline: {
      type: 'object',
      description: 'Files of the function folder: file name to content.',
      additionalProperties: { type: 'string' },
    },
    configMap: {
      type: 'object',
      description: 'A ConfigMap in this namespace; its keys are file names (binaryData for binary files).',
      properties: {
        name: { type: 'string', minLength: 1, maxLength: 253 },
        digest: {
          type: 'string',
          description:
            'sha256 of the packed code (hearth deploy --target k8s sets it): a new digest redeploys.',
        },
      },
      required: ['name'],
    },
    url: { type: 'string', pattern: '^https?://', description: 'A .tar.gz or .zip of the function folder.' },
  },
};

const conditionSchema: StructuralSchema = {
  type: 'object',
  properties: {
    type: { type: 'string' },
    status: { type: 'string', enum: ['True', 'False', 'Unknown'] },
    reason: { type: 'string' },
    message: { type: 'string' },
    lastTransitionTime: { type: 'string' },
    observedGeneration: { type: 'integer' },
  },
  required: ['type', 'status'],
};

const statusSchema: StructuralSchema = {
  type: 'object',
  properties: {
    ready: { type: 'boolean' },
    version: { type: 'string', description: 'The Hearth version serving this resource.' },
    endpoint: { type: 'string', description: 'Where it is invoked.' },
    observedGeneration: { type: 'integer' },
    conditions: { type: 'array', items: conditionSchema },
  },
};

export function functionSpecStructural(): StructuralSchema {
  const spec = toStructural(jsonSchemaOf(functionSpecSchema));
  // `source` names a local folder: a CR names its code with `code` instead.
  const { source: _source, ...properties } = spec.properties ?? {};
  return { ...spec, properties: { ...properties, code: codeSchema } };
}

export function gatewaySpecStructural(): StructuralSchema {
  return toStructural(jsonSchemaOf(gatewaySpecSchema));
}

export interface CustomResourceDefinition {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string; labels?: Record<string, string> };
  spec: Record<string, unknown>;
}

function crd(
  kind: string,
  plural: string,
  shortNames: string[],
  spec: StructuralSchema,
  columns: { name: string; type: string; jsonPath: string }[],
): CustomResourceDefinition {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${GROUP}`, labels: { 'app.kubernetes.io/part-of': 'hearth' } },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase(), shortNames },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: columns,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec,
                status: statusSchema,
              },
            },
          },
        },
      ],
    },
  };
}

const readyColumns = [
  { name: 'Ready', type: 'boolean', jsonPath: '.status.ready' },
  { name: 'Endpoint', type: 'string', jsonPath: '.status.endpoint' },
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
];

export function functionCrd(): CustomResourceDefinition {
  return crd('Function', 'functions', ['hfn'], functionSpecStructural(), [
    { name: 'Runtime', type: 'string', jsonPath: '.spec.runtime' },
    ...readyColumns,
  ]);
}

export function eventGatewayCrd(): CustomResourceDefinition {
  return crd('EventGateway', 'eventgateways', ['hgw'], gatewaySpecStructural(), readyColumns);
}

/** The CRD files as scripts/k8s-crds.mjs writes them (deploy/crds/ and the chart's crds/). */
export function crdFiles(): Record<string, string> {
  const header =
    '# Generated by scripts/k8s-crds.mjs from src/domain (src/k8s/crd.ts): do not edit by hand.\n';
  return {
    'functions.hearth.dev.yaml': header + stringify(functionCrd(), { lineWidth: 0 }),
    'eventgateways.hearth.dev.yaml': header + stringify(eventGatewayCrd(), { lineWidth: 0 }),
  };
}
