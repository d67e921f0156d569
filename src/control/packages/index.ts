/** @module Function code: safe archive intake, the content-addressed package store and its node-local cache. */

export { type ReceivedTree, receiveArchive, type UnpackLimits } from './archive.js';
export { type CodeCheckout, CodeStore, type CodeStoreOptions, type CodeStoreStats } from './code-store.js';
export { hashTree, type TreeDigest } from './tree-hash.js';
export { runArchiveJob } from './workers.js';
