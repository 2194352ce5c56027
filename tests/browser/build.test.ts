/**
 * The engine worker from a production build: `vite build` must emit onnxruntime-web in a chunk of its own
 * (its wasm threads start workers on that file) and its .wasm as an asset that the chunk finds; served by
 * `vite preview` (COOP/COEP) in headless Chromium, both EPs must run the demo graphs as in Node.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { type PreviewServer, build, preview } from 'vite';
import { createNodeRuntime } from '../../src/runtime/node.js';
import { buildDemoGraphs } from '../../src/worker/demo.js';
import { chromiumAvailable, launchChromium } from '../browser.js';
import { REPO } from '../helpers.js';

describe.runIf(chromiumAvailable())('the engine worker in a production build', () => {
  const outDir = mkdtempSync(join(tmpdir(), 'vco-lab-build-'));
  let browser: Browser, server: PreviewServer;

  beforeAll(async () => {
    await build({
      root: REPO,
      configFile: `${REPO}/vite.config.ts`,
      logLevel: 'error',
      build: { outDir, emptyOutDir: true, rollupOptions: { input: { check: `${REPO}/tests/browser/worker-build.html` } } },
    });
    server = await preview({
      root: REPO,
      configFile: `${REPO}/vite.config.ts`,
      logLevel: 'error',
      build: { outDir },
      preview: { port: 0, host: '127.0.0.1', strictPort: false },
    });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((resolve) => (server ? server.httpServer.close(() => resolve()) : resolve()));
    rmSync(outDir, { recursive: true, force: true });
  });

  it('emits onnxruntime-web as its own chunk with its wasm, and runs on WebGPU and wasm', async () => {
    const assets = readdirSync(join(outDir, 'assets'));
    expect(assets.filter((f) => /^ort\.bundle\.min-.*\.js$/.test(f))).toHaveLength(1);
    expect(assets.filter((f) => /^ort-wasm-simd-threaded\.jsep-.*\.wasm$/.test(f))).toHaveLength(1);

    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    const { port } = server.httpServer.address() as AddressInfo;
    await page.goto(`http://127.0.0.1:${port}/tests/browser/worker-build.html`);
    await page.waitForFunction(() => '__results' in window, null, { timeout: 45_000 });
    type R = {
      info: { ep: string; detail: string };
      forward: Record<string, number[]>;
      backward: Record<string, number[]>;
      error?: string;
    };
    const results = await page.evaluate(() => (window as unknown as { __results: Record<string, R> }).__results);

    const cpu = await createNodeRuntime('cpu');
    const demo = buildDemoGraphs();
    const run = async (g: typeof demo.forward) => {
      const s = await cpu.session(g);
      const out = await s.run(
        Object.fromEntries(s.inputNames.map((n) => [n, cpu.tensor('float32', demo.feeds[n].data, demo.feeds[n].dims)])),
      );
      await s.release();
      return out;
    };
    const want = { forward: await run(demo.forward), backward: await run(demo.backward.graph) };
    for (const ep of ['webgpu', 'wasm']) {
      const r = results[ep];
      expect(r.error, `${ep}: ${r.error}`).toBeUndefined();
      expect(r.info.ep, r.info.detail).toBe(ep);
      for (const phase of ['forward', 'backward'] as const) {
        for (const [name, t] of Object.entries(want[phase])) {
          const got = r[phase][name],
            exp = t.data as Float32Array;
          expect(got).toHaveLength(exp.length);
          expect(Math.max(...got.map((v, i) => Math.abs(v - exp[i])))).toBeLessThan(1e-4);
        }
      }
    }
    expect(errors).toEqual([]);
  });
});
