/**
 * The playground as a static site: `vite build` output served by a plain file server with no COOP/COEP
 * headers (a lab's web page, GitHub Pages) loads the default model and scores a sample; the page says that
 * wasm would run on one thread there, and nothing else is lost.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumAvailable, launchChromium, serveFolder } from '../browser.js';
import { REPO } from '../helpers.js';

describe.runIf(chromiumAvailable())('the production build on a plain static host', () => {
  const outDir = mkdtempSync(join(tmpdir(), 'vco-lab-site-'));
  let browser: Browser, site: Awaited<ReturnType<typeof serveFolder>>;
  beforeAll(async () => {
    await build({ root: REPO, configFile: `${REPO}/vite.config.ts`, logLevel: 'error', build: { outDir, emptyOutDir: true } });
    // a subfolder of the host, as a project page is: every URL in the build must be relative
    site = await serveFolder(join(outDir, '..'), { bare: true });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await site?.close();
    rmSync(outDir, { recursive: true, force: true });
  });

  it('scores a ShapesWorld sample without cross-origin isolation, and says what that costs', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${site.url}/${outDir.split('/').pop()}/#/inspect?sw=4`);
    await page.waitForSelector('[data-testid="score-table"]', { timeout: 300_000 });
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(false);
    expect(await page.getByTestId('backend-status').textContent()).toMatch(/not cross-origin isolated: wasm runs on one thread/);
    expect(await page.locator('[data-testid="score-table"] tbody tr').count()).toBe(10);
    expect(errors).toEqual([]);
  }, 600_000);
});
