/**
 * @module `hearth keygen` and `hearth sign DIR` (issue 13): an Ed25519 key pair, and a signature over the
 * exact files `hearth deploy` would upload, written into the folder as `.hearth-signature`.
 */

import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { generateSigningKey, keyIdOf, SIGNATURE_FILE, signPackage } from '../../compliance/signing.js';
import { CliError } from '../errors.js';
import type { CommandContext } from '../options.js';
import { packDirectory } from '../pack.js';

export function register(program: Command, context: CommandContext): void {
  program
    .command('keygen')
    .description('create an Ed25519 key pair for signing packages: PREFIX.key (private, 0600) and PREFIX.pub')
    .option('--out <prefix>', 'where to write the two files', 'hearth-signing')
    .action(async (options: { out: string }) => {
      const keyFile = `${options.out}.key`;
      const pubFile = `${options.out}.pub`;
      if (existsSync(keyFile)) throw new CliError(`${keyFile} exists; choose another --out`);
      const { privateKeyPem, publicKey } = generateSigningKey();
      await writeFile(keyFile, privateKeyPem, { mode: 0o600, flag: 'wx' });
      await writeFile(pubFile, `${publicKey}\n`);
      context.io.stdout.write(
        `wrote ${keyFile} (keep it secret) and ${pubFile}\npublic key ${publicKey} (key id ${keyIdOf(publicKey)})\ntrust it with signing.requireSignature: ["${publicKey}"] in the platform config\n`,
      );
    });

  program
    .command('sign')
    .description(`sign a function folder: writes ${SIGNATURE_FILE}, which travels with the upload`)
    .argument('<dir>', 'the function folder')
    .requiredOption('--key <file>', 'the private key from hearth keygen')
    .action(async (dir: string, options: { key: string }) => {
      const privateKeyPem = await readFile(options.key, 'utf8').catch((error: NodeJS.ErrnoException) => {
        throw new CliError(`--key ${options.key}: cannot read the file (${error.code ?? 'error'})`);
      });
      // Exactly what `hearth deploy DIR` packs (.hearthignore and the default exclusions applied).
      const packed = await packDirectory(dir);
      packed.stream.destroy();
      const files = packed.entries.filter((entry) => !entry.endsWith('/') && entry !== SIGNATURE_FILE);
      let signature: Awaited<ReturnType<typeof signPackage>>;
      try {
        signature = await signPackage(dir, files, privateKeyPem);
      } catch (error) {
        throw new CliError(`--key ${options.key}: not an Ed25519 private key (${(error as Error).message})`);
      }
      await writeFile(`${dir}/${SIGNATURE_FILE}`, `${JSON.stringify(signature, null, 2)}\n`);
      context.io.stdout.write(
        `signed ${signature.files} file(s) in ${dir} with key ${keyIdOf(signature.publicKey)} (${SIGNATURE_FILE})\n`,
      );
    });
}
