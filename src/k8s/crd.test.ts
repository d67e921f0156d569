import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { functionSpecSchema } from '../domain/function.js';
import { gatewaySpecSchema } from '../domain/gateway.js';
import { crdFiles, functionSpecStructural, gatewaySpecStructural, type StructuralSchema } from './crd.js';

const root = join(import.meta.dirname, '..', '..');

/** Every node has a type, or says it takes any value or an int-or-string (the API server's structural rule). */
function unstructured(node: StructuralSchema, path: string): string[] {
  const here =
    node.type === undefined &&
    node['x-kubernetes-preserve-unknown-fields'] !== true &&
    node['x-kubernetes-int-or-string'] !== true
      ? [path]
      : [];
  return [
    ...here,
    ...Object.entries(node.properties ?? {}).flatMap(([key, child]) => unstructured(child, `${path}.${key}`)),
    ...(node.items ? unstructured(node.items, `${path}[]`) : []),
    ...(node.additionalProperties ? unstructured(node.additionalProperties, `${path}.*`) : []),
  ];
}

describe('CRDs derived from the domain schemas', () => {
  it('are the files in deploy/crds and the Helm chart (run node scripts/k8s-crds.mjs after npm run build)', () => {
    for (const dir of ['deploy/crds', 'deploy/helm/hearth/crds'])
      for (const [name, text] of Object.entries(crdFiles()))
        expect(readFileSync(join(root, dir, name), 'utf8'), `${dir}/${name}`).toBe(text);
  });

  it('name every field of the local Function and EventGateway specs (code instead of source)', () => {
    const fields = Object.keys(functionSpecSchema.shape).filter((field) => field !== 'source');
    expect(fields.length).toBeGreaterThan(10);
    const crdFields = Object.keys(functionSpecStructural().properties ?? {});
    expect(crdFields.sort()).toEqual([...fields, 'code'].sort());
    expect(Object.keys(gatewaySpecStructural().properties ?? {}).sort()).toEqual(
      Object.keys(gatewaySpecSchema.shape).sort(),
    );
  });

  it('are structural schemas', () => {
    expect(unstructured(functionSpecStructural(), 'spec')).toEqual([]);
    expect(unstructured(gatewaySpecStructural(), 'spec')).toEqual([]);
  });
});
