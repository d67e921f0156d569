/**
 * @module `spec.image: dir:/PATH`, the local image form of this branch (issue 17's run half): a folder on
 * this node holding `rootfs/` (unpacked, with /proc, /dev and /tmp mount points) and `config.json`, the
 * image config as `ImageConfig` names it. The image store (registry pulls, `hearth deploy --image`) resolves
 * every other reference into the same `ResolvedImage`; this form stays for tests and hand-made rootfs.
 */

import { existsSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { HearthError } from '../../domain/errors.js';
import type { ImageConfig, ResolvedImage } from '../../domain/image.js';

export const LOCAL_IMAGE_PREFIX = 'dir:';

/** The image at a `dir:` reference; `HEARTH_E_VALIDATION` naming spec.image when it is not one. */
export function resolveLocalImage(reference: string): ResolvedImage {
  const dir = reference.slice(LOCAL_IMAGE_PREFIX.length);
  const refuse = (expected: string): never => {
    throw new HearthError('HEARTH_E_VALIDATION', `spec.image: got "${reference}", expected ${expected}`, {
      details: { field: 'spec.image', value: reference, expected },
    });
  };
  if (!reference.startsWith(LOCAL_IMAGE_PREFIX) || !isAbsolute(dir))
    refuse('dir:/ABSOLUTE/PATH (a folder with rootfs/ and config.json on this node)');
  const rootfs = join(dir, 'rootfs');
  if (!existsSync(rootfs) || !statSync(rootfs).isDirectory()) refuse(`a folder ${rootfs}`);
  let raw: Partial<Record<keyof ImageConfig, unknown>> = {};
  try {
    raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as typeof raw;
  } catch (error) {
    refuse(`a readable image config at ${join(dir, 'config.json')} (${(error as Error).message})`);
  }
  const strings = (value: unknown): string[] => (Array.isArray(value) ? value.map(String) : []);
  return {
    reference,
    manifestDigest: '',
    rootfs,
    config: {
      entrypoint: strings(raw.entrypoint),
      cmd: strings(raw.cmd),
      env: strings(raw.env),
      workingDir: typeof raw.workingDir === 'string' ? raw.workingDir : '',
      user: typeof raw.user === 'string' ? raw.user : '',
      exposedPorts: strings(raw.exposedPorts),
    },
    sizeBytes: 0,
  };
}
