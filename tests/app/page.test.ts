import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import type { ViteDevServer } from 'vite';
import { chromiumAvailable, launchChromium, startApp } from '../browser.js';

describe.runIf(chromiumAvailable())('the playground page in headless Chromium', () => {
  let browser: Browser, server: ViteDevServer, url: string;
  beforeAll(async () => {
    ({ server, url } = await startApp());
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('loads, is cross-origin isolated, and names the compute backend it found', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    const status = page.getByTestId('backend-status');
    await page.waitForFunction(() => document.querySelector('[data-backend]') !== null, null, { timeout: 30_000 });
    const backend = await page.locator('[data-backend]').getAttribute('data-backend');
    // with --enable-unsafe-webgpu, Chromium offers WebGPU even without a GPU (SwiftShader)
    expect(backend).toBe('webgpu');
    expect(await status.textContent()).toMatch(/WebGPU: \S+/);
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    expect(errors).toEqual([]);
  });
});
