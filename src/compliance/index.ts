/**
 * @module Compliance (issue 13): the SM4/SM3 start-up check, secrets sealed at rest, the SM3 hash-chained
 * audit log and its sinks. Other parts import only this file.
 */

export { assertCryptoSupport, missingAlgorithms } from './crypto-check.js';
