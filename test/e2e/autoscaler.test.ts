/**
 * @module The autoscaler on the real platform: a step from 0 to 200 concurrent clients with no failed
 * request, capacity that follows, scale down and to zero after the idle window; min and max; scaling
 * config changed live. The windows are shortened through the platform config (tick 100 ms, stable 2 s).
 */

import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionDetail } from '../../src/control/api/types.js';
import {
  BIN,
  copyFixture,
  deployFolder,
  eventually,
  getFunction,
  type Hearth,
  invoke,
  manifest,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { closedLoop, configFile, functionStats, sampler } from '../support/load.js';

const TICK_MS = 100;
const STABLE_WINDOW_MS = 2_000;

let hearth: Hearth;
let config: Awaited<ReturnType<typeof configFile>>;
const folders: TempFolder[] = [];

beforeAll(async () => {
  config = await configFile({
    autoscaler: { tick: `${TICK_MS}ms`, stableWindow: `${STABLE_WINDOW_MS}ms`, panicWindow: '400ms' },
  });
  hearth = await startHearth({ args: ['--config', config.path] });
});

afterAll(async () => {
  await hearth?.stop();
  await config?.cleanup();
  for (const folder of folders) await folder.cleanup();
});

/** node-slow (sleeps `?ms=`) deployed as `name` with the given spec. */
async function deploySleeper(name: string, spec: string): Promise<void> {
  const folder = await copyFixture('node-slow', { 'hearth.yaml': manifest(name, spec) });
  folders.push(folder);
  const { status, body } = await deployFolder(hearth.url, folder.dir, { name });
  expect(status, JSON.stringify(body)).toBe(200);
}

function decisions(detail: FunctionDetail | undefined): string[] {
  return (detail?.autoscaling?.decisions ?? []).map((d) => d.action);
}

describe('step load 0 → 200 concurrent', () => {
  it('serves every request, follows with capacity, then scales down and to zero after the idle window', async () => {
    const idleTimeoutMs = 3_000;
    await deploySleeper(
      'step',
      `{ runtime: node20, limits: { timeout: 20s }, scaling: { targetConcurrency: 10, max: 40, idleTimeout: ${idleTimeoutMs}ms } }`,
    );
    // Start from zero: the deploy's verified instance goes first.
    await eventually('step to scale to zero after the deploy', async () =>
      (await functionStats(hearth.url, 'step'))?.instances.ready === 0 ? true : undefined,
    );

    const watch = sampler(async () => (await functionStats(hearth.url, 'step')) ?? null, 100);
    const load = closedLoop(`${hearth.url}/function/step?ms=50`, 200);
    // Capacity follows: enough ready instances for everything in flight and waiting, and many of them. How
    // fast is the bench's to measure (a loaded machine slows every start); here it has to happen at all.
    await eventually(
      'ready instances to cover the load',
      async () => {
        const fn = await functionStats(hearth.url, 'step');
        if (fn === undefined) return undefined;
        const demand = fn.inFlight + fn.queued;
        return fn.instances.ready >= 10 && fn.instances.ready * 10 >= demand ? true : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    // Hold the load a while past the panic: it must keep serving without failures.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const result = await load.stop();
    const stoppedAt = Date.now();
    expect(result.failed, `failures: ${JSON.stringify(result.failures)} ${result.samples.join(' | ')}`).toBe(
      0,
    );
    expect(result.requests).toBeGreaterThan(400);
    const timeline = await watch.stop();
    const peak = Math.max(...timeline.map((s) => s.value?.instances.ready ?? 0));
    expect(peak).toBeGreaterThanOrEqual(10);
    expect(peak).toBeLessThanOrEqual(40);

    // Down to one instance once the stable window has passed, then to zero after the idle window.
    await eventually(
      'step to scale down to at most one instance',
      async () => ((await functionStats(hearth.url, 'step'))?.instances.ready ?? 99) <= 1 || undefined,
      { timeoutMs: STABLE_WINDOW_MS * 4 + 5_000 },
    );
    await eventually(
      'step to scale to zero',
      async () => ((await functionStats(hearth.url, 'step'))?.instances.ready ?? 99) === 0 || undefined,
      { timeoutMs: idleTimeoutMs + 10_000 },
    );
    const detail = await getFunction(hearth.url, 'step');
    const actions = decisions(detail);
    expect(actions).toContain('panic');
    expect(actions).toContain('scale-up');
    expect(actions).toContain('scale-down');
    expect(actions.at(-1)).toBe('scale-to-zero');
    // Not before the idle window: the last instance outlived the load by idleTimeout.
    const zeroAt = Date.parse(detail?.autoscaling?.decisions.at(-1)?.at ?? '');
    expect(zeroAt - stoppedAt).toBeGreaterThanOrEqual(idleTimeoutMs - 2 * TICK_MS);
    expect(detail?.autoscaling?.coldStarts.requests).toBeGreaterThan(0);

    // And from zero again: the next request is held while an instance starts, and answered.
    const again = await invoke(hearth.url, 'step', { path: '?ms=1' });
    expect(again.status).toBe(200);
    expect(again.headers.get('x-hearth-cold-start')).toBe('1');

    // The stem-cell pool grew for the burst of cold starts, and the platform log says why.
    const resized = hearth.log.find((line) =>
      String(line.msg).startsWith('stem cells node20/sandbox/none: 2 →'),
    );
    expect(resized?.reason).toMatch(/instance starts within/);
    expect(hearth.log.some((line) => line.msg === 'scaling panic' && line.function === 'default/step')).toBe(
      true,
    );
  });

  it('shows the autoscaler in `hearth describe`', async () => {
    const { code, stdout } = await runCli(['describe', 'step'], { url: hearth.url });
    expect(code).toBe(0);
    expect(stdout).toMatch(
      /Autoscaling: hybrid, stable mode; \d+ ready, \d+ starting, desired \d+ \(min 0, max 40\)/,
    );
    expect(stdout).toMatch(/Warm pool: +\d+ idle, target \d+ \(warmPoolRatio 0\.1\)/);
    expect(stdout).toMatch(/Cold starts: +\d+\.\d% \(\d+ of \d+ requests in the last 5m\)/);
    // The last instances go together (the extras may be kept as long as the last one, see the hybrid policy).
    expect(stdout).toMatch(/scale-to-zero +\d+→0/);
    const json = await runCli(['describe', 'step', '-o', 'json'], { url: hearth.url });
    const detail = JSON.parse(json.stdout) as FunctionDetail;
    expect(detail.autoscaling?.policy).toBe('hybrid');
    expect(detail.autoscaling?.keepAlive.keepUntil).toBe('3s');
    // Every decision is counted in the metrics too.
    const metrics = await (await fetch(`${hearth.url}/metrics`)).text();
    for (const action of ['scale-up', 'scale-to-zero', 'panic'])
      expect(metrics).toMatch(
        new RegExp(
          `hearth_scaling_decisions_total\\{[^}]*function="step"[^}]*action="${action}"[^}]*\\} [1-9]`,
        ),
      );
  });
});

describe('bounds and live configuration', () => {
  it('keeps min instances without traffic and never exceeds max under load', async () => {
    await deploySleeper(
      'bounded',
      '{ runtime: node20, scaling: { min: 2, max: 3, targetConcurrency: 1, idleTimeout: 500ms } }',
    );
    await eventually('bounded to reach its min of 2', async () =>
      (await functionStats(hearth.url, 'bounded'))?.instances.ready === 2 ? true : undefined,
    );
    const watch = sampler(async () => (await functionStats(hearth.url, 'bounded')) ?? null, 50);
    const load = closedLoop(`${hearth.url}/function/bounded?ms=100`, 8);
    await eventually('bounded to run 3 instances', async () =>
      (await functionStats(hearth.url, 'bounded'))?.instances.ready === 3 ? true : undefined,
    );
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const result = await load.stop();
    expect(result.failed, result.samples.join(' | ')).toBe(0);
    const timeline = await watch.stop();
    expect(
      Math.max(...timeline.map((s) => (s.value?.instances.ready ?? 0) + (s.value?.instances.starting ?? 0))),
    ).toBe(3);
    // Idle well past idleTimeout and the stable window: still the min.
    await eventually(
      'bounded to settle back to its min',
      async () => ((await functionStats(hearth.url, 'bounded'))?.instances.ready === 2 ? true : undefined),
      { timeoutMs: 15_000 },
    );
    await new Promise((resolve) => setTimeout(resolve, STABLE_WINDOW_MS));
    expect((await functionStats(hearth.url, 'bounded'))?.instances.ready).toBe(2);
  });

  it('applies a scaling change live: a higher max under load, then a min, then back to zero', async () => {
    await deploySleeper(
      'live',
      '{ runtime: node20, scaling: { max: 2, targetConcurrency: 1, idleTimeout: 1s } }',
    );
    const load = closedLoop(`${hearth.url}/function/live?ms=100`, 6);
    await eventually('live to run 2 instances', async () =>
      (await functionStats(hearth.url, 'live'))?.instances.ready === 2 ? true : undefined,
    );
    const apply = async (scaling: string): Promise<void> => {
      const folder = await copyFixture('node-slow', {});
      folders.push(folder);
      const file = join(folder.dir, 'live.yaml');
      await writeFile(file, manifest('live', `{ runtime: node20, scaling: ${scaling} }`));
      const { code, stderr } = await runCli(['apply', '-f', file], { url: hearth.url });
      expect(code, stderr).toBe(0);
    };
    await apply('{ min: 1, max: 5, targetConcurrency: 1, idleTimeout: 1s }');
    const grown = await eventually(
      'live to grow past its old max under the same load',
      async () => {
        const fn = await functionStats(hearth.url, 'live');
        return fn !== undefined && fn.version === 2 && fn.instances.ready >= 3 ? fn : undefined;
      },
      { timeoutMs: 10_000 },
    );
    expect(grown.instances.ready).toBeLessThanOrEqual(5);
    const result = await load.stop();
    expect(result.failed, result.samples.join(' | ')).toBe(0);
    // The new min holds once the load is gone...
    await eventually(
      'live to settle at its new min of 1',
      async () => ((await functionStats(hearth.url, 'live'))?.instances.ready === 1 ? true : undefined),
      { timeoutMs: 15_000 },
    );
    // ...and without it, the function scales to zero.
    await apply('{ min: 0, max: 5, targetConcurrency: 1, idleTimeout: 1s }');
    await eventually(
      'live to scale to zero with min 0',
      async () => {
        const fn = await functionStats(hearth.url, 'live');
        return fn?.version === 3 && fn.instances.ready === 0 && fn.instances.starting === 0
          ? true
          : undefined;
      },
      { timeoutMs: 15_000 },
    );
    const detail = await getFunction(hearth.url, 'live');
    expect(detail?.spec.scaling.max).toBe(5);
  });
});

describe('scale to zero while an instance is starting', () => {
  it('stops the instance that finishes starting after the release, so the next request is a cold start', async () => {
    // Without stem cells a start takes long enough (a process boot) to release the function in the middle of it.
    const slowStarts = await configFile({
      stemCells: { node20: 0, python3: 0 },
      autoscaler: { tick: '100ms' },
    });
    const platform = await startHearth({ args: ['--config', slowStarts.path] });
    try {
      const folder = await copyFixture('node-slow', {
        'hearth.yaml': manifest('parked', '{ runtime: node20 }'),
      });
      folders.push(folder);
      // Without verification the deploy leaves the first instance to the autoscaler's pre-warm.
      const deployed = await deployFolder(platform.url, folder.dir, {
        name: 'parked',
        query: '?verify=false',
      });
      expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
      await eventually(
        'the pre-warm to begin',
        async () => ((await functionStats(platform.url, 'parked'))?.instances.starting ?? 0) > 0 || undefined,
        { intervalMs: 5 },
      );
      const released = await fetch(`${platform.url}/api/v1/namespaces/default/functions/parked/instances`, {
        method: 'DELETE',
      });
      expect(released.status).toBe(200);
      await eventually(
        'the start to finish',
        async () =>
          ((await functionStats(platform.url, 'parked'))?.instances.starting ?? 1) === 0 || undefined,
      );
      await new Promise((resolve) => setTimeout(resolve, 5 * TICK_MS));
      expect((await functionStats(platform.url, 'parked'))?.instances.ready).toBe(0);
      const first = await invoke(platform.url, 'parked', { path: '?ms=1' });
      expect(first.status).toBe(200);
      expect(first.headers.get('x-hearth-cold-start')).toBe('1');
    } finally {
      await platform.stop();
      await slowStarts.cleanup();
    }
  });
});

describe('hearth top', () => {
  const tmux = (...args: string[]): Promise<string> =>
    promisify(execFile)('tmux', args).then((result) => result.stdout);
  const session = `hearth-top-${process.pid}`;
  const screen = (): Promise<string> => tmux('capture-pane', '-p', '-t', session);

  it('shows every function live in a real terminal, refreshing, and exits cleanly on Ctrl-C', async () => {
    const command = `HEARTH_URL=${hearth.url} NO_COLOR=1 ${process.execPath} ${BIN} top --interval 200ms; echo EXIT=$?; exec cat`;
    await tmux('new-session', '-d', '-s', session, '-x', '150', '-y', '40', command);
    try {
      await eventually('top to draw the node and the functions', async () => {
        const text = await screen();
        return /hearth top — http/.test(text) && /^step +v1 /m.test(text) && /^bounded +v1 +2\/2 /m.test(text)
          ? true
          : undefined;
      });
      // Traffic shows up on the next refreshes: requests per second for the function being called.
      const load = closedLoop(`${hearth.url}/function/step?ms=20`, 4);
      try {
        await eventually('top to show step serving requests', async () => {
          const row = (await screen()).split('\n').find((line) => line.startsWith('step '));
          const rps = Number(row?.trim().split(/ +/)[7]);
          return rps > 0 ? true : undefined;
        });
      } finally {
        await load.stop();
      }
      await tmux('send-keys', '-t', session, 'C-c');
      const after = await eventually('top to exit', async () => {
        const text = await screen();
        return text.includes('EXIT=') ? text : undefined;
      });
      expect(after).toContain('EXIT=0');
      // The alternate screen is gone: the shell's own screen is back, without top's table.
      expect(after).not.toContain('READY/DESIRED');
    } finally {
      await tmux('kill-session', '-t', session).catch(() => '');
    }
  });

  it('prints one snapshot when piped, and JSON with -o json', async () => {
    const once = await runCli(['top'], { url: hearth.url });
    expect(once.code).toBe(0);
    expect(once.stdout).toMatch(/^node: \d+\/\d+ instances, [\d.]+\/[\d.]+ GiB reserved, policy hybrid/m);
    expect(once.stdout).toMatch(/^bounded +v1 +2\/2 /m);
    const json = await runCli(['top', '-o', 'json'], { url: hearth.url });
    const body = JSON.parse(json.stdout) as { functions: { name: string; instances: { ready: number } }[] };
    expect(body.functions.find((fn) => fn.name === 'bounded')?.instances.ready).toBe(2);
  });
});
