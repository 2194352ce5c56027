import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import type { ViteDevServer } from 'vite';
import { chromiumAvailable, launchChromium, startApp } from '../browser.js';
import { render } from '../../src/data/raster.js';
import { sceneFor, sceneQuestions } from '../../src/app/questions.js';
import { yesNoMargins } from '../../src/eval/yesno.js';
import { DEFAULT_MODEL_DIR, loadModelDir } from '../../src/node/model-dir.js';
import { createNodeRuntime } from '../../src/runtime/node.js';

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

  it('loads the embedded default model in the worker and answers yes/no questions about a ShapesWorld scene', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${url}#/models`);
    await page.waitForSelector('[data-testid="model-status"][data-loaded="true"]', { timeout: 120_000 });
    expect(await page.getByTestId('model-status').textContent()).toMatch(/shapesworld-tiny \(idefics3, [\d.]+ M parameters/);
    // every question of the scene gets a p(yes) and a verdict against the scene graph
    await page.waitForFunction(
      () => {
        const v = [...document.querySelectorAll('[data-testid="verdict"]')].map((e) => e.textContent?.trim());
        return v.length > 0 && v.every((x) => x === '✓' || x === '✗');
      },
      null,
      { timeout: 120_000 },
    );
    // the page (onnxruntime-web in a worker) and `vco-lab eval`'s path (onnxruntime-node) agree on every answer
    const shown = await page.$$eval('tr[data-pyes]', (trs) => trs.map((t) => Number(t.getAttribute('data-pyes'))));
    const scene = sceneFor(1, false),
      qs = sceneQuestions(scene);
    expect(shown.length).toBe(qs.length);
    const rt = await createNodeRuntime('cpu');
    const m = await loadModelDir(rt, DEFAULT_MODEL_DIR);
    const margins = await yesNoMargins(
      m.engine,
      m,
      qs.map((q) => ({ category: q.category, image: render(scene), question: q.question, answer: q.truth })),
    );
    margins.forEach((d, i) => expect(Math.abs(shown[i] - 1 / (1 + Math.exp(-d)))).toBeLessThan(1e-3));
    await m.engine.release();
    expect(errors).toEqual([]);
  }, 300_000);
});
