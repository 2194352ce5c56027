/**
 * The engine core end to end on a two-layer transformer block with LoRA: gradients of Σ w_t·log p(target_t)
 * against finite differences (float64, then the int4-frozen variant in float32), and the same backward graph
 * on the WebGPU EP (Dawn; SwiftShader here) against the CPU EP.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Value } from '../../src/onnx/ir.js';
import { attention, geluErf, geluTanh, layerNorm, linear, mergeHeads, splitHeads } from '../../src/onnx/nn.js';
import { createNodeRuntime } from '../../src/runtime/node.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { gradCheck } from './gradcheck.js';
import { TINY, buildTinyDecoder, runBlockBackward } from './tiny-decoder.js';

let cpu: Runtime;
beforeAll(async () => {
  cpu = await createNodeRuntime('cpu');
});

describe('two-layer decoder block with LoRA: gradients equal finite differences', () => {
  it('LoRA A and B of every linear (float64)', async () => {
    const r = await gradCheck(
      cpu,
      () => {
        const d = buildTinyDecoder(TINY);
        return { graph: d.g, wrt: d.lora, out: d.out, fixed: d.feeds };
      },
      { sample: 4 },
    );
    expect(r.checked).toBeGreaterThanOrEqual(4 * 28);
    expect(r.maxAbsErr).toBeLessThan(1e-7 * Math.max(1, r.maxGrad));
  });

  it('every weight trainable: embeddings, norms, base linears, lm_head (float64)', async () => {
    const r = await gradCheck(
      cpu,
      () => {
        const d = buildTinyDecoder(TINY);
        return { graph: d.g, wrt: [...d.base, ...d.lora], out: d.out, fixed: d.feeds };
      },
      { sample: 3 },
    );
    expect(r.maxAbsErr).toBeLessThan(1e-7 * Math.max(1, r.maxGrad));
  });

  it('int4-frozen base linears: LoRA gradients through MatMulNBits (float32)', async () => {
    const r = await gradCheck(
      cpu,
      () => {
        const d = buildTinyDecoder({ ...TINY, int4: true, dtype: 'float32' });
        return { graph: d.g, wrt: d.lora, out: d.out, fixed: d.feeds };
      },
      { sample: 3, h: 1e-2 },
    );
    expect(r.maxAbsErr).toBeLessThan(5e-3 * Math.max(1, r.maxGrad));
  });
});

describe('the same backward graph on the WebGPU EP in Node (Dawn)', () => {
  for (const int4 of [false, true]) {
    it(`${int4 ? 'int4-frozen' : 'float32'} block: WebGPU matches the CPU EP to 1e-4`, async () => {
      const gpu = await createNodeRuntime('webgpu');
      const [a, b] = [await runBlockBackward(cpu, int4), await runBlockBackward(gpu, int4)];
      expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
      let err = 0,
        mag = 0;
      for (const k of Object.keys(a)) {
        for (let i = 0; i < a[k].length; i++) {
          err = Math.max(err, Math.abs(a[k][i] - b[k][i]));
          mag = Math.max(mag, Math.abs(a[k][i]));
        }
      }
      expect(mag).toBeGreaterThan(0.01);
      expect(err).toBeLessThan(1e-4);
    }, 120_000);
  }
});

describe('SigLIP-style vision layer compositions', () => {
  it('LayerNorm, GELU (tanh and erf) and unmasked attention (float64)', async () => {
    const r = await gradCheck(
      cpu,
      (g) => {
        const x = g.input('x', 'float64', [1, 5, 8]);
        const lw = g.input('ln_w', 'float64', [8]),
          lb = g.input('ln_b', 'float64', [8]);
        const wq = g.input('wq', 'float64', [8, 8]),
          wk = g.input('wk', 'float64', [8, 8]),
          wv = g.input('wv', 'float64', [8, 8]);
        const h = layerNorm(g, x, lw, lb, 1e-6);
        const heads = (w: Value) => splitHeads(g, linear(g, h, { weight: w }), 2);
        const a = mergeHeads(g, attention(g, heads(wq), heads(wk), heads(wv), null));
        return { wrt: [x, lw, lb, wq, wk, wv], out: g.add(geluTanh(g, a), g.mul(g.tanh(a), 0.5)) };
      },
      { sample: 8 },
    );
    expect(r.maxAbsErr).toBeLessThan(1e-7 * Math.max(1, r.maxGrad));
  });

  it('patch embedding (Conv, stride = kernel) into GELU-erf (float32)', async () => {
    const r = await gradCheck(
      cpu,
      (g) => {
        const px = g.input('pixels', 'float32', [1, 3, 8, 8]);
        const w = g.input('patch_w', 'float32', [4, 3, 4, 4]),
          b = g.input('patch_b', 'float32', [4]);
        return { wrt: [px, w, b], out: geluErf(g, g.conv(px, w, b, { strides: [4, 4] })) };
      },
      { sample: 10 },
    );
    expect(r.maxAbsErr).toBeLessThan(3e-3 * Math.max(1, r.maxGrad));
  });
});
