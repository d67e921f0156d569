/**
 * @module Compliance (issue 13): the SM4/SM3 start-up check, secrets sealed at rest, the SM3 hash-chained
 * audit log and its real-time sinks. Other parts import only this file.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuditLog } from './audit.js';
import type { SinkRunner } from './audit-sinks.js';
import type { SecretStore } from './secrets.js';

export { type Actor, actorOf, setKeyIdentity } from './actor.js';
export {
  type AuditCheckpoint,
  type AuditEntry,
  AuditLog,
  type AuditRecord,
  type VerifyResult,
} from './audit.js';
export { createSink, SinkRunner } from './audit-sinks.js';
export { type ComplianceConfig, complianceConfigSchema, resolveCompliance } from './config.js';
export { assertCryptoSupport, missingAlgorithms } from './crypto-check.js';
export { Keyring } from './keyring.js';
export { auditDetail, auditInvocations, recordRefusedLogin, recordRequest } from './recorder.js';
export {
  SECRET_FILES_ENV,
  SECRET_INSERT_COLUMNS,
  type SecretRow,
  SecretStore,
  type SecretSummary,
  type SecretTable,
  secretInsertValues,
} from './secrets.js';
export {
  generateSigningKey,
  keyIdOf,
  type PackageSignature,
  packageFiles,
  SIGNATURE_FILE,
  signPackage,
  verifyPackage,
} from './signing.js';

/** What the control API works with. */
export interface ComplianceApi {
  readonly secrets: SecretStore;
  readonly audit: AuditLog;
  readonly sinks: readonly SinkRunner[];
  /** Audits one control-plane request once answered; `action` is `METHOD /api/v1/...pattern`. */
  recordRequest(request: IncomingMessage, response: ServerResponse, action: string): void;
  /** Audits a request refused for its credentials (401) or its role (403): "logins refused". */
  recordRefused(request: IncomingMessage, status: number, reason: string): void;
}
