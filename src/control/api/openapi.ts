/**
 * @module GET /api/v1/openapi.json — the control API described as OpenAPI 3.1, built from the same route
 * table and zod schema the server runs, so the document cannot drift from the code.
 */

import { z } from 'zod';
import { ERROR_CATALOGUE } from '../../domain/errors.js';
import { functionResourceSchema } from '../../domain/function.js';
import { sendJson } from '../../gateway/index.js';
import type { Route } from './router.js';

export function openApi(routes: () => readonly Route[], version: string): Route {
  let cached: unknown;
  return {
    method: 'GET',
    path: '/api/v1/openapi.json',
    summary: 'This document',
    access: 'public',
    handle: ({ res }) => {
      cached ??= buildDocument(routes(), version);
      sendJson(res, 200, cached);
    },
  };
}

function buildDocument(routes: readonly Route[], version: string): unknown {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = route.path.replace(/:([a-zA-Z]+)/g, '{$1}');
    const parameters = [...route.path.matchAll(/:([a-zA-Z]+)/g)].map((match) => ({
      name: match[1],
      in: 'path',
      required: true,
      schema: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' },
    }));
    const operation: Record<string, unknown> = {
      summary: route.summary,
      parameters,
      responses: {
        '200': { description: 'Success', content: { 'application/json': {} } },
        default: {
          description: 'Error',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
        },
      },
    };
    if (route.method === 'PUT') {
      operation.requestBody = {
        required: true,
        content: { 'application/json': { schema: { $ref: '#/components/schemas/Function' } } },
      };
    }
    if (route.path.endsWith('/deploy')) {
      operation.requestBody = {
        required: true,
        description:
          'A gzip-compressed tar of the function folder with hearth.yaml (a Function resource) at its root',
        content: { 'application/gzip': { schema: { type: 'string', format: 'binary' } } },
      };
    }
    if (route.path.endsWith('/deploy'))
      operation.parameters = [
        ...parameters,
        {
          name: 'stage',
          in: 'query',
          required: false,
          description:
            'true: store and check the package, answer its id, release it only through POST /api/v1/apply',
          schema: { type: 'boolean' },
        },
      ];
    if (route.path === '/api/v1/apply') {
      operation.requestBody = {
        required: true,
        description:
          'Every document is validated first; all are stored in one transaction, or none is. A refusal names documents.INDEX and sets details.document.',
        content: {
          'application/json': {
            schema: {
              type: 'object',
              required: ['documents'],
              properties: {
                dryRun: { type: 'boolean', description: 'Only validate' },
                documents: {
                  type: 'array',
                  minItems: 1,
                  items: {
                    oneOf: [
                      {
                        type: 'object',
                        required: ['manifest'],
                        properties: {
                          manifest: { description: 'A Function (config only) or EventGateway resource' },
                        },
                      },
                      {
                        type: 'object',
                        required: ['staged'],
                        properties: {
                          staged: { type: 'string', description: 'The id …/deploy?stage=true answered' },
                        },
                      },
                    ],
                  },
                },
              },
            },
          },
        },
      };
    }
    paths[path] = { ...(paths[path] ?? {}), [route.method.toLowerCase()]: operation };
  }
  paths['/function/{name}'] = {
    summary: 'Invoke a function (any method; add /rest/of/path; name.namespace for other namespaces)',
    parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }],
    get: {
      responses: {
        '200': { description: "The function's response" },
        default: {
          description: 'Error',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
        },
      },
    },
    post: {
      responses: {
        '200': { description: "The function's response" },
        default: {
          description: 'Error',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
        },
      },
    },
  };
  return {
    openapi: '3.1.0',
    info: { title: 'Hearth control API', version },
    paths,
    components: {
      schemas: {
        Function: z.toJSONSchema(functionResourceSchema, { io: 'input', unrepresentable: 'any' }),
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: {
                code: { type: 'string', enum: Object.keys(ERROR_CATALOGUE) },
                message: { type: 'string' },
                invocationId: { type: 'string' },
                details: { type: 'object' },
              },
            },
          },
        },
      },
    },
  };
}
