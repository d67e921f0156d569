/**
 * @module Signed code packages (issue 13). `hearth sign DIR` writes `.hearth-signature` into the folder:
 * an Ed25519 signature over the package digest — SM3 of the sorted list `path NUL sha256(content) LF` of
 * every file and link in the package but the signature itself — so the signature travels inside the
 * upload. Where `signing.requireSignature` (or its per-namespace list) names public keys, a deploy whose
 * package is unsigned, altered or signed by another key is refused with 403 naming the reason.
 */

import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { HearthError } from '../domain/errors.js';

export const SIGNATURE_FILE = '.hearth-signature';

export interface PackageSignature {
  readonly format: 'hearth-signature/v1';
  readonly algorithm: 'ed25519';
  /** The signer's public key: base64 of its 32 raw bytes. */
  readonly publicKey: string;
  /** SM3 hex of the file listing. */
  readonly digest: string;
  /** base64 Ed25519 signature of `hearth-package\n<digest>`. */
  readonly signature: string;
  readonly files: number;
}

/** A key's short name: the first 16 hex digits of SM3 of its raw bytes. */
export function keyIdOf(publicKey: string): string {
  return createHash('sm3').update(Buffer.from(publicKey, 'base64')).digest('hex').slice(0, 16);
}

/** A new Ed25519 key pair: the private key as PKCS#8 PEM, the public key as base64 of its raw bytes. */
export function generateSigningKey(): { privateKeyPem: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKey: rawPublicKey(publicKey),
  };
}

function rawPublicKey(key: KeyObject): string {
  // The SPKI DER of an Ed25519 key is a fixed 12-byte prefix and the 32 raw bytes.
  return (key.export({ type: 'spki', format: 'der' }) as Buffer).subarray(12).toString('base64');
}

function publicKeyObject(raw: string): KeyObject {
  const prefix = Buffer.from('302a300506032b6570032100', 'hex');
  return createPublicKey({
    key: Buffer.concat([prefix, Buffer.from(raw, 'base64')]),
    format: 'der',
    type: 'spki',
  });
}

/** Every file and link under `root`, as sorted posix paths, the signature file left out. */
export async function packageFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, prefix: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
      if (entry.isDirectory()) await walk(join(dir, entry.name), path);
      else if (path !== SIGNATURE_FILE) found.push(path);
    }
  };
  await walk(root, '');
  return found.sort();
}

/** The package digest over `files` (relative posix paths) under `root`. */
export async function packageDigest(root: string, files: readonly string[]): Promise<string> {
  const listing = createHash('sm3');
  for (const path of [...files].sort()) {
    if (path === SIGNATURE_FILE) continue;
    const full = join(root, path);
    const info = await lstat(full);
    const content = info.isSymbolicLink()
      ? Buffer.from(`link:${await readlink(full)}`)
      : await readFile(full);
    listing.update(`${path}\0${createHash('sha256').update(content).digest('hex')}\n`);
  }
  return listing.digest('hex');
}

export async function signPackage(
  root: string,
  files: readonly string[],
  privateKeyPem: string,
): Promise<PackageSignature> {
  const privateKey = createPrivateKey(privateKeyPem);
  const digest = await packageDigest(root, files);
  return {
    format: 'hearth-signature/v1',
    algorithm: 'ed25519',
    publicKey: rawPublicKey(createPublicKey(privateKey)),
    digest,
    signature: sign(null, Buffer.from(`hearth-package\n${digest}`), privateKey).toString('base64'),
    files: files.filter((path) => path !== SIGNATURE_FILE).length,
  };
}

function refused(reason: string, detail: Record<string, string> = {}): HearthError {
  return new HearthError('HEARTH_E_SIGNATURE_INVALID', `package signature: ${reason}`, {
    details: { reason, ...detail },
  });
}

/**
 * Checks an unpacked package against the trusted keys; resolves with the signer's key id, or throws
 * HEARTH_E_SIGNATURE_INVALID (403) saying whether it is unsigned, altered or by an unknown key.
 */
export async function verifyPackage(root: string, trusted: readonly string[]): Promise<string> {
  let text: string;
  try {
    text = await readFile(join(root, SIGNATURE_FILE), 'utf8');
  } catch {
    throw refused(`the package is unsigned (no ${SIGNATURE_FILE}); sign it with: hearth sign DIR --key KEY`);
  }
  let signature: Partial<PackageSignature>;
  try {
    signature = JSON.parse(text) as Partial<PackageSignature>;
  } catch {
    throw refused(`${SIGNATURE_FILE} is not valid JSON`);
  }
  if (typeof signature.publicKey !== 'string' || typeof signature.signature !== 'string')
    throw refused(`${SIGNATURE_FILE} has no publicKey and signature`);
  const keyId = keyIdOf(signature.publicKey);
  if (!trusted.includes(signature.publicKey))
    throw refused(`signed by key ${keyId}, which is not in requireSignature`, { signer: keyId });
  const digest = await packageDigest(root, await packageFiles(root));
  let valid = false;
  try {
    valid = verify(
      null,
      Buffer.from(`hearth-package\n${digest}`),
      publicKeyObject(signature.publicKey),
      Buffer.from(signature.signature, 'base64'),
    );
  } catch {
    valid = false;
  }
  if (!valid)
    throw refused(
      `the package was altered after key ${keyId} signed it (its files do not match the signature)`,
      {
        signer: keyId,
      },
    );
  return keyId;
}
