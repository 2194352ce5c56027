/**
 * The model library in headless Chromium: a model folder served from another origin is loaded by URL and kept
 * in IndexedDB (listed with sizes, a second load asks the network nothing, deletable); a folder picked from
 * disk loads; a broken one shows the loader's message (file and field); a PEFT adapter picked on top makes
 * the inspector's policy base + adapter, with the numbers of `vco-lab margins --adapter`.
 */
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { ViteDevServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { exportPeft } from '../../src/engine/checkpoint.js';
import { type MarginsReport, numericLeaves } from '../../src/inspect/margins.js';
import { checkConfig } from '../../src/model/families/index.js';
import { main } from '../../src/node/cli.js';
import { writeFolderAtomic } from '../../src/node/checkpoint-io.js';
import { loadCheckpointDir } from '../../src/node/load-dir.js';
import { DEFAULT_MODEL_DIR } from '../../src/node/model-dir.js';
import { createNodeRuntime } from '../../src/runtime/node.js';
import { rng } from '../../src/util/prng.js';
import { chromiumAvailable, launchChromium, serveFolder, startApp } from '../browser.js';

const loads = (page: Page) => page.evaluate(() => (window as unknown as { vcoLab: { app: { loads: number } } }).vcoLab.app.loads);

async function waitLoaded(page: Page, before: number): Promise<void> {
  await page.waitForFunction(
    (n) => {
      if (document.querySelector('[data-testid="library-error"]')) return true;
      return (window as unknown as { vcoLab: { app: { loads: number } } }).vcoLab.app.loads > n;
    },
    before,
    { timeout: 120_000 },
  );
}

describe.runIf(chromiumAvailable())('the model library in headless Chromium', () => {
  let browser: Browser, server: ViteDevServer, url: string, context: BrowserContext;
  const tmp = mkdtempSync(join(tmpdir(), 'vco-library-'));

  beforeAll(async () => {
    ({ server, url } = await startApp());
    browser = await launchChromium();
    context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1400, height: 900 } });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  async function modelsPage(): Promise<Page> {
    const page = await context.newPage();
    await page.goto(`${url}#/models`);
    await page.waitForSelector('[data-testid="model-status"][data-loaded="true"]', { timeout: 120_000 });
    return page;
  }

  it('a model by URL from another origin is kept in IndexedDB: listed, reloaded without the network, deleted', async () => {
    const host = await serveFolder(DEFAULT_MODEL_DIR);
    try {
      let page = await modelsPage();
      await page.getByLabel('Base URL of a model folder', { exact: false }).fill(host.url);
      let n = await loads(page);
      await page.getByRole('button', { name: 'Load from URL' }).click();
      await waitLoaded(page, n);
      expect(await page.getByTestId('library-error').count()).toBe(0);
      const first = host.requests.length;
      expect(host.requests).toContain('/model.safetensors');
      await page.waitForSelector('[data-testid="stored-file"]');
      const rows = await page.getByTestId('stored-file').allTextContents();
      expect(rows.some((r) => /model\.safetensors\s*3\.7\d MB/.test(r))).toBe(true);
      expect(await page.getByTestId('storage-estimate').textContent()).toMatch(/used of .* available to this site/);
      await page.close();

      // another page of the same browser: the same URL reads IndexedDB, not the network
      page = await modelsPage();
      await page.getByLabel('Base URL of a model folder', { exact: false }).fill(host.url);
      n = await loads(page);
      await page.getByRole('button', { name: 'Load from URL' }).click();
      await waitLoaded(page, n);
      expect(host.requests.length).toBe(first);
      await page.getByRole('button', { name: `Delete all of ${host.url}` }).click();
      await page.waitForFunction(() => document.querySelectorAll('[data-testid="stored-file"]').length === 0);
      await page.close();
    } finally {
      await host.close();
    }
  }, 300_000);

  it("a folder picked from disk loads; a broken one shows the loader's message and keeps the model", async () => {
    const page = await modelsPage();
    let n = await loads(page);
    await page.getByLabel('Model folder from disk', { exact: false }).setInputFiles(DEFAULT_MODEL_DIR);
    await waitLoaded(page, n);
    expect(await page.getByTestId('current-model').textContent()).toMatch(/shapesworld-tiny/);

    const broken = join(tmp, 'broken-model');
    cpSync(DEFAULT_MODEL_DIR, broken, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(broken, 'config.json'), 'utf8'));
    delete cfg.text_config.hidden_size;
    writeFileSync(join(broken, 'config.json'), JSON.stringify(cfg));
    n = await loads(page);
    await page.getByLabel('Model folder from disk', { exact: false }).setInputFiles(broken);
    await page.waitForSelector('[data-testid="library-error"]', { timeout: 60_000 });
    expect(await page.getByTestId('library-error').textContent()).toMatch(
      /config\.json: field "text_config\.hidden_size" is missing/,
    );
    expect(await loads(page)).toBe(n);
    expect(await page.getByTestId('current-model').textContent()).toMatch(/shapesworld-tiny/);
    await page.close();
  }, 300_000);

  it('a PEFT adapter picked on top: the inspector scores policy = base + adapter as vco-lab margins --adapter', async () => {
    // an adapter with non-zero B (a trained one's shape), written as PEFT writes it
    const ckpt = loadCheckpointDir(DEFAULT_MODEL_DIR);
    const rt = await createNodeRuntime('cpu');
    const e = await Engine.create(rt, checkConfig(ckpt.config), ckpt, {
      lora: { r: 4, alpha: 8, targets: ['q_proj', 'v_proj'] },
      seed: 3,
    });
    const rand = rng(9);
    for (const p of e.lora.values()) for (let i = 0; i < p.B.length; i++) p.B[i] = 0.3 * (rand() - 0.5);
    const adapterDir = join(tmp, 'adapter');
    writeFolderAtomic(adapterDir, exportPeft(e, { targets: ['q_proj', 'v_proj'] }));
    await e.release();

    const page = await modelsPage();
    await page.getByLabel(/^PEFT adapter folder \(/).setInputFiles(adapterDir);
    await page.waitForFunction(
      () => /adapter: adapter/.test(document.querySelector('[data-testid="current-model"]')?.textContent ?? ''),
      null,
      {
        timeout: 60_000,
      },
    );
    expect(await page.getByTestId('current-model').textContent()).toMatch(/LoRA modules, rank 4/);
    await page.goto(`${url}#/inspect?sw=5&order=m-first&objective=icvco`);
    await page.waitForSelector('[data-testid="score-table"]', { timeout: 240_000 });
    const [dl] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export JSON' }).click()]);
    const got: MarginsReport = JSON.parse(readFileSync((await dl.path())!, 'utf8'));
    expect(got.model.adapter).toBe('adapter');
    let out = '';
    expect(
      await main(
        ['margins', '--shapesworld', '5', '--adapter', adapterDir, '--json'],
        (s) => (out += s),
        () => {},
      ),
    ).toBe(0);
    const want: MarginsReport = JSON.parse(out);
    // the adapter moves the policy: log-ratios are not zero
    expect(Math.abs(want.sequences['m|y'].log_ratio.full)).toBeGreaterThan(1e-3);
    const a = numericLeaves(got),
      b = numericLeaves(want);
    for (const [k, v] of b) if (!k.startsWith('timing.')) expect(Math.abs(a.get(k)! - v), k).toBeLessThan(1e-4);
    await page.close();
  }, 300_000);
});
