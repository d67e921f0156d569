/**
 * @module POST /api/v1/namespaces/{namespace}/functions/{name}/deploy — upload a tar.gz (hearth.yaml + code).
 * With `Accept: application/x-ndjson` progress streams as it happens, one JSON event per line.
 */

import type { ServerResponse } from 'node:http';
import { auditDetail } from '../../compliance/index.js';
import { errorBody, HearthError, isHearthError } from '../../domain/errors.js';
import { clientClosed, sendJson } from '../../gateway/index.js';
import { type ApiContext, refFrom } from './context.js';
import { detailOf } from './function-get.js';
import type { Route } from './router.js';
import type { DeployEvent } from './types.js';

const ARCHIVE_TYPES = new Set([
  'application/gzip',
  'application/x-gzip',
  'application/octet-stream',
  'application/x-tar+gzip',
  'application/tar+gzip',
]);

export function deployFunction(context: ApiContext): Route {
  return {
    method: 'POST',
    path: '/api/v1/namespaces/:namespace/functions/:name/deploy',
    summary:
      'Deploy code: body is a tar.gz with hearth.yaml at its root; ?stage=true stores and checks it for POST /api/v1/apply instead',
    handle: async (request) => {
      const ref = refFrom(request);
      const contentType =
        (request.req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
      if (!ARCHIVE_TYPES.has(contentType)) {
        throw new HearthError(
          'HEARTH_E_BAD_REQUEST',
          `Content-Type: got "${contentType || 'none'}", expected application/gzip (a .tar.gz of the function folder)`,
        );
      }
      const verify = request.query.get('verify') !== 'false';
      // The audit record of this deploy names the key that signed the package (issue 13).
      const onSigner = (signer: string): void => auditDetail(request.req, { signer });
      const stage = request.query.get('stage') === 'true';
      const streaming = (request.req.headers.accept ?? '').includes('application/x-ndjson');
      if (stage && !streaming) {
        const staged = await context.deployer.stageArchive(ref, request.req, () => {});
        sendJson(request.res, 200, { staged: staged.id, expiresAt: staged.expiresAt });
        return;
      }
      if (!streaming) {
        const outcome = await context.deployer.deployArchive(ref, request.req, () => {}, {
          verify,
          onSigner,
        });
        const fn = context.store.getFunction(ref);
        sendJson(request.res, 200, {
          unchanged: outcome.unchanged,
          deployment: outcome.deployment,
          function: fn === undefined ? null : detailOf(context, fn),
        });
        return;
      }
      const res = request.res;
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      const emit = (event: DeployEvent): void => writeEvent(res, event);
      try {
        if (stage) {
          const staged = await context.deployer.stageArchive(ref, request.req, emit);
          emit({ event: 'staged', staged: staged.id, expiresAt: staged.expiresAt });
        } else {
          const outcome = await context.deployer.deployArchive(ref, request.req, emit, { verify, onSigner });
          const fn = context.store.getFunction(ref);
          if (fn !== undefined)
            emit({ event: 'result', function: detailOf(context, fn), deployment: outcome.deployment });
        }
      } catch (error) {
        if (clientClosed(error, request.req)) {
          res.destroy();
          return;
        }
        if (!isHearthError(error)) context.onInternal(error);
        const failure = isHearthError(error)
          ? error
          : new HearthError(
              'HEARTH_E_INTERNAL',
              'an internal error occurred; the platform log has the details',
            );
        auditDetail(request.req, { errorCode: failure.code, errorStatus: failure.status });
        emit({ event: 'error', error: errorBody(failure).error });
        // The upload may not have been read to its end; drain it so the client sees the event.
        request.req.resume();
      }
      res.end();
    },
  };
}

function writeEvent(res: ServerResponse, event: DeployEvent): void {
  if (!res.writableEnded) res.write(`${JSON.stringify(event)}\n`);
}
