/**
 * @module The /ui dashboard in a real headless Chromium (Debian's, driven by playwright-core): it lists a
 * function the test deployed, its counters move after invocations, its detail shows the invocations and
 * their logs, the three seed alerts are there; a screenshot goes to test/.artifacts/.
 */

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  copyFixture,
  deployFolder,
  type Hearth,
  invoke,
  manifest,
  ROOT,
  startHearth,
} from '../support/hearth.js';

const ARTIFACTS = join(ROOT, 'test', '.artifacts');

let hearth: Hearth;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  hearth = await startHearth();
  const folder = await copyFixture('node-esm-default', {
    'hearth.yaml': manifest('shop-api', '{ runtime: node20 }'),
  });
  try {
    const { status, body } = await deployFolder(hearth.url, folder.dir, { name: 'shop-api' });
    expect(status, JSON.stringify(body)).toBe(200);
  } finally {
    await folder.cleanup();
  }
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  page = await browser.newPage({ viewport: { width: 1440, height: 1100 } });
});

afterAll(async () => {
  await browser?.close();
  await hearth?.stop();
});

describe('/ui', () => {
  it('shows the deployed function, and its counters move after invocations', async () => {
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(`${hearth.url}/ui`);
    const count = page.getByTestId('invocations-shop-api');
    await count.waitFor({ timeout: 15_000 });
    expect(await count.textContent()).toBe('0');
    await expect
      .poll(() => page.locator('#meta').textContent(), { timeout: 10_000 })
      .toContain('1 functions');
    for (let i = 0; i < 6; i++)
      expect((await invoke(hearth.url, 'shop-api', { path: `?n=${i}` })).status).toBe(200);
    await expect.poll(() => count.textContent(), { timeout: 15_000 }).toBe('6');
    // The three seed indicators are on the page with a state each.
    for (const alert of ['HearthFunctionErrorRateHigh', 'HearthColdStartRatioHigh', 'HearthLowUtilisation'])
      expect(await page.locator(`[data-alert="${alert}"]`).getAttribute('data-state')).toMatch(
        /^(inactive|pending|firing)$/,
      );
    expect(errors).toEqual([]);
  });

  it('opens a function: charts, recent invocations and their logs', async () => {
    await page.getByTestId('fn-shop-api').click();
    await page.locator('#detail').waitFor({ state: 'visible' });
    await expect
      .poll(() => page.locator('#invocations tr').count(), { timeout: 10_000 })
      .toBeGreaterThanOrEqual(6);
    expect(await page.locator('#chart-rate svg path').count()).toBeGreaterThan(0);
    expect(await page.locator('#chart-latency svg path').count()).toBe(2);
    const first = page.locator('#invocations tr').first();
    const id = (await first.getAttribute('data-invocation')) ?? '';
    await first.click();
    await expect
      .poll(() => page.getByTestId('logs').textContent(), { timeout: 10_000 })
      .toContain(`echo ${id}`);
    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });
  });
});
