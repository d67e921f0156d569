/**
 * @module POST /api/v1/apply — several Function and EventGateway documents applied as one change: every
 * document (and every cross-document rule: duplicates, route conflicts, functions that must exist) is
 * checked first, then all are stored in one transaction and only then switched over. A refusal changes
 * nothing and names the document (index, kind, name) and the reason.
 */

import { isSecretName, parseSecretData } from '../../domain/compliance.js';
import { HearthError, isHearthError } from '../../domain/errors.js';
import type { FunctionRef } from '../../domain/function.js';
import type { PreparedEventTrigger } from '../../eventing/index.js';
import { readJsonBody, sendJson } from '../../gateway/index.js';
import type { NamespaceManifest } from '../../security/index.js';
import type { PreparedVersion } from '../deploy.js';
import type { PreparedGateway } from '../events/index.js';
import type { ApiContext } from './context.js';
import { detailOf } from './function-get.js';
import { eventsOf } from './gateways.js';
import type { Route } from './router.js';
import type { ApplyDocumentOutcome, ApplyResponse } from './types.js';

const MAX_BODY_BYTES = 8 * 1024 * 1024;
/** A file of 1,000 functions applies as one request (issue 11). */
const MAX_DOCUMENTS = 2000;

/** What the client said the document is, for naming it in an error before it is validated. */
interface Label {
  readonly index: number;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
}

type Planned =
  | { readonly label: Label; readonly kind: 'Function'; readonly prepared: PreparedVersion }
  | { readonly label: Label; readonly kind: 'EventGateway'; readonly prepared: PreparedGateway }
  | { readonly label: Label; readonly kind: 'Namespace'; readonly prepared: NamespaceManifest }
  | { readonly label: Label; readonly kind: 'Trigger'; readonly prepared: PreparedEventTrigger }
  | { readonly label: Label; readonly kind: 'Secret'; readonly values: Map<string, Buffer> };

export function applyDocuments(context: ApiContext): Route {
  return {
    method: 'POST',
    path: '/api/v1/apply',
    summary:
      'Apply several Function (config or staged code) and EventGateway documents all or nothing; {"dryRun":true} only validates',
    // Each document is checked against the caller's role in its namespace (a Namespace needs admin).
    access: 'handler',
    handle: async (request) => {
      const body = await readJsonBody(request.req, MAX_BODY_BYTES);
      const { documents, dryRun } = parseRequest(body);
      const labels = documents.map((document, index) => labelOf(context, document, index));
      for (const label of labels)
        request.authorize(label.kind === 'Namespace' ? 'admin' : 'deploy', label.namespace);
      const functionRefs = labels.filter((label) => label.kind === 'Function');
      const work = (): Promise<ApplyResponse> =>
        context.deployer.exclusive(functionRefs, () => applyAll(context, documents, labels, dryRun));
      const hasGateways = labels.some((label) => label.kind === 'EventGateway');
      const response = hasGateways ? await eventsOf(context).gateways.exclusive(work) : await work();
      sendJson(request.res, 200, response);
    },
  };
}

/**
 * `manifest`: a config-only change (or another kind); `staged`: a staged package as it is; both: a Function
 * whose manifest is `manifest` and whose code is the staged package's (one upload for many functions).
 */
type RequestDocument =
  | { readonly manifest: unknown }
  | { readonly staged: string }
  | { readonly staged: string; readonly manifest: unknown };

function parseRequest(body: unknown): { documents: RequestDocument[]; dryRun: boolean } {
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw badRequest('body', body, 'an object {"documents": [...], "dryRun"?: boolean}');
  const { documents, dryRun } = body as { documents?: unknown; dryRun?: unknown };
  if (dryRun !== undefined && typeof dryRun !== 'boolean')
    throw badRequest('dryRun', dryRun, 'true or false');
  if (!Array.isArray(documents) || documents.length === 0 || documents.length > MAX_DOCUMENTS)
    throw badRequest('documents', documents, `an array of 1 to ${MAX_DOCUMENTS} documents`);
  const parsed = documents.map((document: unknown, index): RequestDocument => {
    if (document !== null && typeof document === 'object') {
      if ('staged' in document && typeof document.staged === 'string')
        return 'manifest' in document
          ? { staged: document.staged, manifest: document.manifest }
          : { staged: document.staged };
      if ('manifest' in document) return { manifest: document.manifest };
    }
    throw badRequest(
      `documents.${index}`,
      document,
      'an object with "manifest" (a resource), "staged" (the id of an uploaded package), or both (a Function whose code is that package)',
    );
  });
  return { documents: parsed, dryRun: dryRun === true };
}

function badRequest(field: string, value: unknown, expected: string): HearthError {
  const shown = value === undefined ? 'nothing' : Array.isArray(value) ? 'an array' : typeof value;
  return new HearthError('HEARTH_E_BAD_REQUEST', `${field}: got ${shown}, expected ${expected}`, {
    details: { field, expected },
  });
}

function labelOf(context: ApiContext, document: RequestDocument, index: number): Label {
  if ('staged' in document && !('manifest' in document)) {
    const ref = context.deployer.stagedPackage(document.staged)?.prepared.ref;
    return { index, kind: 'Function', namespace: ref?.namespace ?? '?', name: ref?.name ?? '?' };
  }
  const manifest: unknown = document.manifest;
  const field = (value: unknown, fallback: string): string =>
    typeof value === 'string' && value !== '' ? value : fallback;
  if (manifest === null || typeof manifest !== 'object')
    return { index, kind: '?', namespace: 'default', name: '?' };
  const { kind, metadata } = manifest as { kind?: unknown; metadata?: unknown };
  const meta = (metadata ?? {}) as { name?: unknown; namespace?: unknown };
  return {
    index,
    kind: field(kind, '?'),
    namespace: field(meta.namespace, 'default'),
    name: field(meta.name, '?'),
  };
}

/** `documents.1 (EventGateway default/shop): <reason>`, with the document in the details. */
function documentError(label: Label, error: unknown): Error {
  if (!isHearthError(error)) return error instanceof Error ? error : new Error(String(error));
  return new HearthError(
    error.code,
    `documents.${label.index} (${label.kind} ${label.namespace}/${label.name}): ${error.message}`,
    {
      details: {
        ...error.details,
        document: { index: label.index, kind: label.kind, namespace: label.namespace, name: label.name },
        reason: error.message,
      },
      cause: error,
    },
  );
}

async function applyAll(
  context: ApiContext,
  documents: readonly RequestDocument[],
  labels: readonly Label[],
  dryRun: boolean,
): Promise<ApplyResponse> {
  const planned = documents.map((document, index) => {
    const label = labels[index] as Label;
    try {
      return plan(context, document, label);
    } catch (error) {
      throw documentError(label, error);
    }
  });
  const seen = new Map<string, Label>();
  for (const item of planned) {
    const key = `${item.kind} ${item.label.namespace}/${item.label.name}`;
    const earlier = seen.get(key);
    if (earlier !== undefined)
      throw documentError(
        item.label,
        new HearthError(
          'HEARTH_E_VALIDATION',
          `metadata.name: ${key} is also documents.${earlier.index}; give each resource once`,
          {
            details: {
              field: 'metadata.name',
              value: item.label.name,
              expected: 'a resource not given twice',
            },
          },
        ),
      );
    seen.set(key, item.label);
  }
  const gateways = planned.filter((item) => item.kind === 'EventGateway');
  const changedGateways = gateways.filter((item) => !item.prepared.unchanged);
  if (changedGateways.length > 0) {
    try {
      eventsOf(context).gateways.checkRoutes(changedGateways.map((item) => item.prepared));
    } catch (error) {
      const conflict = isHearthError(error) ? conflictingGateway(error) : undefined;
      const culprit =
        changedGateways.find((item) => `${item.label.namespace}/${item.label.name}` === conflict) ??
        changedGateways[0];
      throw culprit === undefined ? error : documentError(culprit.label, error);
    }
  }
  const functions = planned.filter((item) => item.kind === 'Function');
  const namespaces = planned.filter((item) => item.kind === 'Namespace');
  if (dryRun) {
    return {
      dryRun: true,
      items: planned.map((item) => ({
        index: item.label.index,
        kind: item.kind,
        namespace: item.label.namespace,
        name: item.label.name,
        unchanged:
          item.kind === 'Function'
            ? context.deployer.isUnchanged(item.prepared)
            : item.kind === 'Secret' || item.kind === 'Namespace'
              ? false
              : item.prepared.unchanged,
      })),
    };
  }
  const events = changedGateways.length > 0 ? eventsOf(context) : undefined;
  let undoPorts: (() => Promise<void>) | undefined;
  try {
    undoPorts = await events?.gateways.bindPorts(changedGateways.map((item) => item.prepared));
  } catch (error) {
    const message = isHearthError(error) ? error.message : '';
    const culprit =
      changedGateways.find((item) =>
        message.startsWith(`gateway ${item.label.namespace}/${item.label.name}:`),
      ) ?? changedGateways[0];
    throw culprit === undefined ? error : documentError(culprit.label, error);
  }
  // Secrets go first: a Function of the same apply is verified with them bound. A refusal puts back exactly
  // what was stored before (issue 13).
  const secretItems = planned.filter((item) => item.kind === 'Secret');
  const undoSecrets =
    secretItems.length === 0
      ? undefined
      : context.compliance?.secrets.putAll(
          secretItems.map((item) => ({
            namespace: item.label.namespace,
            name: item.label.name,
            values: item.values,
          })),
        );
  for (const item of secretItems) for (const value of item.values.values()) value.fill(0);
  // In a cluster, the Functions of this apply start on other nodes with these secrets.
  if (undoSecrets !== undefined) await context.compliance?.secrets.settled();
  let outcomes: Awaited<ReturnType<typeof context.deployer.releaseAll>>;
  try {
    outcomes = await context.deployer.releaseAll(
      functions.map((item) => item.prepared),
      () => {
        for (const item of changedGateways) events?.gateways.store(item.prepared);
        for (const item of namespaces) context.security?.storeNamespace(item.prepared);
      },
      (index, error) => {
        const label = functions[index]?.label ?? changedGateways[0]?.label;
        return label === undefined ? (error as Error) : documentError(label, error);
      },
    );
  } catch (error) {
    await undoPorts?.();
    if (undoSecrets !== undefined) {
      undoSecrets();
      await context.compliance?.secrets.settled();
    }
    throw error;
  }
  await events?.gateways.activate(changedGateways.map((item) => item.prepared));
  for (const item of namespaces) context.security?.activateNamespace(item.prepared);
  // Triggers go in last: the functions they deliver to are in force by now.
  for (const item of planned) if (item.kind === 'Trigger') eventsOf(context).eventing.put(item.prepared);
  for (const { staged } of documents.filter((document) => 'staged' in document))
    context.deployer.dropStaged(staged);
  const items = planned.map((item): ApplyDocumentOutcome => {
    const base = {
      index: item.label.index,
      kind: item.kind,
      namespace: item.label.namespace,
      name: item.label.name,
    };
    if (item.kind === 'Secret') return { ...base, unchanged: false };
    if (item.kind === 'Namespace') return { ...base, unchanged: false };
    if (item.kind === 'EventGateway')
      return {
        ...base,
        unchanged: item.prepared.unchanged,
        gateway: eventsOf(context).gateways.detail(item.label.namespace, item.label.name),
      };
    if (item.kind === 'Trigger') return { ...base, unchanged: item.prepared.unchanged };
    const outcome = outcomes[functions.indexOf(item)];
    const stored = context.store.getFunction(item.prepared.ref);
    return {
      ...base,
      unchanged: outcome === undefined,
      version: stored?.active.version ?? 0,
      function: stored === undefined ? null : detailOf(context, stored),
      deployment: outcome?.deployment ?? null,
    };
  });
  return { dryRun: false, items };
}

function plan(context: ApiContext, document: RequestDocument, label: Label): Planned {
  if ('staged' in document) {
    const staged = context.deployer.stagedPackage(document.staged);
    if (staged === undefined)
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `staged: got "${document.staged}", expected the id of a package uploaded with ?stage=true in the last 15 minutes`,
        { details: { field: 'staged', value: document.staged, expected: 'a staged package id' } },
      );
    if (!('manifest' in document)) return { label, kind: 'Function', prepared: staged.prepared };
    const ref: FunctionRef = { namespace: label.namespace, name: label.name };
    return {
      label,
      kind: 'Function',
      prepared: context.deployer.prepareWithCode(ref, document.manifest, staged.prepared),
    };
  }
  if (label.kind === 'Function') {
    const ref: FunctionRef = { namespace: label.namespace, name: label.name };
    return { label, kind: 'Function', prepared: context.deployer.prepareConfigure(ref, document.manifest) };
  }
  if (label.kind === 'Namespace' && context.security !== undefined) {
    const manifest = context.security.parseNamespace(document.manifest);
    return { label: { ...label, name: manifest.metadata.name }, kind: 'Namespace', prepared: manifest };
  }
  if (label.kind === 'EventGateway')
    return {
      label,
      kind: 'EventGateway',
      prepared: eventsOf(context).gateways.prepare(label.namespace, label.name, document.manifest),
    };
  if (label.kind === 'Trigger')
    return {
      label,
      kind: 'Trigger',
      prepared: eventsOf(context).eventing.prepare(label.namespace, label.name, document.manifest),
    };
  if (label.kind === 'Secret' && context.compliance !== undefined)
    return { label, kind: 'Secret', values: planSecret(document.manifest, label) };
  throw new HearthError(
    'HEARTH_E_VALIDATION',
    `kind: got "${label.kind}", expected "Function", "EventGateway", "Trigger", "Secret" or "Namespace"`,
    {
      details: {
        field: 'kind',
        value: label.kind,
        expected: 'Function, EventGateway, Trigger, Secret or Namespace',
      },
    },
  );
}

/** The gateway (`namespace/name`) whose route a conflict error blames. */
function conflictingGateway(error: HearthError): string | undefined {
  const gateway = error.code === 'HEARTH_E_ROUTE_CONFLICT' ? error.details?.gateway : undefined;
  return typeof gateway === 'string' ? gateway : undefined;
}

/** A Secret document's values; its refusals never quote a value (domain/compliance.ts). */
function planSecret(manifest: unknown, label: Label): Map<string, Buffer> {
  const { apiVersion, data, stringData, metadata, kind, ...rest } = manifest as Record<string, unknown>;
  if (apiVersion !== 'hearth.dev/v1')
    throw new HearthError('HEARTH_E_VALIDATION', `apiVersion: expected "hearth.dev/v1"`, {
      details: { field: 'apiVersion', expected: '"hearth.dev/v1"' },
    });
  if (!isSecretName(label.name) || !isSecretName(label.namespace))
    throw new HearthError('HEARTH_E_VALIDATION', 'metadata.name: expected a lower-case DNS label', {
      details: { field: 'metadata.name', expected: 'a lower-case DNS label' },
    });
  const unknown = Object.keys(rest)[0];
  if (unknown !== undefined)
    throw new HearthError(
      'HEARTH_E_VALIDATION',
      `${unknown.slice(0, 64)}: no such field on a Secret (data, stringData)`,
      {
        details: { field: unknown.slice(0, 64), expected: 'data or stringData' },
      },
    );
  void kind;
  void metadata;
  return parseSecretData(data, stringData, 'Secret');
}
