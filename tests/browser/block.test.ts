/**
 * The two-layer LoRA decoder block's backward graph, built in Node, run in headless Chromium's engine worker on
 * onnxruntime-web's WebGPU EP with the frozen weights resident in GPU buffers (the worker's weight store),
 * against onnxruntime-node's CPU EP: every gradient within 1e-4.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { ViteDevServer } from 'vite';
import { serialize } from '../../src/onnx/serialize.js';
import { createNodeRuntime } from '../../src/runtime/node.js';
import { type BrowserTensorIn, chromiumAvailable, launchChromium, runInBrowserWorker, startApp } from '../browser.js';
import { blockBackward, runBlockBackward } from '../onnx/tiny-decoder.js';

describe.runIf(chromiumAvailable())('decoder block backward in a Chromium worker (WebGPU)', () => {
  let browser: Browser, server: ViteDevServer, page: Page;
  beforeAll(async () => {
    let url: string;
    [{ server, url }, browser] = await Promise.all([startApp(), launchChromium()]);
    page = await browser.newPage();
    // the dev server transforms every module on the first load: minutes on a busy 2-core machine
    await page.goto(url, { timeout: 180_000 });
  }, 300_000);
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  for (const int4 of [false, true]) {
    it(`${int4 ? 'int4-frozen' : 'float32'} block: WebGPU in the worker matches the Node CPU EP to 1e-4`, async () => {
      const cpu = await runBlockBackward(await createNodeRuntime('cpu'), int4);
      const { bw, feeds } = blockBackward(int4);
      const trainable = new Set([...Object.keys(bw.grads), ...Object.values(bw.seeds), 'input_ids', 'targets']);
      const weights: Record<string, BrowserTensorIn> = {},
        runFeeds: Record<string, BrowserTensorIn> = {};
      for (const v of bw.graph.inputs) {
        const t = { type: v.dtype, data: feeds[v.name], dims: [...v.shape] };
        // frozen weights go into the worker's store once; LoRA, seeds and tokens are fed per run
        if (trainable.has(v.name) || v.name.includes('lora_')) runFeeds[v.name] = t;
        else weights[v.name] = t;
      }
      const res = await runInBrowserWorker(page, serialize(bw.graph), runFeeds, {
        prefer: 'webgpu',
        weights,
        clearWeights: true,
      });
      expect(res.ep).toBe('webgpu');
      expect(Object.values(res.weights).some((w) => w.location === 'gpu-buffer')).toBe(true);
      expect(Object.keys(res.outputs).sort()).toEqual(Object.keys(cpu).sort());
      let err = 0,
        mag = 0;
      for (const [k, a] of Object.entries(cpu)) {
        const b = res.outputs[k].data as Float32Array;
        for (let i = 0; i < a.length; i++) {
          err = Math.max(err, Math.abs(a[i] - b[i]));
          mag = Math.max(mag, Math.abs(a[i]));
        }
      }
      expect(mag).toBeGreaterThan(0.01);
      expect(err).toBeLessThan(1e-4);
    }, 180_000);
  }
});
