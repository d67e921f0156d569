/** @module The control API describes itself: /api/v1/openapi.json matches the routes the server answers. */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Hearth, startHearth } from '../support/hearth.js';

let hearth: Hearth;

beforeAll(async () => {
  hearth = await startHearth();
});

afterAll(async () => {
  await hearth?.stop();
});

interface OpenApi {
  openapi: string;
  paths: Record<string, Record<string, { summary?: string }>>;
  components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
}

describe('OpenAPI document', () => {
  it('is OpenAPI 3.1 and lists the function routes with their methods', async () => {
    const response = await fetch(`${hearth.url}/api/v1/openapi.json`);
    expect(response.status).toBe(200);
    const doc = (await response.json()) as OpenApi;
    expect(doc.openapi).toBe('3.1.0');
    const fn = '/api/v1/namespaces/{namespace}/functions/{name}';
    expect(Object.keys(doc.paths[fn] ?? {}).sort()).toEqual(['delete', 'get', 'put']);
    expect(Object.keys(doc.paths[`${fn}/deploy`] ?? {})).toEqual(['post']);
    expect(Object.keys(doc.paths[`${fn}/logs`] ?? {})).toEqual(['get']);
    expect(Object.keys(doc.paths['/api/v1/functions'] ?? {})).toEqual(['get']);
    expect(doc.paths['/function/{name}']).toBeDefined();
    expect(doc.components.schemas.Function?.properties?.spec).toBeDefined();
  });

  it('describes every route it serves: each documented GET path answers something other than "no route"', async () => {
    const doc = (await (await fetch(`${hearth.url}/api/v1/openapi.json`)).json()) as OpenApi;
    for (const [path, methods] of Object.entries(doc.paths)) {
      if (!path.startsWith('/api/') || methods.get === undefined) continue;
      const concrete = path.replace('{namespace}', 'default').replace(/\{[a-zA-Z]+\}/g, 'nothing-here');
      const response = await fetch(`${hearth.url}${concrete}`);
      const body = (await response.json()) as { error?: { code: string } };
      // A documented route may say the function does not exist, never that the route does not.
      expect(body.error?.code, `${path}`).not.toBe('HEARTH_E_NOT_FOUND');
    }
  });
});
