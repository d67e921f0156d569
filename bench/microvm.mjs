// isolation: microvm (issue 14): a VM's boot to a ready guest, the time to first byte of a cold start from
// the pool of booted VMs (a fresh connection), warm throughput against the same hello in the sandbox and a
// raw node:http server in the same run, and the memory (PSS) of an idle microVM with its QEMU and virtiofsd.
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  api,
  autocannon,
  deploy,
  ROOT,
  round,
  scaleToZero,
  sleep,
  startHearth,
  timeToFirstByte,
  treeMemory,
} from './lib.mjs';

const HELLO = join(ROOT, 'examples', 'hello');

function deployHello(url, name, isolation) {
  const folder = mkdtempSync(join(tmpdir(), 'hearth-vm-'));
  cpSync(HELLO, folder, { recursive: true });
  writeFileSync(
    join(folder, 'hearth.yaml'),
    `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec: { runtime: node20, handler: index, isolation: ${isolation} }\n`,
  );
  return deploy(url, folder, name).finally(() => rmSync(folder, { recursive: true, force: true }));
}

/** Boots microVMs one after the other straight through the isolation, to the guest's Ready frame. */
async function bootTimes(count) {
  const { MicroVmIsolation } = await import('../dist/runtime/microvm/index.js');
  const { NodeRuntime } = await import('../dist/runtime/node/index.js');
  const { PythonRuntime } = await import('../dist/runtime/python/index.js');
  const node = new NodeRuntime();
  const stateDir = mkdtempSync(join(tmpdir(), 'hearth-vm-boot-'));
  const isolation = new MicroVmIsolation({
    stateDir,
    launches: [node.launchSpec(), new PythonRuntime().launchSpec()],
  });
  await isolation.init();
  const times = [];
  try {
    for (let i = 0; i < count; i++) {
      const slot = join(stateDir, `slot-${i}`);
      cpSync(HELLO, join(slot, 'app'), { recursive: true });
      const started = performance.now();
      const guest = isolation.start(node.launchSpec(), { id: `boot${i}`, hostDir: slot }, 'none');
      await guest.ready;
      times.push(performance.now() - started);
      guest.kill('SIGKILL');
      await guest.waitForExit();
    }
  } finally {
    await isolation.closeWalls();
    rmSync(stateDir, { recursive: true, force: true });
  }
  times.sort((a, b) => a - b);
  return {
    accelerator: isolation.acceleratorNote,
    medianMs: round(times[Math.floor(times.length / 2)], 0),
    minMs: round(times[0], 0),
    maxMs: round(times[times.length - 1], 0),
  };
}

async function startRaw() {
  const child = spawn(process.execPath, [join(ROOT, 'bench', 'raw-server.mjs')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise((resolve) => createInterface({ input: child.stdout }).once('line', resolve));
  return { url: `http://127.0.0.1:${JSON.parse(line).port}/`, stop: () => child.kill() };
}

export async function microvmBench({ boots = 3, coldStarts = 3, seconds = 5, connections = 16 } = {}) {
  const boot = await bootTimes(boots);
  const hearth = await startHearth();
  const raw = await startRaw();
  try {
    // Cold starts from the pool: each a function scaled to zero, called on a fresh connection once a
    // booted VM waits in the pool.
    const ttfb = [];
    for (let i = 0; i < coldStarts; i++) {
      await deployHello(hearth.url, `vm-cold-${i}`, 'microvm');
      await scaleToZero(hearth.url, `vm-cold-${i}`);
      // The deploy's own first start took the pool's VM: give the pool a boot's time (and some) to refill.
      await sleep(boot.maxMs * 2);
      const agent = new Agent({ keepAlive: false });
      const answer = await timeToFirstByte(hearth.url, `/function/vm-cold-${i}`, agent);
      agent.destroy();
      ttfb.push({ ms: answer.ttfb, cold: answer.cold, status: answer.status });
    }
    await deployHello(hearth.url, 'vm-hello', 'microvm');
    await deployHello(hearth.url, 'sb-hello', 'sandbox');
    for (const name of ['vm-hello', 'sb-hello']) await timeToFirstByte(hearth.url, `/function/${name}`);
    const load = (url) => autocannon(url, { connections, seconds });
    const warm = {
      microvm: await load(`${hearth.url}/function/vm-hello`),
      sandbox: await load(`${hearth.url}/function/sb-hello`),
      raw: await load(raw.url),
    };
    await sleep(2000);
    const detail = await api(hearth.url, 'GET', '/api/v1/namespaces/default/functions/vm-hello');
    const idle = detail.activeInstances.map((instance) => treeMemory(instance.pid));
    const gateway = readFileSync(`/proc/${hearth.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)?.[1] ?? '0';
    return {
      boot,
      coldFromPool: ttfb.map((entry) => ({ ...entry, ms: round(entry.ms, 1) })),
      warm: Object.fromEntries(
        Object.entries(warm).map(([key, value]) => [
          key,
          { rps: round(value.rps, 0), p50: value.p50, p99: value.p99, errors: value.errors },
        ]),
      ),
      warmRatioToSandbox: round(warm.microvm.rps / warm.sandbox.rps, 2),
      idlePssMiB: idle.length === 0 ? null : round(idle[0].pssKiB / 1024, 1),
      idleRssMiB: idle.length === 0 ? null : round(idle[0].rssKiB / 1024, 1),
      gatewayRssMiB: round(Number(gateway) / 1024, 1),
    };
  } finally {
    raw.stop();
    await hearth.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(await microvmBench(), null, 2)}\n`);
}
