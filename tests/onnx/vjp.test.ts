/** Every VJP rule against central finite differences on ORT-node's CPU EP (float64 where ORT has the kernel). */
import { beforeAll, describe, expect, it } from 'vitest';
import type { DType } from '../../src/onnx/ir.js';
import { dequantizeInt4, quantizeInt4 } from '../../src/onnx/quant.js';
import { GraphBuilder } from '../../src/onnx/ops.js';
import { buildBackward } from '../../src/onnx/autodiff.js';
import { createNodeRuntime } from '../../src/runtime/node.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { type GradCase, gradCheck, randn } from './gradcheck.js';
import { rng } from '../helpers.js';

let rt: Runtime;
beforeAll(async () => {
  rt = await createNodeRuntime('cpu');
});

type Build = (g: GraphBuilder, d: DType) => GradCase;

const unary =
  (op: 'neg' | 'exp' | 'log' | 'sqrt' | 'reciprocal' | 'erf' | 'tanh' | 'sigmoid' | 'identity', positive = false): Build =>
  (g, d) => {
    const x = g.input('x', d, [3, 4]);
    return { wrt: [x], out: g[op](x), positive: positive ? ['x'] : [] };
  };

const binary =
  (op: 'add' | 'sub' | 'mul' | 'div'): Build =>
  (g, d) => {
    const a = g.input('a', d, [2, 3, 4]),
      b = g.input('b', d, [3, 1]); // broadcast on both sides
    return { wrt: [a, b], out: g[op](a, b), positive: op === 'div' ? ['b'] : [] };
  };

const int64 = (xs: number[]) => BigInt64Array.from(xs.map(BigInt));

const CASES: Record<string, { build: Build; float32Only?: boolean }> = {
  Add: { build: binary('add') },
  Sub: { build: binary('sub') },
  Mul: { build: binary('mul') },
  Div: { build: binary('div') },
  Pow: {
    build: (g, d) => {
      const x = g.input('x', d, [3, 4]);
      return { wrt: [x], out: g.pow(x, 2.5), positive: ['x'] };
    },
  },
  Neg: { build: unary('neg') },
  Exp: { build: unary('exp') },
  Log: { build: unary('log', true) },
  Sqrt: { build: unary('sqrt', true) },
  Reciprocal: { build: unary('reciprocal', true) },
  Erf: { build: unary('erf'), float32Only: true },
  Tanh: { build: unary('tanh') },
  Sigmoid: { build: unary('sigmoid') },
  Identity: { build: unary('identity') },
  Where: {
    build: (g, d) => {
      const c = g.input('c', d, [3, 1]),
        a = g.input('a', d, [3, 4]),
        b = g.input('b', d, [4]);
      return { wrt: [a, b], out: g.where(g.greater(c, 0), a, b) };
    },
  },
  MatMul: {
    build: (g, d) => {
      const a = g.input('a', d, [2, 3, 4]),
        b = g.input('b', d, [4, 5]); // b broadcast over the batch
      return { wrt: [a, b], out: g.matmul(a, b) };
    },
  },
  'MatMul (batched both)': {
    build: (g, d) => {
      const a = g.input('a', d, [2, 1, 3, 4]),
        b = g.input('b', d, [3, 4, 2]);
      return { wrt: [a, b], out: g.matmul(a, b) };
    },
  },
  Softmax: {
    build: (g, d) => {
      const x = g.input('x', d, [2, 5]);
      return { wrt: [x], out: g.softmax(x, -1) };
    },
  },
  'Softmax (axis 0)': {
    build: (g, d) => {
      const x = g.input('x', d, [3, 2]);
      return { wrt: [x], out: g.softmax(x, 0) };
    },
  },
  LogSoftmax: {
    build: (g, d) => {
      const x = g.input('x', d, [2, 5]);
      return { wrt: [x], out: g.logSoftmax(x, -1) };
    },
  },
  ReduceSum: {
    build: (g, d) => {
      const x = g.input('x', d, [2, 3, 4]);
      return { wrt: [x], out: g.reduceSum(x, [0, 2], false) };
    },
  },
  ReduceMean: {
    build: (g, d) => {
      const x = g.input('x', d, [2, 3, 4]);
      return { wrt: [x], out: g.reduceMean(x, [-1], true) };
    },
  },
  ReduceMax: {
    build: (g, d) => {
      const x = g.input('x', d, [3, 4]);
      return { wrt: [x], out: g.reduceMax(x, [1], true) };
    },
  },
  Reshape: {
    build: (g, d) => {
      const x = g.input('x', d, [2, 6]);
      return { wrt: [x], out: g.mul(g.reshape(x, [3, -1]), g.reshape(x, [3, 4])) };
    },
  },
  Transpose: {
    build: (g, d) => {
      const x = g.input('x', d, [2, 3, 4]);
      return { wrt: [x], out: g.transpose(x, [2, 0, 1]) };
    },
  },
  Concat: {
    build: (g, d) => {
      const a = g.input('a', d, [2, 3]),
        b = g.input('b', d, [2, 2]);
      return { wrt: [a, b], out: g.concat([a, b, a], 1) };
    },
  },
  Slice: {
    build: (g, d) => {
      const x = g.input('x', d, [4, 5]);
      return { wrt: [x], out: g.slice(x, [1, 2], [3, 5], [0, 1]) };
    },
  },
  Pad: {
    build: (g, d) => {
      const x = g.input('x', d, [2, 3]);
      return { wrt: [x], out: g.pad(x, [1, 0, 0, 2]) };
    },
  },
  Expand: {
    build: (g, d) => {
      const x = g.input('x', d, [3, 1]);
      return { wrt: [x], out: g.expand(x, [2, 3, 4]) };
    },
  },
  Cast: {
    float32Only: true,
    build: (g, d) => {
      const x = g.input('x', d, [3, 2]);
      const other: DType = d === 'float64' ? 'float32' : 'float64';
      return { wrt: [x], out: g.cast(g.mul(g.cast(x, other), g.cast(x, other)), d) };
    },
  },
  Gather: {
    build: (g, d) => {
      const t = g.input('t', d, [5, 3]),
        i = g.input('i', 'int64', [2, 3]);
      return { wrt: [t], out: g.gather(t, i, 0), fixed: { i: int64([0, 4, 4, 2, 0, 1]) } };
    },
  },
  GatherElements: {
    build: (g, d) => {
      const x = g.input('x', d, [3, 6]),
        i = g.input('i', 'int64', [3, 1]);
      return { wrt: [x], out: g.gatherElements(g.logSoftmax(x, -1), i, 1), fixed: { i: int64([5, 0, 2]) } };
    },
  },
  'GatherElements (2 picks)': {
    build: (g, d) => {
      const x = g.input('x', d, [2, 4]),
        i = g.input('i', 'int64', [2, 2]);
      return { wrt: [x], out: g.gatherElements(x, i, 1), fixed: { i: int64([1, 1, 3, 0]) } };
    },
  },
  Conv: {
    float32Only: true,
    build: (g, d) => {
      // patch embedding: stride == kernel
      const x = g.input('x', d, [1, 2, 4, 6]),
        w = g.input('w', d, [3, 2, 2, 2]),
        b = g.input('b', d, [3]);
      return { wrt: [x, w, b], out: g.conv(x, w, b, { strides: [2, 2] }) };
    },
  },
};

describe('VJP rules match finite differences (ORT CPU EP)', () => {
  for (const [name, c] of Object.entries(CASES)) {
    const dtype: DType = c.float32Only ? 'float32' : 'float64';
    it(`${name} (${dtype})`, async () => {
      const r = await gradCheck(rt, (g) => c.build(g, dtype));
      const tol = dtype === 'float64' ? 1e-7 : 2e-3;
      expect(r.checked).toBeGreaterThan(0);
      expect(r.maxGrad).toBeGreaterThan(0);
      expect(r.maxAbsErr, `max |analytic - fd| = ${r.maxAbsErr}, max |grad| = ${r.maxGrad}`).toBeLessThanOrEqual(
        tol * Math.max(1, r.maxGrad),
      );
    });
  }

  it('MatMulNBits (frozen int4): dA uses exactly the dequantized weights the forward uses', async () => {
    const N = 6,
      K = 64;
    const q = quantizeInt4(randn(rng(3), N * K), N, K, { blockSize: 32 });
    const r = await gradCheck(rt, (g) => {
      const a = g.input('a', 'float32', [3, K]);
      const bq = g.input('bq', 'uint8', [N, K / 32, 16]);
      const s = g.input('s', 'float32', [N * (K / 32)]);
      const z = g.input('z', 'uint8', [N, 1]);
      return {
        wrt: [a],
        out: g.matMulNBits(a, bq, s, z, { K, N, blockSize: 32 }),
        fixed: { bq: q.packed, s: q.scales, z: q.zeroPoints! },
      };
    });
    // the objective is linear in A, so finite differences are exact up to float32 rounding
    expect(r.maxAbsErr).toBeLessThanOrEqual(2e-3 * Math.max(1, r.maxGrad));
  });
});

describe('int4 weights', () => {
  it('quantize/dequantize round trip is within half a step, and MatMulNBits multiplies by exactly dequant(B)', async () => {
    const N = 8,
      K = 96;
    const w = randn(rng(5), N * K);
    for (const symmetric of [false, true]) {
      const q = quantizeInt4(w, N, K, { blockSize: 32, symmetric });
      const deq = dequantizeInt4(q);
      for (let n = 0; n < N; n++)
        for (let b = 0; b < K / 32; b++) {
          const s = q.scales[n * (K / 32) + b];
          for (let i = 0; i < 32; i++) {
            const k = n * K + b * 32 + i;
            expect(Math.abs(deq[k] - w[k])).toBeLessThanOrEqual(s * (symmetric ? 1 : 0.5) + 1e-6);
          }
        }
      const g = new GraphBuilder('nbits');
      const a = g.input('a', 'float32', [2, K]);
      const bq = g.input('bq', 'uint8', [N, K / 32, 16]),
        sc = g.input('s', 'float32', [N * (K / 32)]);
      const z = q.zeroPoints ? g.input('z', 'uint8', [N, 2]) : null;
      const y = g.output(g.matMulNBits(a, bq, sc, z, { K, N, blockSize: 32 }));
      const bw = buildBackward(g, { objective: { weighted: [y] }, wrt: [a], keep: [y] });
      const av = Float32Array.from(randn(rng(6), 2 * K)),
        seed = Float32Array.from(randn(rng(7), 2 * N));
      const feeds: Record<string, ReturnType<Runtime['tensor']>> = {
        a: rt.tensor('float32', av, [2, K]),
        bq: rt.tensor('uint8', q.packed, [N, K / 32, 16]),
        s: rt.tensor('float32', q.scales, [N * (K / 32)]),
        [bw.seeds[y.name]]: rt.tensor('float32', seed, [2, N]),
      };
      if (z) feeds.z = rt.tensor('uint8', q.zeroPoints!, [N, 2]);
      const sess = await rt.session(bw.graph);
      const out = await sess.run(feeds);
      const ga = out[bw.grads.a].data as Float32Array,
        yv = out[y.name].data as Float32Array;
      let errY = 0,
        errG = 0;
      for (let r = 0; r < 2; r++) {
        for (let n = 0; n < N; n++) {
          let acc = 0;
          for (let k = 0; k < K; k++) acc += av[r * K + k] * deq[n * K + k];
          errY = Math.max(errY, Math.abs(acc - yv[r * N + n]));
        }
        for (let k = 0; k < K; k++) {
          let acc = 0;
          for (let n = 0; n < N; n++) acc += seed[r * N + n] * deq[n * K + k];
          errG = Math.max(errG, Math.abs(acc - ga[r * K + k]));
        }
      }
      expect(errY).toBeLessThan(1e-4);
      expect(errG).toBeLessThan(1e-5);
    }
  });
});
