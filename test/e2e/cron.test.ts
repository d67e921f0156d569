/**
 * @module Cron triggers end to end: a per-second schedule fires into a real function as a CloudEvent
 * (through the durable queue), shows in `hearth describe`, and a restart fires no scheduled time twice.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionDetail } from '../../src/control/api/types.js';
import {
  api,
  copyFixture,
  deployFolder,
  eventually,
  type Hearth,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { type Recorder, startRecorder } from '../support/recorder.js';

let hearth: Hearth;
let recorder: Recorder;
let dataDir: string;
const folders: TempFolder[] = [];

interface Report {
  readonly event: Record<string, unknown> & { data: Record<string, unknown> };
}

const ticks = (): Report['event'][] =>
  recorder.received.map((r) => r.json<Report>().event).filter((e) => e.type === 'dev.hearth.cron.tick');

async function trigger(): Promise<NonNullable<FunctionDetail['triggers']>[number] | undefined> {
  return (await api<FunctionDetail>(hearth.url, '/api/v1/namespaces/default/functions/ticker')).body
    .triggers?.[0];
}

beforeAll(async () => {
  recorder = await startRecorder();
  dataDir = await mkdtemp(join(tmpdir(), 'hearth-cron-'));
  hearth = await startHearth({ dataDir });
  const fixture = await copyFixture('event-recorder', {
    'hearth.yaml': [
      'apiVersion: hearth.dev/v1',
      'kind: Function',
      'metadata: { name: ticker }',
      'spec:',
      '  runtime: node20',
      '  egress: allow',
      `  env: { RECORDER_URL: "${recorder.functionUrl}/hit" }`,
      '  triggers:',
      '    - cron: { name: every-second, schedule: "* * * * * *", timezone: Asia/Tokyo, data: { job: tick } }',
      '',
    ].join('\n'),
  });
  folders.push(fixture);
  const { status, body } = await deployFolder(hearth.url, fixture.dir, { name: 'ticker' });
  expect(status, JSON.stringify(body)).toBe(200);
});

afterAll(async () => {
  await hearth?.stop();
  await recorder?.close();
  await Promise.all(folders.map((folder) => folder.cleanup()));
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
});

describe('cron trigger', () => {
  it('fires a per-second schedule into the function as a CloudEvent', async () => {
    await recorder.waitFor('two ticks', () => ticks().length >= 2, 20_000);
    const [first, second] = ticks();
    expect(first).toMatchObject({
      specversion: '1.0',
      source: 'hearth://cron/default/ticker/every-second',
      type: 'dev.hearth.cron.tick',
      subject: 'every-second',
      datacontenttype: 'application/json',
      data: { job: 'tick' },
      schedule: '* * * * * *',
      timezone: 'Asia/Tokyo',
    });
    expect(first?.id).toBe(`default/ticker/every-second@${String(first?.time)}`);
    expect(String(first?.time)).toMatch(/T\d\d:\d\d:\d\d\.000Z$/);
    expect(Date.parse(String(second?.time)) - Date.parse(String(first?.time))).toBeGreaterThanOrEqual(1000);
  });

  it('shows the schedule, its time zone, the next run and the count in describe', async () => {
    const state = await eventually('the trigger to count deliveries', async () => {
      const current = await trigger();
      return current !== undefined && current.delivered >= 2 ? current : undefined;
    });
    expect(state).toMatchObject({ kind: 'cron', state: 'running', lastError: null });
    expect(state.detail).toMatchObject({ schedule: '* * * * * *', timezone: 'Asia/Tokyo', missed: 'skip' });
    const described = await runCli(['describe', 'ticker'], { url: hearth.url });
    expect(described.code, described.stderr).toBe(0);
    expect(described.stdout).toMatch(
      /every-second\s+cron\s+running\s+\* \* \* \* \* \* Asia\/Tokyo, next \d{4}-\d\d-\d\dT[\d:.]+Z\s+0\s+[1-9]\d*\s+0\s+0/,
    );
  });

  it('fires no scheduled time twice across a restart of the platform', async () => {
    await hearth.stop();
    hearth = await startHearth({ dataDir });
    const before = ticks().length;
    await recorder.waitFor('ticks after the restart', () => ticks().length >= before + 2, 20_000);
    const ids = ticks().map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
