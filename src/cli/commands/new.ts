/** @module `hearth new NAME`: scaffold a function folder from `templates/<runtime>/`; no server needed. */

import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { isAbsolute, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Command, Option } from 'commander';
import { CliError } from '../errors.js';
import { type CommandContext, isValidLabel } from '../options.js';

export const TEMPLATE_RUNTIMES = ['node20', 'python3', 'wasm'] as const;
type TemplateRuntime = (typeof TEMPLATE_RUNTIMES)[number];

interface NewOptions {
  readonly runtime: TemplateRuntime;
  readonly dir?: string;
}

/** `templates/` at the package root: three levels up from both src/cli/commands and dist/cli/commands. */
export const TEMPLATES_DIR = fileURLToPath(new URL('../../../templates/', import.meta.url));

export function register(program: Command, context: CommandContext): void {
  program
    .command('new')
    .description('create a function folder from a template')
    .argument('<name>', 'function name (a lower-case DNS label)')
    .addOption(new Option('-r, --runtime <runtime>', 'runtime').choices(TEMPLATE_RUNTIMES).default('node20'))
    .option('--dir <path>', 'folder to create (default: ./NAME)')
    .action(async (name: string, options: NewOptions) => {
      await scaffold(name, options, context);
    });
}

async function scaffold(name: string, options: NewOptions, { io }: CommandContext): Promise<void> {
  if (!isValidLabel(name)) {
    throw new CliError(
      `"${name}" is not a valid function name: expected a lower-case DNS label (a-z, 0-9, "-"; at most 63 characters), e.g. "hello-world"`,
    );
  }
  const target = options.dir ?? name;
  await assertEmptyOrMissing(target);
  const written = await copyTemplate(join(TEMPLATES_DIR, options.runtime), target, { name });
  const shown = isAbsolute(target) || target.startsWith('.') ? target : `./${target}`;
  const deployPath = relative(process.cwd(), target) === '' ? '.' : shown;
  io.stdout.write(
    [
      `Created function ${name} (${options.runtime}) in ${shown}: ${written.join(', ')}`,
      '',
      'Next steps:',
      ...(options.runtime === 'wasm'
        ? [
            `  cd ${shown} && cargo build --release --target wasm32-wasip1 && cp target/wasm32-wasip1/release/main.wasm . && cd -`,
          ]
        : []),
      '  hearth up                  # in another terminal, unless Hearth is already running',
      `  hearth deploy ${deployPath}`,
      `  hearth invoke ${name} --data '{"name": "Hearth"}'`,
      '',
    ].join('\n'),
  );
}

async function assertEmptyOrMissing(target: string): Promise<void> {
  const info = await stat(target).catch(() => undefined);
  if (info === undefined) return;
  if (!info.isDirectory()) throw new CliError(`${target} already exists and is not a folder`);
  if ((await readdir(target)).length > 0) {
    throw new CliError(`${target} already exists and is not empty; choose another name or --dir`);
  }
}

/** Copies the template tree, replacing `{{name}}` in file contents. Returns the files written. */
async function copyTemplate(
  from: string,
  to: string,
  values: Readonly<Record<string, string>>,
): Promise<string[]> {
  const entries = await readdir(from, { withFileTypes: true, recursive: true }).catch(() => {
    throw new CliError(`the template folder ${from} is missing from this Hearth installation`);
  });
  const written: string[] = [];
  await mkdir(to, { recursive: true });
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (!entry.isFile()) continue;
    const source = join(entry.parentPath, entry.name);
    const path = relative(from, source);
    const text = await readFile(source, 'utf8');
    await mkdir(join(to, path, '..'), { recursive: true });
    await writeFile(join(to, path), substitute(text, values));
    written.push(path);
  }
  return written;
}

function substitute(text: string, values: Readonly<Record<string, string>>): string {
  return text.replace(/\{\{\s*([a-z]+)\s*\}\}/g, (match, key: string) => values[key] ?? match);
}
