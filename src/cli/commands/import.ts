/**
 * @module `hearth import FILE|DIR`: turns a Serverless Framework, AWS SAM, OpenFaaS or Netlify project into
 * Hearth resources — a `hearth.yaml` per function (its `spec.source` pointing at the project's code) and
 * an `all.yaml` with every function and the EventGateway of its HTTP routes for `hearth apply -f` —
 * printing one line for each thing it could not map. No server needed.
 */

import { mkdir, stat, writeFile } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { CliError } from '../errors.js';
import {
  FORMAT_LABELS,
  type ImportPlan,
  planImport,
  readProject,
  sourceFrom,
  withSource,
} from '../import/index.js';
import {
  addNamespaceOption,
  addOutputOption,
  type CommandContext,
  type NamespaceOptions,
  type OutputOptions,
} from '../options.js';
import { renderTable, writeJson } from '../output.js';
import { MANIFEST_FILE } from '../pack.js';

interface ImportOptions extends NamespaceOptions, OutputOptions {
  readonly out?: string;
  readonly dryRun: boolean;
  readonly force: boolean;
}

/** The file holding every imported resource, beside the per-function folders. */
export const ALL_FILE = 'all.yaml';

export function register(program: Command, context: CommandContext): void {
  const command = program
    .command('import')
    .description(
      'write hearth.yaml files from a serverless.yml, an AWS SAM template.yaml, an OpenFaaS stack.yml or a Netlify functions folder',
    )
    .argument('<path>', 'the project file, or its folder')
    .option('--out <dir>', 'where to write (default: a "hearth" folder beside the project file)')
    .option('--dry-run', 'print the resources instead of writing them', false)
    .option('--force', 'overwrite files written by an earlier import', false);
  addNamespaceOption(command, 'namespace for every imported resource (default: none, i.e. "default")');
  addOutputOption(command);
  command.action(async (path: string, options: ImportOptions) => {
    await importProject(path, options, context);
  });
}

interface WrittenFile {
  readonly path: string;
  readonly text: string;
}

async function importProject(path: string, options: ImportOptions, { io }: CommandContext): Promise<void> {
  const project = readProject(path);
  const plan = planImport(project, options.namespace);
  const outDir = resolve(options.out ?? join(project.projectDir, 'hearth'));
  const files = renderFiles(plan, outDir);
  if (!options.dryRun) {
    if (!options.force)
      for (const file of files)
        if ((await stat(file.path).catch(() => undefined)) !== undefined)
          throw new CliError(
            `${shown(file.path)} already exists; pass --force to overwrite it, or choose --out`,
          );
    for (const file of files) {
      await mkdir(join(file.path, '..'), { recursive: true });
      await writeFile(file.path, file.text);
    }
  }
  if (options.output === 'json') {
    writeJson(io.stdout, {
      format: project.format,
      file: project.file,
      out: outDir,
      dryRun: options.dryRun,
      written: options.dryRun ? [] : files.map((file) => file.path),
      functions: plan.functions.map((fn) => ({
        name: fn.name,
        origin: fn.origin,
        file: join(outDir, fn.name, MANIFEST_FILE),
        manifest: withSource(fn.manifest, sourceFrom(join(outDir, fn.name), fn.source)),
      })),
      gateway: plan.gateway ?? null,
      unmapped: plan.unmapped,
    });
    return;
  }
  for (const item of plan.unmapped) io.stderr.write(`not mapped: ${item.where}: ${item.what}\n`);
  if (options.dryRun) {
    io.stdout.write((files.find((file) => file.path.endsWith(ALL_FILE)) as WrittenFile).text);
    return;
  }
  const routes = plan.gateway?.spec.functions;
  io.stdout.write(
    `Read ${shown(project.file)} (${FORMAT_LABELS[project.format]}): ${plan.functions.length} function${plan.functions.length === 1 ? '' : 's'}, ${routes?.length ?? 0} route${routes?.length === 1 ? '' : 's'}, ${plan.unmapped.length} not mapped\n`,
  );
  io.stdout.write(
    renderTable(
      ['NAME', 'RUNTIME', 'HANDLER', 'EVENTS', 'ROUTES', 'TRIGGERS'],
      plan.functions.map((fn) => {
        const spec = fn.manifest.spec as {
          runtime: string;
          handler: string;
          eventFormat?: string;
          triggers?: unknown[];
        };
        const own = routes?.filter((route) => route.name === fn.name) ?? [];
        return [
          fn.name,
          spec.runtime,
          spec.handler,
          spec.eventFormat ?? 'auto',
          own.map((route) => `${route.match.method ?? 'ANY'} ${route.match.path}`).join(', ') || '-',
          String(spec.triggers?.length ?? 0),
        ];
      }),
    ),
  );
  io.stdout.write(`Wrote ${files.map((file) => shown(file.path)).join(', ')}\n`);
  io.stdout.write(
    `Next: hearth apply -f ${shown(join(outDir, ALL_FILE))}   (or hearth deploy ${shown(join(outDir, plan.functions[0]?.name ?? ''))} for one function)\n`,
  );
}

/** The files an import writes: one hearth.yaml per function, and all.yaml with everything. */
function renderFiles(plan: ImportPlan, outDir: string): WrittenFile[] {
  const origin = `# Written by hearth import from ${shown(plan.project.file)} (${FORMAT_LABELS[plan.project.format]}).`;
  const files: WrittenFile[] = plan.functions.map((fn) => {
    const dir = join(outDir, fn.name);
    return {
      path: join(dir, MANIFEST_FILE),
      text: `${origin}\n# spec.source is the code folder: \`hearth deploy ${shown(dir)}\` uploads it.\n${stringify(withSource(fn.manifest, sourceFrom(dir, fn.source)))}`,
    };
  });
  const documents = [
    ...plan.functions.map((fn) => withSource(fn.manifest, sourceFrom(outDir, fn.source))),
    ...(plan.gateway === undefined ? [] : [plan.gateway]),
  ];
  files.push({
    path: join(outDir, ALL_FILE),
    text: `${origin}\n# Every function and the EventGateway of its HTTP routes: hearth apply -f ${shown(join(outDir, ALL_FILE))}\n${documents.map((doc) => stringify(doc)).join('---\n')}`,
  });
  return files;
}

/** A path as the user would type it from here. */
function shown(path: string): string {
  const fromHere = relative(process.cwd(), path);
  return fromHere === '' ? '.' : fromHere.startsWith('..') || isAbsolute(fromHere) ? path : fromHere;
}
