/**
 * @module The master key (issue 13): from `$HEARTH_MASTER_KEY`, or a key file (`secrets.keyFile`, by
 * default `<dataDir>/master.key`) created 0600 with 32 random bytes on first start. Rotation writes the
 * new key beside it (`<keyFile>.next`, 0600, fsynced) before re-sealing anything, and renames it over
 * the old one only once every value is re-sealed; a start that finds a `.next` file holds both keys and
 * finishes the rotation, so a crash at any point loses nothing.
 */

import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { HearthError } from '../domain/errors.js';
import { MASTER_KEY_BYTES, type MasterKey, masterKey, parseMasterKey } from './sealing.js';

export interface KeyringOptions {
  readonly keyFile: string;
  /** `$HEARTH_MASTER_KEY`, which wins over the file when set. */
  readonly envKey?: string | undefined;
}

export class Keyring {
  /** The key new values are sealed under (during a rotation, the new one). */
  current: MasterKey;
  /** Every key a stored value may be sealed under, by id. */
  readonly keys = new Map<string, MasterKey>();
  /** Where the key came from, for messages: `$HEARTH_MASTER_KEY` or the file's path. */
  readonly source: string;
  /** Set when the platform created the key file on this start. */
  readonly created: boolean;
  private readonly keyFile: string | undefined;
  private rotating = false;

  constructor(options: KeyringOptions) {
    if (options.envKey !== undefined && options.envKey !== '') {
      this.keyFile = undefined;
      this.source = '$HEARTH_MASTER_KEY';
      this.created = false;
      this.current = masterKey(parseMasterKey(options.envKey, '$HEARTH_MASTER_KEY'));
      this.keys.set(this.current.id, this.current);
      return;
    }
    this.keyFile = options.keyFile;
    this.source = options.keyFile;
    this.created = !existsSync(options.keyFile);
    if (this.created) writeKeyFile(options.keyFile, randomBytes(MASTER_KEY_BYTES), 'wx');
    const mode = statSync(options.keyFile).mode & 0o077;
    if (mode !== 0)
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `${options.keyFile}: the master key file is readable by group or others (mode ${(statSync(options.keyFile).mode & 0o777).toString(8)}); chmod 600 it`,
      );
    this.current = masterKey(parseMasterKey(readFileSync(options.keyFile, 'utf8'), options.keyFile));
    this.keys.set(this.current.id, this.current);
    const next = `${options.keyFile}.next`;
    if (existsSync(next)) {
      // A rotation was under way when the platform stopped: both keys open values until it is finished.
      this.current = masterKey(parseMasterKey(readFileSync(next, 'utf8'), next));
      this.keys.set(this.current.id, this.current);
      this.rotating = true;
    }
  }

  /** True while values may still be sealed under an older key (a rotation to finish). */
  get rotationPending(): boolean {
    return this.rotating;
  }

  /** Starts a rotation: the new key is on disk before any value is sealed under it. */
  beginRotation(): MasterKey {
    if (this.keyFile === undefined)
      throw new HearthError(
        'HEARTH_E_UNSUPPORTED',
        'the master key comes from $HEARTH_MASTER_KEY, which the platform cannot replace; use secrets.keyFile to rotate with hearth secret rotate-key',
      );
    if (this.rotating) return this.current;
    const raw = randomBytes(MASTER_KEY_BYTES);
    writeKeyFile(`${this.keyFile}.next`, raw, 'w');
    this.current = masterKey(raw);
    this.keys.set(this.current.id, this.current);
    this.rotating = true;
    return this.current;
  }

  /** Ends a rotation once nothing is sealed under an older key: the new key replaces the old file. */
  finishRotation(): void {
    if (this.keyFile === undefined || !this.rotating) return;
    renameSync(`${this.keyFile}.next`, this.keyFile);
    fsyncDir(dirname(this.keyFile));
    for (const id of [...this.keys.keys()]) if (id !== this.current.id) this.keys.delete(id);
    this.rotating = false;
  }
}

function writeKeyFile(path: string, raw: Buffer, flags: 'w' | 'wx'): void {
  const fd = openSync(path, flags, 0o600);
  try {
    writeSync(fd, `${raw.toString('hex')}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  fsyncDir(dirname(path));
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
