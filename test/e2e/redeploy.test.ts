/** @module End-to-end: redeploying under steady load drops no request, and requests in flight finish on the version they started on. */

import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionDetail } from '../../src/control/api/types.js';
import {
  api,
  copyFixture,
  deployFolder,
  eventually,
  FIXTURES,
  functionApiPath,
  getFunction,
  type Hearth,
  invoke,
  manifest,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

const NAME = 'node-version';

interface Sample {
  readonly client: number;
  readonly started: number;
  readonly finished: number;
  readonly status: number;
  readonly version: string | undefined;
  readonly error: string | undefined;
}

interface Load {
  readonly samples: readonly Sample[];
  /** Resolves once `count` more requests have finished than when it was called. */
  more(count: number): Promise<void>;
  stop(): Promise<void>;
}

/** `clients` loops, each sending one request after another (keep-alive) until stopped. */
function startLoad(url: string, clients: number): Load {
  const samples: Sample[] = [];
  const waiters: { target: number; resolve: () => void }[] = [];
  let stopped = false;
  const record = (sample: Sample): void => {
    samples.push(sample);
    for (const waiter of waiters.filter((w) => samples.length >= w.target)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  };
  const client = async (id: number): Promise<void> => {
    while (!stopped) {
      const started = performance.now();
      try {
        // A hung platform must fail the test, not hang it.
        const response = await fetch(`${url}/function/${NAME}`, { signal: AbortSignal.timeout(10_000) });
        const text = await response.text();
        let version: string | undefined;
        try {
          version = (JSON.parse(text) as { version?: string }).version;
        } catch {
          version = undefined;
        }
        record({
          client: id,
          started,
          finished: performance.now(),
          status: response.status,
          version,
          error: response.ok ? undefined : text,
        });
      } catch (error) {
        record({
          client: id,
          started,
          finished: performance.now(),
          status: 0,
          version: undefined,
          error: String(error),
        });
      }
    }
  };
  const running = Promise.all(Array.from({ length: clients }, (_, id) => client(id)));
  return {
    samples,
    more(count) {
      return new Promise((resolve) => {
        waiters.push({ target: samples.length + count, resolve });
      });
    },
    async stop() {
      stopped = true;
      await running;
    },
  };
}

function configure(
  version: string,
): Promise<{ status: number; text: string; body: { function: FunctionDetail } }> {
  return api<{ function: FunctionDetail }>(hearth.url, functionApiPath(NAME), {
    method: 'PUT',
    json: {
      apiVersion: 'hearth.dev/v1',
      kind: 'Function',
      metadata: { name: NAME },
      spec: { runtime: 'node20', env: { VERSION: version } },
    },
  });
}

let hearth: Hearth;
const folders: TempFolder[] = [];

/** New code (and a new VERSION) in a copy of the fixture, for a full redeploy. */
async function newCode(version: string): Promise<string> {
  const folder = await copyFixture(NAME, {
    'hearth.yaml': manifest(NAME, `{ runtime: node20, env: { VERSION: ${version} } }`),
    'index.mjs': `// ${version}: new code, so the deploy stores a new tree.\nexport { default } from './handler.mjs';\n`,
    'handler.mjs': `export default async function handler(event) {\n  const ms = Number(event.query.ms ?? 0);\n  if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));\n  return { version: process.env.VERSION };\n}\n`,
  });
  folders.push(folder);
  return folder.dir;
}

async function currentVersion(): Promise<string | undefined> {
  const response = await invoke(hearth.url, NAME);
  expect(response.status).toBe(200);
  return (response.json() as { version?: string }).version;
}

beforeAll(async () => {
  hearth = await startHearth();
  const deployed = await deployFolder(hearth.url, `${FIXTURES}/${NAME}`, { name: NAME });
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
  expect(await currentVersion()).toBe('v1');
});

afterAll(async () => {
  await hearth?.stop();
  for (const folder of folders) await folder.cleanup();
});

describe('redeploy under load', () => {
  it('two redeploys in the middle of steady traffic: no failed request, and the new version takes over', async () => {
    const v3 = await newCode('v3');
    const load = startLoad(hearth.url, 4);
    let switchedToV2 = 0;
    let switchedToV3 = 0;
    try {
      // Each phase lasts about a second and at least some requests: about 4 s of traffic in all.
      await Promise.all([load.more(50), delay(1000)]);
      const second = await configure('v2');
      expect(second.status, second.text).toBe(200);
      switchedToV2 = performance.now();
      expect(second.body.function.version).toBe(2);

      await Promise.all([load.more(50), delay(1000)]);
      const third = await deployFolder(hearth.url, v3, { name: NAME });
      expect(third.status, JSON.stringify(third.body)).toBe(200);
      switchedToV3 = performance.now();
      expect(third.body).toMatchObject({ unchanged: false, function: { version: 3 } });

      await Promise.all([load.more(80), delay(1500)]);
    } finally {
      await load.stop();
    }

    const samples = load.samples;
    const failures = samples.filter((sample) => sample.status !== 200);
    expect(failures, JSON.stringify(failures.slice(0, 5))).toEqual([]);
    expect(new Set(samples.map((sample) => sample.version))).toEqual(new Set(['v1', 'v2', 'v3']));

    // A request sent after a redeploy answered is served by that version or a newer one.
    const afterV2 = samples.filter((sample) => sample.started > switchedToV2);
    const afterV3 = samples.filter((sample) => sample.started > switchedToV3);
    expect(afterV3.length).toBeGreaterThan(50);
    expect(afterV2.filter((sample) => sample.version === 'v1')).toEqual([]);
    expect(afterV3.filter((sample) => sample.version !== 'v3')).toEqual([]);

    // No flapping: each client, sending one request after another, never goes back to an older version.
    for (let client = 0; client < 4; client++) {
      const seen = samples.filter((sample) => sample.client === client).map((sample) => sample.version ?? '');
      expect(seen).toEqual([...seen].sort());
    }
  });
});

describe('requests in flight during a redeploy', () => {
  it.each([
    ['a config-only change', 'v4', () => configure('v4')],
    [
      'new code',
      'v5',
      async () => {
        const dir = await newCode('v5');
        const deployed = await deployFolder(hearth.url, dir, { name: NAME });
        return { status: deployed.status, text: JSON.stringify(deployed.body) };
      },
    ],
  ])('a slow request started before %s finishes with the old version', async (_, next, redeploy) => {
    const old = await currentVersion();
    let settled = false;
    const slow = invoke(hearth.url, NAME, { path: '?ms=1500' }).finally(() => {
      settled = true;
    });
    // Redeploy only once the platform has the request in hand.
    await eventually('the slow request in flight', async () => {
      const detail = await getFunction(hearth.url, NAME);
      return detail?.activeInstances.some((instance) => instance.inFlight > 0) === true ? true : undefined;
    });

    const redeployed = await redeploy();
    expect(redeployed.status, redeployed.text).toBe(200);
    expect(settled).toBe(false);
    expect(await currentVersion()).toBe(next);

    const response = await slow;
    expect(response.status, response.text).toBe(200);
    expect(response.json()).toEqual({ version: old });
    expect(await currentVersion()).toBe(next);
  });

  it('a slow request in flight when the function is deleted still finishes; new requests get 404', async () => {
    const old = await currentVersion();
    const slow = invoke(hearth.url, NAME, { path: '?ms=1500' });
    await eventually('the slow request in flight', async () => {
      const detail = await getFunction(hearth.url, NAME);
      return detail?.activeInstances.some((instance) => instance.inFlight > 0) === true ? true : undefined;
    });

    const removed = await api(hearth.url, functionApiPath(NAME), { method: 'DELETE' });
    expect(removed.status, removed.text).toBe(200);
    expect((await invoke(hearth.url, NAME)).status).toBe(404);

    const response = await slow;
    expect(response.status, response.text).toBe(200);
    expect(response.json()).toEqual({ version: old });
  });
});
