/**
 * The real-size path without the Hub: a SmolVLM-256M-shaped random checkpoint (BF16, 513 MB) served from
 * another origin than the page (as the Hub is: CORS on that side, cross-origin isolation on the page's),
 * loaded by URL with a progress line into the WebGPU weight store, loaded again with int4 frozen weights
 * from IndexedDB without a byte from the network, and a short sample scored on wasm.
 */
import type { Browser } from 'playwright-core';
import type { ViteDevServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { realSize } from '../../src/node/bench-page.js';
import { chromiumAvailable, launchChromium, startApp } from '../browser.js';

describe.runIf(chromiumAvailable())('a SmolVLM-256M-shaped checkpoint by URL in the page', () => {
  let browser: Browser, server: ViteDevServer, url: string;
  beforeAll(async () => {
    ({ server, url } = await startApp());
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('loads from another origin with progress, fits the WebGPU store in fp32 and int4, reloads from IndexedDB, scores on wasm', async () => {
    const r = await realSize(browser, url);
    console.log(JSON.stringify(r));
    expect(r.cross_origin_isolated).toBe(true);
    // the progress line showed bytes, a rate and the time left while the weights came in
    expect(r.progress_samples.some((s) => /MB of 513\.0 MB · [\d.]+ [kMG]?B\/s · .* left/.test(s))).toBe(true);
    // every weight in GPU buffers: ~256M parameters as float32
    expect(r.fp32.gpu_buffer_bytes).toBeGreaterThan(0.95e9);
    expect(r.fp32.gpu_buffer_bytes).toBe(r.fp32.weight_bytes);
    // int4: the linears as 4-bit blocks (embeddings and lm_head stay float32), read from IndexedDB: no request at all
    expect(r.int4.gpu_buffer_bytes).toBeLessThan(0.4 * r.fp32.gpu_buffer_bytes);
    expect(r.int4.network_requests).toBe(0);
    expect(r.wasm.scoring_ms).toBeGreaterThan(0);
  }, 1_200_000);
});
