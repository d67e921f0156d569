/**
 * @module End-to-end: functions whose dependencies are large binary packages (numpy + pandas from PyPI,
 * sharp's prebuilt libvips from npm) build in the sandbox, answer, and say how much disk their build used;
 * a build past its disk cap stops with one line naming the cap.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeployEvent } from '../../src/control/api/types.js';
import {
  deployStreaming,
  errorLines,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  runCli,
  STACK_FRAME,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

const PANDAS_MAIN = `import numpy as np
import pandas as pd


def handler(event, context):
    frame = pd.DataFrame({"a": [1, 2, 3], "b": np.arange(3) * 10})
    return {"sum": int(frame.to_numpy().sum()), "columns": list(frame.columns), "numpy": np.__version__}
`;

const SHARP_INDEX = `import sharp from 'sharp';

export default async function handler() {
  const png = await sharp({ create: { width: 4, height: 3, channels: 3, background: '#ff0000' } })
    .png()
    .toBuffer();
  const meta = await sharp(png).metadata();
  return { format: meta.format, width: meta.width, height: meta.height };
}
`;

const SQLITE_INDEX = `import Database from 'better-sqlite3';

export default async function handler() {
  const db = new Database(':memory:');
  db.exec('create table t (x integer)');
  db.prepare('insert into t values (?)').run(41);
  return db.prepare('select x + 1 as y from t').get();
}
`;

let hearth: Hearth;
const folders: TempFolder[] = [];

async function folder(files: Record<string, string>): Promise<string> {
  const made = await makeFolder(files);
  folders.push(made);
  return made.dir;
}

/** The last event, with the build's output when it is not the result (what went wrong, in the failure). */
function outcomeOf(events: readonly DeployEvent[]): { event: string | undefined; why: string } {
  const lines = events.flatMap((event) => (event.event === 'output' ? [event.line] : []));
  return { event: events.at(-1)?.event, why: `${JSON.stringify(events.at(-1))}\n${lines.join('\n')}` };
}

function progressOf(events: readonly DeployEvent[]): string[] {
  return events.flatMap((event) => (event.event === 'progress' ? [event.message] : []));
}

beforeAll(async () => {
  hearth = await startHearth();
});

afterAll(async () => {
  await hearth?.stop();
  for (const made of folders) await made.cleanup();
});

describe('heavy dependencies (sandboxed builds)', () => {
  it('a Python function needing numpy + pandas deploys, answers, and its build reports its disk use', async () => {
    const dir = await folder({
      'hearth.yaml': manifest('frames', '{ runtime: python3, limits: { memory: 512Mi, timeout: 30s } }'),
      'main.py': PANDAS_MAIN,
      'requirements.txt': 'numpy==2.2.6\npandas==2.2.3\n',
    });
    const deployed = await deployStreaming(hearth.url, dir, { name: 'frames' });
    const outcome = outcomeOf(deployed.events);
    expect(outcome.event, outcome.why).toBe('result');
    const messages = progressOf(deployed.events);
    // The layer is far larger than a function's 64 MiB /tmp, and the build says what it took.
    const built = messages.find((message) => /dependency layer python3-\S+ built/.test(message));
    expect(built, messages.join('\n')).toMatch(/build disk \d+(\.\d+)? MiB of 4\.0 GiB/);
    expect(built).toMatch(/layer (\d+(\.\d+)?) MiB/);
    expect(Number(/layer (\d+(?:\.\d+)?) MiB/.exec(built ?? '')?.[1])).toBeGreaterThan(64);
    // While it runs, the build says how much disk it takes against its cap.
    expect(deployed.events).toContainEqual(
      expect.objectContaining({ event: 'disk', phase: 'dependencies', maxBytes: 4 * 1024 ** 3 }),
    );

    const response = await invoke(hearth.url, 'frames');
    expect(response.status, response.text).toBe(200);
    expect(response.json()).toEqual({ sum: 36, columns: ['a', 'b'], numpy: '2.2.6' });
  });

  it('a Node function needing sharp (prebuilt libvips from npm, no install scripts) deploys and answers', async () => {
    const dir = await folder({
      'hearth.yaml': manifest('thumbs', '{ runtime: node20, limits: { memory: 512Mi, timeout: 30s } }'),
      'index.mjs': SHARP_INDEX,
      'package.json': JSON.stringify({ name: 'thumbs', private: true, dependencies: { sharp: '0.33.5' } }),
    });
    const deployed = await deployStreaming(hearth.url, dir, { name: 'thumbs' });
    const outcome = outcomeOf(deployed.events);
    expect(outcome.event, outcome.why).toBe('result');
    expect(progressOf(deployed.events).some((message) => /build disk \d/.test(message))).toBe(true);

    const response = await invoke(hearth.url, 'thumbs');
    expect(response.status, response.text).toBe(200);
    expect(response.json()).toEqual({ format: 'png', width: 4, height: 3 });
  });

  it('a Node function needing better-sqlite3 (install script, compiled here: its prebuilt download is unreachable) deploys and answers', async () => {
    const dir = await folder({
      'hearth.yaml': manifest(
        'rows',
        '{ runtime: node20, build: { scripts: true }, limits: { memory: 256Mi } }',
      ),
      'index.mjs': SQLITE_INDEX,
      'package.json': JSON.stringify({
        name: 'rows',
        private: true,
        dependencies: { 'better-sqlite3': '11.10.0' },
      }),
    });
    const deployed = await deployStreaming(hearth.url, dir, { name: 'rows' });
    const outcome = outcomeOf(deployed.events);
    expect(outcome.event, outcome.why).toBe('result');

    const response = await invoke(hearth.url, 'rows');
    expect(response.status, response.text).toBe(200);
    expect(response.json()).toEqual({ y: 42 });
  }, 600_000);

  it('a build that fails says why in one line naming the package (pip and npm)', async () => {
    const python = await folder({
      'hearth.yaml': manifest('no-such-py', '{ runtime: python3 }'),
      'main.py': 'def handler(event, context):\n    return "never"\n',
      'requirements.txt': 'hearth-no-such-package-xyz==1.0\n',
    });
    const node = await folder({
      'hearth.yaml': manifest('no-such-node', '{ runtime: node20 }'),
      'index.mjs': 'export default () => "never";\n',
      'package.json': JSON.stringify({
        name: 'x',
        private: true,
        dependencies: { 'hearth-no-such-package-xyz': '1.0.0' },
      }),
    });
    for (const dir of [python, node]) {
      const result = await runCli(['deploy', dir], { url: hearth.url });
      expect(result.code).not.toBe(0);
      const lines = errorLines(result.stderr);
      expect(lines, result.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(
        /^error: HEARTH_E_BUILD_FAILED: installing dependencies from \S+ failed \(exit 1\)/,
      );
      expect(lines[0]).toMatch(/: .*hearth-no-such-package-xyz/);
      expect(lines[0]).not.toMatch(/complete log/);
    }
  });
});

describe('the build disk cap', () => {
  let capped: Hearth;

  beforeAll(async () => {
    const config = await folder({ 'hearth.config.yaml': 'build: { maxDisk: 40Mi }\n' });
    capped = await startHearth({ args: ['--config', `${config}/hearth.config.yaml`] });
  });

  afterAll(async () => {
    await capped?.stop();
  });

  it('a build past build.maxDisk stops with one line naming the package step and the cap', async () => {
    const dir = await folder({
      'hearth.yaml': manifest('too-big', '{ runtime: python3 }'),
      'main.py': 'def handler(event, context):\n    return "never"\n',
      'requirements.txt': 'numpy==2.2.6\npandas==2.2.3\n',
    });
    const result = await runCli(['deploy', dir], { url: capped.url });
    expect(result.code).not.toBe(0);
    expect(result.stderr).not.toMatch(STACK_FRAME);
    const lines = errorLines(result.stderr);
    expect(lines, result.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: HEARTH_E_BUILD_FAILED: /);
    expect(lines[0]).toMatch(/build\.maxDisk/);
    expect(lines[0]).toMatch(/40\.0 MiB/);
    expect(lines[0]).toMatch(/requirements\.txt/);
  });
});
