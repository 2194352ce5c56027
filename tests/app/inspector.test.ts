/**
 * The margin inspector in headless Chromium (WebGPU on SwiftShader, and the wasm fallback): the default
 * model scores a ShapesWorld pair given by the URL and a pair of PNG files set on the image inputs, and the
 * exported JSON equals `vco-lab margins --json` on the same inputs to 1e-4 on every number. The page stays
 * responsive while it loads and scores (main-thread long tasks measured), a corrupt PNG gives a clear
 * message, and a lost GPU device restarts the engine and says so.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import type { ViteDevServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePng } from '../../src/data/png.js';
import { type MarginsReport, numericLeaves } from '../../src/inspect/margins.js';
import { shapesworldPair } from '../../src/inspect/shapesworld.js';
import { main } from '../../src/node/cli.js';
import { chromiumAvailable, launchChromium, longestTask, startApp, watchLongTasks } from '../browser.js';

/** every number of two reports, timing aside: the same leaves, each within `tol` */
function compareReports(page: MarginsReport, cli: MarginsReport, tol = 1e-4): number {
  const a = numericLeaves(page),
    b = numericLeaves(cli);
  const keys = (m: Map<string, number>) => [...m.keys()].filter((k) => !k.startsWith('timing.')).sort();
  expect(keys(a)).toEqual(keys(b));
  let worst = 0;
  for (const k of keys(a)) {
    const d = Math.abs(a.get(k)! - b.get(k)!);
    if (!(d <= tol)) throw new Error(`${k}: page ${a.get(k)} vs CLI ${b.get(k)}`);
    worst = Math.max(worst, d);
  }
  return worst;
}

async function cli(args: string[]): Promise<MarginsReport> {
  let out = '',
    err = '';
  const code = await main(
    ['margins', ...args, '--json'],
    (s) => (out += s),
    (s) => (err += s),
  );
  expect(code, err).toBe(0);
  return JSON.parse(out);
}

async function exportJson(page: Page): Promise<MarginsReport> {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export JSON' }).click()]);
  return JSON.parse(readFileSync((await dl.path())!, 'utf8'));
}

/** click Score and wait for a new report (or an error) */
async function score(page: Page): Promise<void> {
  const before = Number(await page.getByTestId('report').getAttribute('data-reports'));
  await page.getByRole('button', { name: 'Score', exact: true }).click();
  await page.waitForFunction(
    (n) =>
      Number(document.querySelector('[data-testid="report"]')?.getAttribute('data-reports')) > n ||
      !!document.querySelector('[data-testid="inspector-error"]'),
    before,
    { timeout: 240_000 },
  );
}

describe.runIf(chromiumAvailable())('the margin inspector in headless Chromium', () => {
  let browser: Browser, server: ViteDevServer, url: string;
  const dir = mkdtempSync(join(tmpdir(), 'vco-inspector-'));
  const pair = shapesworldPair(11, { type: 'attribute' });
  const pngM = join(dir, 'first.png'),
    pngMp = join(dir, 'second.png'),
    corrupt = join(dir, 'broken.png');
  const texts = { question: 'What is in the picture?', chosen: pair.chosen, rejected: pair.rejected };

  beforeAll(async () => {
    writeFileSync(pngM, encodePng(pair.m));
    writeFileSync(pngMp, encodePng(pair.mPrime));
    const bad = encodePng(pair.m).slice(0, 60);
    writeFileSync(corrupt, bad);
    ({ server, url } = await startApp());
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  async function openInspector(query: string, search = ''): Promise<Page> {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    (page as Page & { errors?: string[] }).errors = errors;
    await watchLongTasks(page);
    await page.goto(`${url}${search}#/inspect?${query}`);
    return page;
  }

  it('WebGPU: a ShapesWorld pair from the URL and a PNG pair give vco-lab margins --json to 1e-4; no long main-thread task', async () => {
    const page = await openInspector('sw=5&order=m-first&objective=icvco');
    // the link alone reproduces the view: the pair is generated and scored once the model is in
    await page.waitForSelector('[data-testid="score-table"]', { timeout: 240_000 });
    expect(await page.getByTestId('backend-status').getAttribute('data-backend')).toBe('webgpu');
    const fromUrl = await exportJson(page);
    expect(fromUrl.model.ep).toBe('webgpu');
    const worst1 = compareReports(fromUrl, await cli(['--shapesworld', '5', '--objective', 'icvco', '--order', 'm-first']));

    // own images: two PNG files on the inputs, other texts, no spans (the token-diff mask), the other order, DPO
    await page.getByLabel('First image (m)', { exact: true }).setInputFiles(pngM);
    await page.getByLabel('Contrastive image (m′)', { exact: true }).setInputFiles(pngMp);
    await page.getByLabel('Question', { exact: true }).fill(texts.question);
    await page.getByLabel('Chosen answer (y)', { exact: true }).fill(texts.chosen);
    await page.getByLabel('Rejected answer (y′)', { exact: true }).fill(texts.rejected);
    await page.getByLabel('Character spans of what differs (in y;', { exact: false }).fill('');
    await page.getByLabel('Character spans of what differs (in y′;', { exact: false }).fill('');
    await page.getByLabel('m′ first, m second').check();
    await page.getByLabel('Objective').selectOption('dpo');
    await score(page);
    const own = await exportJson(page);
    expect(own.input).toMatchObject({ ...texts, order: 'mprime-first', objective: 'dpo', mask_source: 'token-diff' });
    const worst2 = compareReports(
      own,
      await cli([
        '--image-m',
        pngM,
        '--image-mprime',
        pngMp,
        '--question',
        texts.question,
        '--chosen',
        texts.chosen,
        '--rejected',
        texts.rejected,
        '--order',
        'mprime-first',
        '--objective',
        'dpo',
      ]),
    );
    // "Swap image order" rescores with the images in the other order
    await page.getByRole('button', { name: 'Swap image order' }).click();
    await page.waitForFunction(() => !!document.querySelector('[data-testid="score-table"] [data-key]'));
    // long tasks while the engine starts, the model loads and the samples score (page boot before that aside)
    const longest = await longestTask(page, 'vco-lab:engine-start');
    const boot = await longestTask(page);
    console.log(
      `inspector on WebGPU: max |page - CLI| ${worst1.toExponential(2)} (ShapesWorld), ${worst2.toExponential(2)} (PNG pair); ` +
        `longest main-thread task while loading and scoring ${longest.toFixed(0)} ms (0: none over 50 ms); page boot ${boot.toFixed(0)} ms`,
    );
    expect(longest).toBeLessThan(50);
    expect((page as Page & { errors?: string[] }).errors).toEqual([]);
    await page.close();
  }, 600_000);

  it('wasm fallback (?backend=wasm): the same numbers, and the page says why it runs on wasm', async () => {
    const page = await openInspector('sw=5&order=m-first&objective=icvco', '?backend=wasm');
    await page.waitForSelector('[data-testid="score-table"]', { timeout: 240_000 });
    expect(await page.getByTestId('backend-status').getAttribute('data-backend')).toBe('wasm');
    expect(await page.getByTestId('backend-status').textContent()).toMatch(/WebAssembly \(CPU\): wasm EP as requested/);
    const r = await exportJson(page);
    expect(r.model.ep).toBe('wasm');
    compareReports(r, await cli(['--shapesworld', '5', '--objective', 'icvco', '--order', 'm-first']));
    await page.close();
  }, 600_000);

  it('a corrupt PNG gives a message naming the file, and the last report stays', async () => {
    const page = await openInspector('sw=2');
    await page.waitForSelector('[data-testid="score-table"]', { timeout: 240_000 });
    await page.getByLabel('First image (m)', { exact: true }).setInputFiles(corrupt);
    await score(page);
    const msg = await page.getByTestId('inspector-error').textContent();
    expect(msg).toMatch(/First image \(m\) \(broken\.png\): not a readable PNG/);
    expect(await page.locator('[data-testid="score-table"]').count()).toBe(1);
    await page.close();
  }, 300_000);

  it('a lost GPU device restarts the engine on a new runtime, reloads the model and says so', async () => {
    const page = await openInspector('sw=2');
    await page.waitForSelector('[data-testid="model-status"][data-loaded="true"]', { timeout: 240_000 });
    const lost = await page.evaluate(() =>
      (
        window as unknown as { vcoLab: { app: { engine: { loseDeviceForTest(): Promise<boolean> } } } }
      ).vcoLab.app.engine.loseDeviceForTest(),
    );
    expect(lost).toBe(true);
    await page.waitForFunction(
      () => [...document.querySelectorAll('[data-testid="notice"]')].some((n) => /reloaded/.test(n.textContent ?? '')),
      null,
      {
        timeout: 120_000,
      },
    );
    const notices = await page.getByTestId('notice').allTextContents();
    expect(notices.join('\n')).toMatch(/The GPU device was lost \(destroyed/);
    // the restarted engine scores again
    await score(page);
    expect(await page.locator('[data-testid="score-table"]').count()).toBe(1);
    await page.close();
  }, 300_000);
});
