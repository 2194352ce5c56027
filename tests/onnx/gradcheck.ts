/**
 * Finite-difference checks of backward graphs on a real ORT session: the backward graph's gradient of
 * Σ <w, y> against central differences of the forward graph, element by element.
 */
import type { Tensor } from 'onnxruntime-common';
import type { DType, TypedArray, Value } from '../../src/onnx/ir.js';
import { numel } from '../../src/onnx/ir.js';
import { GraphBuilder } from '../../src/onnx/ops.js';
import { buildBackward } from '../../src/onnx/autodiff.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { rng } from '../helpers.js';

export interface GradCase {
  /** the graph, when the case built its own instead of using the one it was given */
  graph?: GraphBuilder;
  wrt: Value[];
  out: Value;
  /** data for inputs that must not be random (indices, masks, quantized blobs) */
  fixed?: Record<string, TypedArray>;
  /** float inputs drawn from (0.5, 2) instead of N(0, 1) */
  positive?: string[];
}

export function randn(r: () => number, n: number): number[] {
  return Array.from({ length: n }, () => {
    const u = Math.max(r(), 1e-12),
      v = r();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  });
}

const ctor = (d: DType, xs: number[]): TypedArray => (d === 'float64' ? Float64Array.from(xs) : Float32Array.from(xs));

export function toTensor(rt: Runtime, v: Value, data: TypedArray): Tensor {
  return rt.tensor(v.dtype === 'bool' ? 'bool' : (v.dtype as Tensor.Type), data as Tensor.DataType, v.shape);
}

export interface GradResult {
  maxAbsErr: number;
  maxGrad: number;
  checked: number;
  analytic: Record<string, Float64Array>;
}

export async function gradCheck(
  rt: Runtime,
  build: (g: GraphBuilder) => GradCase,
  o: { h?: number; seed?: number; /** check this many random elements per tensor instead of all */ sample?: number } = {},
): Promise<GradResult> {
  const given = new GraphBuilder('gradcheck');
  const spec = build(given);
  const g = spec.graph ?? given;
  if (!g.outputs.includes(spec.out)) g.output(spec.out);
  const r = rng(o.seed ?? 7);
  const feeds: Record<string, TypedArray> = {};
  for (const v of g.inputs) {
    if (spec.fixed?.[v.name]) {
      feeds[v.name] = spec.fixed[v.name];
      continue;
    }
    const xs = spec.positive?.includes(v.name)
      ? Array.from({ length: numel(v.shape) }, () => 0.5 + 1.5 * r())
      : randn(r, numel(v.shape));
    feeds[v.name] = ctor(v.dtype, xs);
  }
  const dtype = spec.out.dtype;
  const h = o.h ?? (dtype === 'float64' ? 1e-6 : 1e-2);
  const w = ctor(dtype, randn(r, numel(spec.out.shape)));

  const sessionOpts = { optimization: dtype === 'float64' ? ('basic' as const) : ('all' as const) };
  const fwd = await rt.session(g, sessionOpts);
  const bw = buildBackward(g, { objective: { weighted: [spec.out] }, wrt: spec.wrt });
  const bsess = await rt.session(bw.graph, sessionOpts);
  const tensors = (f: Record<string, TypedArray>) =>
    Object.fromEntries(g.inputs.map((v) => [v.name, toTensor(rt, v, f[v.name])]));
  const seedV = bw.graph.inputs.find((v) => v.name === bw.seeds[spec.out.name])!;
  const res = await bsess.run({ ...tensors(feeds), [seedV.name]: toTensor(rt, seedV, w) });

  const objective = async (f: Record<string, TypedArray>) => {
    const y = (await fwd.run(tensors(f)))[spec.out.name].data as TypedArray;
    let s = 0;
    for (let i = 0; i < y.length; i++) s += Number(y[i]) * Number(w[i]);
    return s;
  };

  let maxAbsErr = 0,
    maxGrad = 0,
    checked = 0;
  const analytic: Record<string, Float64Array> = {};
  for (const v of spec.wrt) {
    const an = Float64Array.from(res[bw.grads[v.name]].data as ArrayLike<number>);
    analytic[v.name] = an;
    const idx =
      o.sample && o.sample < an.length ? Array.from({ length: o.sample }, () => Math.floor(r() * an.length)) : [...an.keys()];
    for (const i of idx) {
      const plus = { ...feeds, [v.name]: feeds[v.name].slice() as TypedArray };
      const minus = { ...feeds, [v.name]: feeds[v.name].slice() as TypedArray };
      (plus[v.name] as Float64Array)[i] += h;
      (minus[v.name] as Float64Array)[i] -= h;
      const fd = ((await objective(plus)) - (await objective(minus))) / (2 * h);
      maxAbsErr = Math.max(maxAbsErr, Math.abs(fd - an[i]));
      maxGrad = Math.max(maxGrad, Math.abs(an[i]), Math.abs(fd));
      checked++;
    }
  }
  await fwd.release();
  await bsess.release();
  return { maxAbsErr, maxGrad, checked, analytic };
}
