/**
 * @module Compliance (issue 13): the SM4/SM3 start-up check, secrets sealed at rest, the SM3 hash-chained
 * audit log and its sinks. Other parts import only this file.
 */

import type { SecretStore } from './secrets.js';

export { type ComplianceConfig, complianceConfigSchema, resolveCompliance } from './config.js';
export { assertCryptoSupport, missingAlgorithms } from './crypto-check.js';
export { Keyring } from './keyring.js';
export { SECRET_FILES_ENV, SecretStore, type SecretSummary } from './secrets.js';

/** What the control API works with. */
export interface ComplianceApi {
  readonly secrets: SecretStore;
}
