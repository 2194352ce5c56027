/**
 * The engine worker in headless Chromium: onnxruntime-web's WebGPU EP (SwiftShader here) and wasm EP run
 * graphs built by the project's IR and autodiff inside a module worker, and agree with onnxruntime-node's
 * CPU EP on the same graphs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { Tensor } from 'onnxruntime-common';
import type { ViteDevServer } from 'vite';
import { GraphBuilder } from '../../src/onnx/ops.js';
import { serialize } from '../../src/onnx/serialize.js';
import { createNodeRuntime } from '../../src/runtime/node.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { DemoBackwardResult, WireArray, WireTensor } from '../../src/worker/api.js';
import { buildDemoGraphs } from '../../src/worker/demo.js';
import { type BrowserTensorIn, chromiumAvailable, launchChromium, runInBrowserWorker, startApp } from '../browser.js';

const TOL = 1e-4;

function maxAbsDiff(a: ArrayLike<number | bigint>, b: ArrayLike<number | bigint>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(Number(a[i]) - Number(b[i])));
  return m;
}

/** run a graph on onnxruntime-node with feeds given as wire tensors; outputs as typed arrays */
async function runNode(
  rt: Runtime,
  model: GraphBuilder | Uint8Array,
  feeds: Record<string, BrowserTensorIn>,
): Promise<Record<string, Tensor>> {
  const s = await rt.session(model);
  const tensors = Object.fromEntries(
    s.inputNames.map((n) => [n, rt.tensor(feeds[n].type as Tensor.Type, feeds[n].data as Tensor.DataType, feeds[n].dims)]),
  );
  const out = await s.run(tensors);
  await s.release();
  return out;
}

describe.runIf(chromiumAvailable())('the engine worker in headless Chromium', () => {
  let browser: Browser, server: ViteDevServer, page: Page, cpu: Runtime;
  const errors: string[] = [];
  const demo = buildDemoGraphs();
  let expected: { forward: Record<string, Tensor>; backward: Record<string, Tensor> };

  beforeAll(async () => {
    let url: string;
    [{ server, url }, browser, cpu] = await Promise.all([startApp(), launchChromium(), createNodeRuntime('cpu')]);
    page = await browser.newPage();
    page.on('pageerror', (e) => errors.push(e.message));
    // the workers' console comes through the page's: WebGPU validation errors and ORT errors land here
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    // the dev server transforms every module on the first load: minutes on a busy 2-core machine
    await page.goto(url, { timeout: 180_000 });
    expected = {
      forward: await runNode(cpu, demo.forward, demo.feeds),
      backward: await runNode(cpu, demo.backward.graph, demo.feeds),
    };
  }, 300_000);
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  /** start a fresh worker on the page, init it with `prefer`, run demoBackward */
  const demoIn = (prefer: 'webgpu' | 'wasm') =>
    page.evaluate(async (p) => {
      // (vitest rewrites a literal import() in this function for Node; build it in the page instead)
      const load = new Function('u', 'return import(u)') as (u: string) => Promise<typeof import('../../src/worker/client.js')>;
      const { createEngineWorker, terminateEngineWorker } = await load('/src/worker/client.ts');
      const engine = createEngineWorker();
      try {
        const info = await engine.init(p);
        const r = await engine.demoBackward();
        const plain = (o: Record<string, WireTensor>) =>
          Object.fromEntries(
            Object.entries(o).map(([k, t]) => [k, { type: t.type, dims: t.dims, data: Array.from(t.data as ArrayLike<number>) }]),
          );
        return { info, result: { ...r, forward: plain(r.forward), backward: plain(r.backward) } };
      } finally {
        terminateEngineWorker(engine);
      }
    }, prefer);

  type Plain = Record<string, { type: string; dims: number[]; data: number[] }>;
  function compareDemo(
    r: Omit<DemoBackwardResult, 'forward' | 'backward'> & { forward: Plain; backward: Plain },
  ): Record<string, number> {
    const diffs: Record<string, number> = {};
    expect(Object.keys(r.forward).sort()).toEqual(['y']);
    expect(Object.keys(r.backward).sort()).toEqual(['grad_W', 'grad_b', 'y']);
    expect(r.grads).toEqual(demo.backward.grads);
    for (const [phase, outs] of [
      ['forward', r.forward],
      ['backward', r.backward],
    ] as const) {
      for (const [name, t] of Object.entries(outs)) {
        const want = expected[phase][name];
        expect(t.type).toBe('float32');
        expect(t.dims).toEqual([...want.dims]);
        diffs[`${phase}.${name}`] = maxAbsDiff(t.data, want.data as Float32Array);
      }
    }
    // the gradients are not trivially zero (softmax rows sum to 1, so the seed must not be constant per row)
    expect(Math.max(...Array.from(expected.backward.grad_W.data as Float32Array, Math.abs))).toBeGreaterThan(0.05);
    for (const d of Object.values(diffs)) expect(d).toBeLessThan(TOL);
    return diffs;
  }

  it('builds a graph and its backward graph in the worker and runs both on the WebGPU EP', async () => {
    const { info, result } = await demoIn('webgpu');
    expect(info.ep, info.detail).toBe('webgpu');
    expect(result.ep).toBe('webgpu');
    const diffs = compareDemo(result);
    console.log(`demoBackward on WebGPU (${info.detail}) vs onnxruntime-node CPU, max |diff|:`, diffs);
    expect(errors).toEqual([]);
  });

  it('falls back to the wasm EP on request, with the same results', async () => {
    const { info, result } = await demoIn('wasm');
    expect(info.ep).toBe('wasm');
    expect(info.detail).toMatch(/wasm/);
    const diffs = compareDemo(result);
    console.log(`demoBackward on wasm (${info.detail}) vs onnxruntime-node CPU, max |diff|:`, diffs);
    expect(errors).toEqual([]);
  });

  for (const prefer of ['webgpu', 'wasm'] as const) {
    it(`feeds weights from the worker's weight store when a run omits them (${prefer})`, async () => {
      const model = serialize(demo.forward);
      const { x, W, b } = demo.feeds;
      const r = await runInBrowserWorker(page, model, { x }, { prefer, weights: { W, b }, clearWeights: true });
      expect(r.ep).toBe(prefer);
      const where = prefer === 'webgpu' ? 'gpu-buffer' : 'cpu';
      expect(r.weights).toEqual({
        W: { type: 'float32', dims: [3, 4], location: where },
        b: { type: 'float32', dims: [4], location: where },
      });
      const d1 = maxAbsDiff(r.outputs.y.data as Float32Array, expected.forward.y.data as Float32Array);
      expect(d1).toBeLessThan(TOL);

      // replacing a stored weight changes what later runs see; feeds still win over the store
      const W2 = { ...W, data: W.data.map((v) => -2 * v) };
      const r2 = await runInBrowserWorker(page, model, { x }, { prefer, weights: { W: W2 } });
      const want2 = (await runNode(cpu, demo.forward, { x, W: W2, b })).y.data as Float32Array;
      const d2 = maxAbsDiff(r2.outputs.y.data as Float32Array, want2);
      expect(d2).toBeLessThan(TOL);
      const r3 = await runInBrowserWorker(page, model, { x, W }, { prefer });
      expect(maxAbsDiff(r3.outputs.y.data as Float32Array, expected.forward.y.data as Float32Array)).toBeLessThan(TOL);

      // an input neither fed nor stored is an error that names it
      await expect(runInBrowserWorker(page, model, { x }, { prefer, clearWeights: true })).rejects.toThrow(/W, b.*weight store/);
      console.log(`weight store on ${prefer}: max |diff| ${d1.toExponential(2)}, after replacing W ${d2.toExponential(2)}`);
    });
  }

  it('runs a model with int64, uint8 and float32 inputs and several outputs of several types', async () => {
    const g = new GraphBuilder('mixed');
    const table = g.input('table', 'float32', [5, 3]);
    const idx = g.input('idx', 'int64', [4]);
    const mask = g.input('mask', 'uint8', [4]);
    const picked = g.mul(g.gather(table, idx), g.reshape(g.cast(mask, 'float32'), [4, 1]));
    g.output(picked, 'picked');
    g.output(g.reduceSum(picked, [0, 1], false), 'total');
    g.output(g.add(idx, g.scalar(10, 'int64')), 'shifted');
    g.output(g.cast(g.greater(g.reduceSum(picked, [1], false), g.scalar(0)), 'uint8'), 'positive');
    const feeds: Record<string, BrowserTensorIn> = {
      table: { type: 'float32', dims: [5, 3], data: Float32Array.from({ length: 15 }, (_, i) => Math.sin(i + 1)) },
      idx: { type: 'int64', dims: [4], data: [4, 0, 2, 2] },
      mask: { type: 'uint8', dims: [4], data: [1, 0, 1, 1] },
    };
    const want = await runNode(cpu, g, feeds);
    for (const prefer of ['webgpu', 'wasm'] as const) {
      const { outputs } = await runInBrowserWorker(page, serialize(g), feeds, { prefer });
      expect(Object.keys(outputs).sort()).toEqual(['picked', 'positive', 'shifted', 'total']);
      expect(outputs.picked.data).toBeInstanceOf(Float32Array);
      expect(outputs.shifted.data).toBeInstanceOf(BigInt64Array);
      expect(outputs.positive.data).toBeInstanceOf(Uint8Array);
      expect(outputs.total.dims).toEqual([]);
      for (const k of Object.keys(outputs)) {
        expect(outputs[k].type).toBe(want[k].type);
        expect(outputs[k].dims).toEqual([...want[k].dims]);
        expect(maxAbsDiff(outputs[k].data as WireArray as ArrayLike<number>, want[k].data as ArrayLike<number>)).toBeLessThan(
          TOL,
        );
      }
      expect(Array.from(outputs.shifted.data as BigInt64Array, Number)).toEqual([14, 10, 12, 12]);
    }
  });
});
