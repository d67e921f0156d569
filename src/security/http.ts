/**
 * @module The security part at the platform's other HTTP doors (the control API checks in its router):
 * the dashboard's JSON, /metrics, and `/async-function/` (function auth, rate and queue-depth quotas at
 * accept time). Composed by platform.ts around the handlers it mounts.
 */

import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DeployedVersion } from '../domain/deployment.js';
import { HearthError } from '../domain/errors.js';
import type { FunctionRef } from '../domain/function.js';
import {
  type AsyncRoute,
  LAMBDA_API_PREFIX,
  LambdaApiError,
  type LambdaRoute,
  parseAsyncPath,
  parseLambdaFunctionName,
  readBody,
  sendError,
  sendLambdaError,
  withoutRawHeader,
} from '../gateway/index.js';
import { isSigV4, type Security, SigV4Refusal } from './index.js';
import type { Action } from './roles.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** What a request to a mount needs: an action in a namespace (undefined: every one), or nothing. */
export type MountAccess = (url: URL) => readonly [Action, string | undefined] | undefined;

/** Wraps a mount with the API's auth; a no-op while auth is off. */
export function guardMount(security: Security, handler: Handler, access: MountAccess): Handler {
  return (req, res) => {
    const needed = access(new URL(req.url ?? '/', 'http://hearth'));
    if (needed !== undefined) {
      try {
        security.authorize(req.headers.authorization, needed[0], needed[1]);
      } catch (error) {
        sendError(res, error);
        return;
      }
    }
    handler(req, res);
  };
}

/** The dashboard's JSON: the overview spans every namespace; a function's page and logs one namespace. */
export const dashboardAccess: MountAccess = (url) => {
  if (!url.pathname.startsWith('/ui/api/')) return undefined;
  if (url.pathname === '/ui/api/overview') return ['read', undefined];
  const namespace = url.searchParams.get('namespace') || 'default';
  return [url.pathname === '/ui/api/logs' ? 'logs' : 'read', namespace];
};

/**
 * `POST /events` routes each event by its subject, inside the ingress. Until the ingress checks each
 * event's target itself, the route as a whole needs an API key with `invoke` on every namespace while
 * some function is not public (or a namespace requires keys): a tenant's `key` or `jwt` function is never
 * reachable through it without credentials. With every function public it stays open.
 */
export function guardEvents(security: Security, route: Handler, someProtected: () => boolean): Handler {
  return (req, res) => {
    if (someProtected()) {
      try {
        const principal = security.authenticate(req.headers.authorization);
        if (principal === undefined)
          throw new HearthError(
            'HEARTH_E_UNAUTHORIZED',
            'POST /events needs an API key while some function requires a key or JWT: send "Authorization: Bearer <key>" with a key whose role allows invoke on every namespace',
            { details: { required: { action: 'invoke', role: 'invoker', namespace: '*' } } },
          );
        security.check(principal, 'invoke', undefined);
      } catch (error) {
        sendError(res, error);
        return;
      }
    }
    route(req, res);
  };
}

/**
 * The Lambda Invoke API (`/2015-03-31/functions/…`). A request that needs a principal — invoking a
 * function with key auth (its own or its namespace's floor), or reading a function's configuration while
 * auth is on — proves it with either Hearth credentials (`Authorization: Bearer` with a key, token or,
 * for `jwt`, a JWT, as on `/function/`) or an AWS SigV4 signature made with a key's AWS credentials
 * (`HTHK…` and its derived secret, from `hearth keys create`): the signature is verified here, over the
 * body read once within the function's body bound and handed on to the route, and the key is then held
 * to the same role and namespace checks. SigV4 failures answer as AWS's (403 UnrecognizedClientException,
 * InvalidSignatureException, AccessDeniedException). A request to a public function is not checked: its
 * SigV4 header, real or not, is read only for the region (as before keys existed). Paths naming no
 * deployed function are the route's.
 */
export function guardLambda(
  security: Security,
  lookup: (ref: FunctionRef) => DeployedVersion | undefined,
  route: LambdaRoute,
  onInternal: (error: unknown) => void = () => {},
): Handler {
  return (req, res) => {
    const url = req.url ?? '/';
    const path = url.slice(LAMBDA_API_PREFIX.length).split('?')[0] ?? '';
    let deployed: DeployedVersion | undefined;
    try {
      deployed = lookup(parseLambdaFunctionName(path.split('/')[0] ?? '', undefined).ref);
    } catch {
      deployed = undefined;
    }
    if (deployed === undefined) {
      route(req, res);
      return;
    }
    const reading = req.method !== 'POST';
    const verifySignature = isSigV4(req.headers.authorization)
      ? reading
        ? security.enabled
        : security.effectiveAuth(deployed) === 'key'
      : false;
    if (verifySignature) {
      guardSigned(security, deployed, route, onInternal, req, res, reading);
      return;
    }
    if (reading) {
      try {
        security.authorize(req.headers.authorization, 'read', deployed.ref.namespace);
      } catch (error) {
        sendError(res, error);
        return;
      }
      route(req, res);
      return;
    }
    if (!security.invocationChecked(deployed)) {
      route(req, res);
      return;
    }
    security.checkInvocation(deployed, req.headers.authorization, (error, auth) => {
      if (error !== undefined) sendError(res, error);
      else route(req, res, { auth: auth?.claims });
    });
  };
}

/** A SigV4-signed Lambda API request that needs a principal: read the body, verify, check the key's role. */
function guardSigned(
  security: Security,
  deployed: DeployedVersion,
  route: LambdaRoute,
  onInternal: (error: unknown) => void,
  req: IncomingMessage,
  res: ServerResponse,
  reading: boolean,
): void {
  const fail = (error: unknown): void =>
    sendLambdaError(
      res,
      error instanceof SigV4Refusal ? new LambdaApiError(403, error.type, error.message) : error,
      randomUUID(),
      onInternal,
    );
  readBody(req, deployed.spec.limits.maxBodyBytes)
    .then((body) => {
      const principal = security.authenticateSigV4(
        { method: req.method ?? 'GET', url: req.url ?? '/', rawHeaders: req.rawHeaders, body },
        req.headers.authorization,
        'lambda',
      );
      if (reading) {
        security.check(principal, 'read', deployed.ref.namespace);
        route(req, res, { body });
        return;
      }
      security.checkInvocation(
        deployed,
        undefined,
        (error, auth) => {
          if (error !== undefined) fail(error);
          else route(req, res, { body, auth: auth?.claims });
        },
        principal,
      );
    })
    .catch(fail);
}

export interface AsyncGuardOptions {
  readonly lookup: (ref: FunctionRef) => DeployedVersion | undefined;
  /** Functions of a namespace, for counting its queue. */
  readonly functionsOf: (namespace: string) => readonly FunctionRef[];
  /** Async invocations of a function waiting in the queue, counted up to `limit`. */
  readonly queued: (ref: FunctionRef, limit: number) => Promise<number>;
}

/**
 * `/async-function/`: the function's auth (an API key is then dropped from the stored request), the
 * namespace's rate, and its queueDepth quota, all before the request is accepted. The caller's claims
 * go into the queue with the request and reach the function as `ctx.auth`, as for `/function/`.
 */
export function guardAsync(security: Security, route: AsyncRoute, options: AsyncGuardOptions): Handler {
  return (req, res) => {
    const target = parseAsyncPath(req.url ?? '/');
    const deployed = target === undefined ? undefined : options.lookup(target.ref);
    // Unknown functions and bad paths are the route's to answer.
    if (deployed === undefined) {
      route(req, res);
      return;
    }
    const namespace = deployed.ref.namespace;
    const limit = security.queueDepthLimit(namespace);
    if (!security.invocationChecked(deployed) && limit === undefined) {
      route(req, res);
      return;
    }
    security.checkInvocation(deployed, req.headers.authorization, (error, auth) => {
      if (error !== undefined) {
        sendError(res, error);
        return;
      }
      if (auth?.stripAuthorization === true)
        req.rawHeaders = withoutRawHeader(req.rawHeaders, 'authorization');
      const checked = auth?.claims === undefined ? undefined : { auth: auth.claims };
      if (limit === undefined) {
        route(req, res, checked);
        return;
      }
      countQueued(options, namespace, limit).then(
        (queued) => {
          try {
            security.checkQueueDepth(namespace, queued);
          } catch (refusal) {
            sendError(res, refusal);
            return;
          }
          route(req, res, checked);
        },
        (failure: unknown) => sendError(res, failure),
      );
    });
  };
}

async function countQueued(options: AsyncGuardOptions, namespace: string, limit: number): Promise<number> {
  let total = 0;
  for (const ref of options.functionsOf(namespace)) {
    total += await options.queued(ref, limit - total);
    if (total >= limit) break;
  }
  return total;
}
