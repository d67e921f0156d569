/**
 * @module Tenants, keys and roles (issue 10): who a request is (an API key or a token derived from one),
 * what its role allows in which namespaces, each namespace's policy and quotas, and who may invoke a
 * function. The gateway and the control API ask through `Security`; keys and namespaces are kept by the
 * control store through `SecurityStore`.
 */

import type { DeployedVersion } from '../domain/deployment.js';
import { HearthError } from '../domain/errors.js';
import type { FunctionRef } from '../domain/function.js';
import { formatBytes } from '../domain/units.js';
import {
  awsCredentials,
  isRole,
  isToken,
  keyIdOfAwsAccessKey,
  newKeySecret,
  parseKey,
  secretMatches,
  signToken,
  verifyToken,
} from './credentials.js';
import { type JwtPolicy, verifyJwt } from './jwt.js';
import {
  type NamespaceManifest,
  type NamespacePolicy,
  parseNamespaceManifest,
  type Quotas,
  resolveNamespace,
} from './namespace.js';
import {
  type Action,
  ALL_NAMESPACES,
  type Grant,
  isWithin,
  leastRoleFor,
  permits,
  type Role,
} from './roles.js';
import { parseSigV4Authorization, type SignedRequest, SigV4Refusal, verifySigV4 } from './sigv4.js';
import type { SecurityStore, StoredKey, StoredNamespace } from './store.js';

export { isRole } from './credentials.js';
export {
  type NamespaceManifest,
  type NamespacePolicy,
  namespaceResourceSchema,
  parseNamespaceManifest,
  type Quotas,
} from './namespace.js';
export { type Action, ALL_NAMESPACES, type Grant, ROLES, type Role } from './roles.js';
export { isSigV4, type SignedRequest, SigV4Refusal } from './sigv4.js';
export type { SecurityStore, StoredKey, StoredNamespace } from './store.js';

/** A key's credentials for AWS clients (SigV4 on the Lambda Invoke API); shown once, with the key. */
export interface AwsCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

/** Who made a request: the key (or the token derived from it) and what it may do. */
export interface Principal extends Grant {
  readonly keyId: string;
  readonly name: string;
  readonly via: 'key' | 'token';
}

export interface KeySummary {
  readonly id: string;
  readonly name: string;
  readonly role: Role;
  readonly namespaces: readonly string[];
  readonly createdAt: string;
  readonly revokedAt: string | null;
}

/** What a client asked for, as sent (JSON): validated by `createKey`, each field named when wrong. */
export interface NewKeyRequest {
  readonly role: unknown;
  readonly namespaces?: unknown;
  readonly name?: unknown;
}

/** What a client asked for, as sent (JSON): validated by `issueToken`. */
export interface TokenRequest {
  readonly ttlSeconds?: unknown;
  readonly role?: unknown;
  readonly namespaces?: unknown;
}

/** Figures a quota is checked against, read from the rest of the platform. */
export interface NamespaceUsage {
  /** Functions of the namespace and the code bytes of all their retained versions. */
  functions(namespace: string): { readonly names: ReadonlySet<string>; readonly codeBytes: number };
  /** Instances alive or starting, and the memory they reserve (their `limits.memory`). */
  instances(namespace: string): { readonly instances: number; readonly memoryBytes: number };
}

/** A version about to be released, for the quota and JWT-policy checks. */
export interface DeployCandidate {
  readonly ref: FunctionRef;
  readonly codeBytes: number;
  readonly spec: DeployedVersion['spec'];
}

/** The result of an invocation check: claims for `ctx.auth`, and whether the Authorization header is dropped. */
export interface InvocationAuth {
  readonly claims: Readonly<Record<string, unknown>> | undefined;
  readonly stripAuthorization: boolean;
}

export interface SecurityOptions {
  readonly store: SecurityStore;
  /** The platform listens beyond loopback: auth is on even before any key exists. */
  readonly exposed: boolean;
  readonly usage: NamespaceUsage;
  /** Audit lines: keys created and revoked, tokens issued, refusals (never a secret). */
  readonly audit: (fields: Record<string, unknown>, message: string) => void;
  readonly now?: () => number;
}

const MAX_TOKEN_TTL_SECONDS = 24 * 3600;
const DEFAULT_TOKEN_TTL_SECONDS = 3600;
const KEY_NAME = /^[A-Za-z0-9 ._-]{1,63}$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export class Security {
  private readonly keys = new Map<string, StoredKey>();
  private readonly policies = new Map<string, NamespacePolicy>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly secret: Buffer;
  private readonly now: () => number;
  private activeKeys = 0;
  /**
   * True while some namespace requires keys or limits its request rate: only then does a public
   * function's invocation consult this part at all (one boolean on the hot path).
   */
  namespaceChecks = false;
  /** A `key` or `jwt` function has been released in this run (set before it goes live). */
  protectedReleased = false;

  constructor(private readonly options: SecurityOptions) {
    this.now = options.now ?? Date.now;
    this.secret = options.store.tokenSecret();
    this.reload();
  }

  /** Reads keys and namespaces from the store: at start, and when another node of a cluster changed them. */
  reload(): void {
    this.keys.clear();
    for (const key of this.options.store.listKeys()) this.keys.set(key.id, key);
    this.activeKeys = [...this.keys.values()].filter((key) => key.revokedAt === null).length;
    this.policies.clear();
    for (const stored of this.options.store.listNamespaces())
      this.policies.set(stored.name, resolveNamespace(stored.manifest));
    this.refreshChecks();
  }

  /** Auth is on when the platform listens beyond loopback, or once a key exists. */
  get enabled(): boolean {
    return this.options.exposed || this.activeKeys > 0;
  }

  /**
   * `hearth up`'s first admin key: made when auth is on and no key exists, returned once to be printed,
   * and stored only as its hash.
   */
  ensureFirstKey(): string | undefined {
    if (!this.enabled || this.activeKeys > 0) return undefined;
    return this.createKey({ role: 'admin', namespaces: [ALL_NAMESPACES], name: 'first admin key' }).key;
  }

  /**
   * The principal behind an `Authorization: Bearer …` header; undefined without one. A header that
   * carries no valid key or token is a 401 (the same answer for unknown, revoked, expired or malformed).
   */
  authenticate(authorization: string | undefined): Principal | undefined {
    if (authorization === undefined || authorization === '') return undefined;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    const presented = match?.[1];
    const principal = presented === undefined ? undefined : this.principalOf(presented);
    if (principal === undefined)
      throw new HearthError(
        'HEARTH_E_UNAUTHORIZED',
        'the API key or token is not valid (unknown, revoked, expired or malformed); send "Authorization: Bearer <key>"',
        { details: { required: 'a valid API key or token' } },
      );
    return principal;
  }

  /**
   * The principal when it may do `action` in `namespace` (undefined = every namespace); undefined when
   * auth is off. No credentials → 401, credentials that do not cover it → 403; both name what is needed.
   */
  authorize(
    authorization: string | undefined,
    action: Action,
    namespace: string | undefined,
  ): Principal | undefined {
    if (!this.enabled) return undefined;
    const principal = this.authenticate(authorization);
    if (principal === undefined)
      throw new HearthError(
        'HEARTH_E_UNAUTHORIZED',
        `an API key is required: send "Authorization: Bearer <key>" with a key or token whose role allows ${action}${where(namespace)}`,
        { details: { required: requirement(action, namespace) } },
      );
    this.check(principal, action, namespace);
    return principal;
  }

  /**
   * The control API's check before a route runs (control/api/router.ts `RouteAccess`): `public` routes
   * and a platform with auth off pass; `handler` needs valid credentials of any scope.
   */
  guard(
    req: { readonly headers: { readonly authorization?: string | undefined } },
    access: { readonly action: Action } | 'handler' | 'public',
    namespace: string | undefined,
  ): Principal | undefined {
    if (access === 'public' || !this.enabled) return undefined;
    if (access !== 'handler') return this.authorize(req.headers.authorization, access.action, namespace);
    const principal = this.authenticate(req.headers.authorization);
    if (principal === undefined)
      throw new HearthError(
        'HEARTH_E_UNAUTHORIZED',
        'an API key is required: send "Authorization: Bearer <key>"',
        {
          details: { required: 'a valid API key or token' },
        },
      );
    return principal;
  }

  /** 403 unless `principal` may do `action` in `namespace`; a no-op for no principal (auth off). */
  check(principal: Principal | undefined, action: Action, namespace: string | undefined): void {
    if (principal === undefined || permits(principal, action, namespace)) return;
    this.options.audit(
      { key: principal.keyId, via: principal.via, action, namespace: namespace ?? ALL_NAMESPACES },
      'request refused: role or namespace',
    );
    throw new HearthError(
      'HEARTH_E_FORBIDDEN',
      `this ${principal.via} may not ${action}${where(namespace)}: that needs the role ${leastRoleFor(action)} or above${namespace === undefined ? ' on every namespace ("*")' : ` in namespace ${namespace}`}`,
      { details: { required: requirement(action, namespace) } },
    );
  }

  createKey(request: NewKeyRequest): {
    readonly key: string;
    readonly summary: KeySummary;
    readonly aws: AwsCredentials;
  } {
    const { role } = request;
    if (!isRole(role)) throw invalid('role', role, 'one of admin, deployer, invoker, viewer');
    const namespaces = role === 'admin' ? [ALL_NAMESPACES] : checkNamespaces(request.namespaces);
    const name = request.name ?? `${role} key`;
    if (typeof name !== 'string' || !KEY_NAME.test(name))
      throw invalid('name', name, 'up to 63 letters, digits, spaces, ".", "_" or "-"');
    const secret = newKeySecret();
    const stored: StoredKey = {
      id: secret.id,
      name,
      role,
      namespaces,
      hash: secret.hash,
      createdAt: new Date(this.now()).toISOString(),
      revokedAt: null,
    };
    this.options.store.insertKey(stored);
    this.keys.set(stored.id, stored);
    this.activeKeys += 1;
    this.options.audit({ key: stored.id, role, namespaces, name }, 'api key created');
    return {
      key: secret.key,
      summary: summaryOf(stored),
      aws: awsCredentials(stored.id, stored.hash, this.secret),
    };
  }

  /**
   * The key behind a SigV4-signed request (the Lambda Invoke API): its access key id names an active key
   * and the signature, made with that key's derived secret access key, checks out. Throws a
   * `SigV4Refusal` otherwise (UnrecognizedClientException for an unknown or revoked key id,
   * InvalidSignatureException for a bad signature or a date more than 15 minutes off).
   */
  authenticateSigV4(request: SignedRequest, authorization: string | undefined, service: string): Principal {
    const parsed = parseSigV4Authorization(authorization);
    if (parsed === undefined)
      throw new SigV4Refusal(
        'IncompleteSignatureException',
        'the Authorization header is not a complete AWS4-HMAC-SHA256 signature (Credential=ID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=…, Signature=<64 hex digits>)',
      );
    const keyId = keyIdOfAwsAccessKey(parsed.accessKeyId);
    const key = keyId === undefined ? undefined : this.keys.get(keyId);
    if (key === undefined || key.revokedAt !== null) {
      this.options.audit(
        { accessKeyId: parsed.accessKeyId.slice(0, 40) },
        'request refused: unknown AWS access key id',
      );
      throw new SigV4Refusal(
        'UnrecognizedClientException',
        'The security token included in the request is invalid: the access key id names no active Hearth API key (HTHK + the key id, from `hearth keys create`).',
      );
    }
    try {
      verifySigV4(request, parsed, awsCredentials(key.id, key.hash, this.secret).secretAccessKey, {
        service,
        nowMs: this.now(),
      });
    } catch (error) {
      this.options.audit({ key: key.id, via: 'sigv4' }, 'request refused: SigV4 signature');
      throw error;
    }
    return { keyId: key.id, name: key.name, role: key.role, namespaces: key.namespaces, via: 'key' };
  }

  /**
   * The AWS credentials of the key that made this request: only its holder gets them again (it presents
   * the key itself, not a token), so no one, not even an admin, gains another key's authority this way.
   */
  awsCredentialsOf(principal: Principal): AwsCredentials {
    const key = this.keys.get(principal.keyId);
    if (principal.via !== 'key' || key === undefined || key.revokedAt !== null)
      throw new HearthError(
        'HEARTH_E_FORBIDDEN',
        'only the key itself (not a token derived from it) may ask for its AWS credentials: send "Authorization: Bearer <key>"',
        { details: { required: 'the API key whose AWS credentials are asked for' } },
      );
    this.options.audit({ key: key.id }, 'aws credentials shown to their key');
    return awsCredentials(key.id, key.hash, this.secret);
  }

  listKeys(): KeySummary[] {
    return [...this.keys.values()].map(summaryOf);
  }

  /** Revokes a key at once, and every token derived from it; false when no active key has that id. */
  revokeKey(id: string): boolean {
    const key = this.keys.get(id);
    if (key === undefined || key.revokedAt !== null) return false;
    const at = new Date(this.now()).toISOString();
    if (!this.options.store.revokeKey(id, at)) return false;
    this.keys.set(id, { ...key, revokedAt: at });
    this.activeKeys -= 1;
    this.options.audit({ key: id }, 'api key revoked');
    return true;
  }

  /** A short-lived token with the principal's scope or a narrower one. */
  issueToken(
    principal: Principal,
    request: TokenRequest,
  ): {
    readonly token: string;
    readonly expiresAt: string;
    readonly role: Role;
    readonly namespaces: readonly string[];
  } {
    const ttl = request.ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
    if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS)
      throw invalid('ttlSeconds', ttl, `a whole number of seconds from 1 to ${MAX_TOKEN_TTL_SECONDS}`);
    const role = request.role ?? principal.role;
    if (!isRole(role)) throw invalid('role', role, 'one of admin, deployer, invoker, viewer');
    const namespaces =
      request.namespaces === undefined ? principal.namespaces : checkNamespaces(request.namespaces);
    const grant: Grant = { role, namespaces: role === 'admin' ? [ALL_NAMESPACES] : namespaces };
    if (!isWithin(grant, principal))
      throw new HearthError(
        'HEARTH_E_FORBIDDEN',
        `a token may only narrow its key: role ${role} in ${grant.namespaces.join(', ')} is not within this ${principal.via}'s scope`,
        { details: { required: 'a role and namespaces within the key’s own' } },
      );
    const expiresAt = Math.floor(this.now() / 1000) + ttl;
    const token = signToken({ keyId: principal.keyId, ...grant, expiresAt }, this.secret);
    this.options.audit({ key: principal.keyId, role, namespaces: grant.namespaces, ttl }, 'token issued');
    return { token, expiresAt: new Date(expiresAt * 1000).toISOString(), ...grant };
  }

  // --- namespaces -------------------------------------------------------------------------------------

  policy(namespace: string): NamespacePolicy | undefined {
    return this.policies.get(namespace);
  }

  listNamespaces(): StoredNamespace[] {
    return this.options.store.listNamespaces();
  }

  /** Validates a Namespace resource (throws a validation error naming the field). */
  parseNamespace(input: unknown, origin?: string): NamespaceManifest {
    return parseNamespaceManifest(input, origin);
  }

  /** Stores a validated Namespace; call it inside the apply's store transaction. */
  storeNamespace(manifest: NamespaceManifest): StoredNamespace {
    return this.options.store.putNamespace(manifest);
  }

  /** Puts a stored Namespace's policy in force (after its transaction committed). */
  activateNamespace(manifest: NamespaceManifest): void {
    this.policies.set(manifest.metadata.name, resolveNamespace(manifest));
    this.buckets.delete(manifest.metadata.name);
    this.refreshChecks();
  }

  deleteNamespace(name: string): boolean {
    const deleted = this.options.store.deleteNamespace(name);
    this.policies.delete(name);
    this.buckets.delete(name);
    this.refreshChecks();
    return deleted;
  }

  /** How much of each quota the namespace uses now, for describe. */
  usage(namespace: string): Record<keyof Quotas, number> {
    const functions = this.options.usage.functions(namespace);
    const instances = this.options.usage.instances(namespace);
    return {
      functions: functions.names.size,
      codeBytes: functions.codeBytes,
      instances: instances.instances,
      memoryBytes: instances.memoryBytes,
      requestsPerSecond: 0,
      queueDepth: 0,
    };
  }

  // --- quotas -----------------------------------------------------------------------------------------

  /**
   * Refuses a release that would take a namespace past its function-count or code-bytes quota (403),
   * and a `jwt` function without its `jwt` block (400). `candidates` are released together.
   */
  admitDeploy(candidates: readonly DeployCandidate[]): void {
    for (const candidate of candidates)
      if (candidate.spec.auth === 'jwt' && candidate.spec.jwt === undefined)
        throw invalid('spec.jwt', undefined, 'a jwt block {jwks, issuer, audience} when spec.auth is jwt');
    if (candidates.some((candidate) => candidate.spec.auth !== 'public')) this.protectedReleased = true;
    const byNamespace = new Map<string, DeployCandidate[]>();
    for (const candidate of candidates) {
      const list = byNamespace.get(candidate.ref.namespace) ?? [];
      list.push(candidate);
      byNamespace.set(candidate.ref.namespace, list);
    }
    for (const [namespace, list] of byNamespace) {
      const quotas = this.policies.get(namespace)?.quotas;
      if (quotas === undefined || (quotas.functions === undefined && quotas.codeBytes === undefined))
        continue;
      const usage = this.options.usage.functions(namespace);
      const names = new Set(usage.names);
      let codeBytes = usage.codeBytes;
      for (const candidate of list) {
        names.add(candidate.ref.name);
        // A new version adds its bytes to the retained ones, less the oldest it pushes out of the retention.
        codeBytes +=
          candidate.codeBytes - (usage.names.has(candidate.ref.name) ? this.releasedBytes(candidate.ref) : 0);
      }
      if (quotas.functions !== undefined && names.size > quotas.functions && names.size > usage.names.size)
        throw quotaError(
          'functions',
          namespace,
          quotas.functions,
          usage.names.size,
          `${names.size - usage.names.size} more`,
        );
      if (quotas.codeBytes !== undefined && codeBytes > quotas.codeBytes && codeBytes > usage.codeBytes)
        throw quotaError(
          'codeBytes',
          namespace,
          quotas.codeBytes,
          usage.codeBytes,
          formatBytes(codeBytes),
          formatBytes,
        );
    }
  }

  /** Code bytes a new version of the function releases from the retention, for its delta (set by the composition root). */
  releasedBytes: (ref: FunctionRef) => number = () => 0;

  /**
   * The scheduler's admission callback: a refusal (403 naming the quota) when one more instance of
   * `version` would take its namespace past its instances or memory quota.
   */
  admitInstance(version: DeployedVersion): HearthError | undefined {
    const quotas = this.policies.get(version.ref.namespace)?.quotas;
    if (quotas === undefined || (quotas.instances === undefined && quotas.memoryBytes === undefined))
      return undefined;
    const use = this.options.usage.instances(version.ref.namespace);
    if (quotas.instances !== undefined && use.instances + 1 > quotas.instances)
      return quotaError('instances', version.ref.namespace, quotas.instances, use.instances, 'one more');
    const need = version.spec.limits.memoryBytes;
    if (quotas.memoryBytes !== undefined && use.memoryBytes + need > quotas.memoryBytes)
      return quotaError(
        'memory',
        version.ref.namespace,
        quotas.memoryBytes,
        use.memoryBytes,
        `${formatBytes(need)} more`,
        formatBytes,
      );
    return undefined;
  }

  /** Takes one request from the namespace's token bucket (burst = one second's worth); 429 when empty. */
  takeRequest(namespace: string): void {
    const rate = this.policies.get(namespace)?.quotas.requestsPerSecond;
    if (rate === undefined) return;
    const now = this.now();
    const bucket = this.buckets.get(namespace) ?? { tokens: Math.max(1, rate), at: now };
    bucket.tokens = Math.min(Math.max(1, rate), bucket.tokens + ((now - bucket.at) / 1000) * rate);
    bucket.at = now;
    this.buckets.set(namespace, bucket);
    if (bucket.tokens < 1) {
      const retryAfter = Math.max(1, Math.ceil((1 - bucket.tokens) / rate));
      throw new HearthError(
        'HEARTH_E_QUOTA_THROTTLED',
        `namespace ${namespace} is over its requestsPerSecond quota (limit ${rate}/s); retry in ${retryAfter}s`,
        { retryAfter, details: { quota: 'requestsPerSecond', namespace, limit: rate, current: rate } },
      );
    }
    bucket.tokens -= 1;
  }

  /** A 429 when the namespace already has `queued` async invocations waiting and a queueDepth quota. */
  checkQueueDepth(namespace: string, queued: number): void {
    const limit = this.policies.get(namespace)?.quotas.queueDepth;
    if (limit !== undefined && queued >= limit)
      throw new HearthError(
        'HEARTH_E_QUOTA_THROTTLED',
        `namespace ${namespace} is at its queueDepth quota: ${queued} of ${limit} async invocations wait; retry later`,
        { retryAfter: 1, details: { quota: 'queueDepth', namespace, limit, current: queued } },
      );
  }

  queueDepthLimit(namespace: string): number | undefined {
    return this.policies.get(namespace)?.quotas.queueDepth;
  }

  // --- invocation -------------------------------------------------------------------------------------

  /**
   * Whether an invocation of `deployed` must be checked here: the function is not public, or some
   * namespace requires keys or limits its rate. The gateway calls `checkInvocation` only then.
   */
  invocationChecked(deployed: DeployedVersion): boolean {
    return deployed.spec.auth !== 'public' || this.namespaceChecks;
  }

  /**
   * Checks one invocation: the namespace's rate quota, then the function's auth (`key`: an API key or
   * token with `invoker` in its namespace; `jwt`: a JWT from its JWKS). Calls back synchronously unless
   * a JWT is verified.
   */
  checkInvocation(
    deployed: DeployedVersion,
    authorization: string | undefined,
    done: (error: HearthError | undefined, auth: InvocationAuth | undefined) => void,
    /** The caller already authenticated another way (a SigV4-signed request): checked in place of `authorization`. */
    signed?: Principal,
  ): void {
    const { namespace } = deployed.ref;
    let mode = deployed.spec.auth;
    // The caller is checked first, so requests refused for auth do not use up the tenant's rate.
    try {
      if (mode === 'public' && this.policies.get(namespace)?.functionAuth === 'key') mode = 'key';
      if (mode === 'public') {
        this.takeRequest(namespace);
        done(undefined, undefined);
        return;
      }
      if (mode === 'key') {
        let principal = signed;
        if (principal === undefined) principal = this.authorizeInvoke(authorization, namespace);
        else this.check(principal, 'invoke', namespace);
        this.takeRequest(namespace);
        done(undefined, {
          claims: { type: 'key', key: principal.keyId, name: principal.name, role: principal.role },
          stripAuthorization: true,
        });
        return;
      }
    } catch (error) {
      done(error as HearthError, undefined);
      return;
    }
    // mode is jwt.
    const policy = deployed.spec.jwt as JwtPolicy;
    const match = authorization === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (match === null || match[1] === undefined) {
      done(
        new HearthError(
          'HEARTH_E_UNAUTHORIZED',
          'this function requires a JWT: send "Authorization: Bearer <jwt>"',
          {
            details: { required: 'a bearer JWT' },
          },
        ),
        undefined,
      );
      return;
    }
    verifyJwt(match[1], policy).then(
      (claims) => {
        try {
          this.takeRequest(namespace);
        } catch (error) {
          done(error as HearthError, undefined);
          return;
        }
        done(undefined, { claims: { type: 'jwt', ...claims }, stripAuthorization: false });
      },
      (error: unknown) => {
        this.options.audit({ function: `${namespace}/${deployed.ref.name}` }, 'invocation refused: JWT');
        done(error as HearthError, undefined);
      },
    );
  }

  /**
   * `ctx.invoke` from `caller` to `target`: within a namespace anything goes (one tenant); into another
   * namespace only a function anyone may invoke over HTTP (effective auth `public`), so a tenant's code
   * cannot reach round another tenant's key or JWT. The target namespace's rate quota applies too.
   */
  checkCall(caller: FunctionRef, target: DeployedVersion): void {
    const namespace = target.ref.namespace;
    if (caller.namespace !== namespace && this.effectiveAuth(target) !== 'public')
      throw new HearthError(
        'HEARTH_E_FORBIDDEN',
        `ctx.invoke: function ${target.ref.name} of namespace ${namespace} needs ${this.effectiveAuth(target) === 'jwt' ? 'a JWT' : 'an API key'}; a function may call it only from its own namespace`,
        { details: { required: { action: 'invoke', namespace } } },
      );
    this.takeRequest(namespace);
  }

  /** A function's auth with its namespace's floor applied. */
  effectiveAuth(deployed: DeployedVersion): 'public' | 'key' | 'jwt' {
    const mode = deployed.spec.auth;
    return mode === 'public' && this.policies.get(deployed.ref.namespace)?.functionAuth === 'key'
      ? 'key'
      : mode;
  }

  /** Invocation with `key` auth needs a key even while the platform's own auth is off. */
  private authorizeInvoke(authorization: string | undefined, namespace: string): Principal {
    const principal = this.authenticate(authorization);
    if (principal === undefined)
      throw new HearthError(
        'HEARTH_E_UNAUTHORIZED',
        `this function requires an API key: send "Authorization: Bearer <key>" with a key or token whose role allows invoke in namespace ${namespace}`,
        { details: { required: requirement('invoke', namespace) } },
      );
    this.check(principal, 'invoke', namespace);
    return principal;
  }

  private principalOf(presented: string): Principal | undefined {
    if (isToken(presented)) {
      const claims = verifyToken(presented, this.secret, Math.floor(this.now() / 1000));
      const key = claims === undefined ? undefined : this.keys.get(claims.keyId);
      if (claims === undefined || key === undefined || key.revokedAt !== null) return undefined;
      return {
        keyId: key.id,
        name: key.name,
        role: claims.role,
        namespaces: claims.namespaces,
        via: 'token',
      };
    }
    const parsed = parseKey(presented);
    const key = parsed === undefined ? undefined : this.keys.get(parsed.id);
    if (parsed === undefined || key === undefined || key.revokedAt !== null) return undefined;
    if (!secretMatches(parsed.secret, key.hash)) return undefined;
    return { keyId: key.id, name: key.name, role: key.role, namespaces: key.namespaces, via: 'key' };
  }

  /** Whether some namespace makes its public functions need a key. */
  get keysRequiredSomewhere(): boolean {
    for (const policy of this.policies.values()) if (policy.functionAuth === 'key') return true;
    return false;
  }

  private refreshChecks(): void {
    this.namespaceChecks = [...this.policies.values()].some(
      (policy) => policy.functionAuth === 'key' || policy.quotas.requestsPerSecond !== undefined,
    );
  }
}

/** Whether `host` is a loopback address (auth is then on only once a key exists). */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function summaryOf(key: StoredKey): KeySummary {
  return {
    id: key.id,
    name: key.name,
    role: key.role,
    namespaces: key.namespaces,
    createdAt: key.createdAt,
    revokedAt: key.revokedAt,
  };
}

function where(namespace: string | undefined): string {
  return namespace === undefined ? ' across every namespace' : ` in namespace ${namespace}`;
}

function requirement(action: Action, namespace: string | undefined): Record<string, string> {
  return { action, role: leastRoleFor(action), namespace: namespace ?? ALL_NAMESPACES };
}

function checkNamespaces(namespaces: unknown): string[] {
  if (!Array.isArray(namespaces) || namespaces.length === 0)
    throw invalid('namespaces', namespaces, 'a list of one or more namespaces (or "*" for all)');
  const checked: string[] = [];
  for (const namespace of namespaces as unknown[]) {
    if (typeof namespace !== 'string' || (namespace !== ALL_NAMESPACES && !DNS_LABEL.test(namespace)))
      throw invalid('namespaces', namespace, 'lower-case DNS labels, or "*" for all');
    if (!checked.includes(namespace)) checked.push(namespace);
  }
  return checked;
}

function invalid(field: string, value: unknown, expected: string): HearthError {
  const shown = value === undefined ? 'nothing' : JSON.stringify(value);
  return new HearthError('HEARTH_E_VALIDATION', `${field}: got ${shown}, expected ${expected}`, {
    details: { field, value, expected },
  });
}

function quotaError(
  quota: string,
  namespace: string,
  limit: number,
  current: number,
  asked: string,
  show: (value: number) => string = String,
): HearthError {
  return new HearthError(
    'HEARTH_E_QUOTA_EXCEEDED',
    `namespace ${namespace} is at its ${quota} quota: limit ${show(limit)}, in use ${show(current)}, asked for ${asked}`,
    { details: { quota, namespace, limit, current } },
  );
}
