/**
 * One builder method per ONNX operator (opset 18), each checking its inputs and inferring the output's
 * dtype and static shape. Layers (RMSNorm, RoPE, attention, ...) are compositions in nn.ts.
 */
import { type DType, Graph, GraphError, type Value, broadcastShapes, isFloat, numel } from './ir.js';

export const OPSET = 18;
export const MS_DOMAIN = 'com.microsoft';

export const ONNX_DTYPE: Record<DType, number> = {
  float32: 1,
  uint8: 2,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
};

const norm = (axis: number, rank: number) => {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new GraphError(`axis ${axis} is out of range for rank ${rank}`);
  return a;
};

export class GraphBuilder extends Graph {
  private num(x: Value | number, like: Value): Value {
    return typeof x === 'number' ? this.scalar(x, like.dtype) : x;
  }

  private binary(op: string, a: Value, bIn: Value | number, outType?: DType): Value {
    const b = this.num(bIn, a);
    if (a.dtype !== b.dtype) throw new GraphError(`${op}: dtypes differ (${a.dtype} vs ${b.dtype}) for ${a.name}, ${b.name}`);
    return this.node(op, [a, b], [{ dtype: outType ?? a.dtype, shape: broadcastShapes(a.shape, b.shape) }])[0];
  }

  private unary(op: string, x: Value, attrs = {}): Value {
    return this.node(op, [x], [{ dtype: x.dtype, shape: x.shape }], attrs)[0];
  }

  add(a: Value, b: Value | number) {
    return this.binary('Add', a, b);
  }
  sub(a: Value, b: Value | number) {
    return this.binary('Sub', a, b);
  }
  mul(a: Value, b: Value | number) {
    return this.binary('Mul', a, b);
  }
  div(a: Value, b: Value | number) {
    return this.binary('Div', a, b);
  }
  pow(a: Value, b: Value | number) {
    return this.binary('Pow', a, b);
  }
  equal(a: Value, b: Value | number) {
    return this.binary('Equal', a, b, 'bool');
  }
  less(a: Value, b: Value | number) {
    return this.binary('Less', a, b, 'bool');
  }
  greater(a: Value, b: Value | number) {
    return this.binary('Greater', a, b, 'bool');
  }

  neg(x: Value) {
    return this.unary('Neg', x);
  }
  exp(x: Value) {
    return this.unary('Exp', x);
  }
  log(x: Value) {
    return this.unary('Log', x);
  }
  sqrt(x: Value) {
    return this.unary('Sqrt', x);
  }
  erf(x: Value) {
    return this.unary('Erf', x);
  }
  tanh(x: Value) {
    return this.unary('Tanh', x);
  }
  sigmoid(x: Value) {
    return this.unary('Sigmoid', x);
  }
  reciprocal(x: Value) {
    return this.unary('Reciprocal', x);
  }
  identity(x: Value) {
    return this.unary('Identity', x);
  }

  where(cond: Value, a: Value | number, b: Value | number): Value {
    const like = typeof a === 'number' ? (b as Value) : a;
    const av = this.num(a, like),
      bv = this.num(b, like);
    if (cond.dtype !== 'bool') throw new GraphError(`Where: condition ${cond.name} must be bool, not ${cond.dtype}`);
    if (av.dtype !== bv.dtype) throw new GraphError(`Where: branch dtypes differ (${av.dtype} vs ${bv.dtype})`);
    return this.node('Where', [cond, av, bv], [{ dtype: av.dtype, shape: broadcastShapes(cond.shape, av.shape, bv.shape) }])[0];
  }

  matmul(a: Value, b: Value): Value {
    if (a.dtype !== b.dtype) throw new GraphError(`MatMul: dtypes differ (${a.dtype} vs ${b.dtype})`);
    if (a.shape.length < 2 || b.shape.length < 2) throw new GraphError('MatMul: this IR takes rank >= 2 operands');
    const [m, k] = a.shape.slice(-2),
      [k2, n] = b.shape.slice(-2);
    if (k !== k2) throw new GraphError(`MatMul: inner dims differ: ${a.name} [${a.shape}] x ${b.name} [${b.shape}]`);
    const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
    return this.node('MatMul', [a, b], [{ dtype: a.dtype, shape: [...batch, m, n] }])[0];
  }

  softmax(x: Value, axis = -1) {
    return this.unary('Softmax', x, { axis: norm(axis, x.shape.length) });
  }
  logSoftmax(x: Value, axis = -1) {
    return this.unary('LogSoftmax', x, { axis: norm(axis, x.shape.length) });
  }

  private reduce(op: string, x: Value, axes: number[], keepdims: boolean): Value {
    const ax = axes.map((a) => norm(a, x.shape.length));
    const shape = keepdims ? x.shape.map((d, i) => (ax.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !ax.includes(i));
    return this.node(op, [x, this.ints(ax)], [{ dtype: x.dtype, shape }], { keepdims: keepdims ? 1 : 0 })[0];
  }

  reduceSum(x: Value, axes: number[], keepdims = true) {
    return this.reduce('ReduceSum', x, axes, keepdims);
  }
  reduceMean(x: Value, axes: number[], keepdims = true) {
    return this.reduce('ReduceMean', x, axes, keepdims);
  }
  reduceMax(x: Value, axes: number[], keepdims = true) {
    return this.reduce('ReduceMax', x, axes, keepdims);
  }

  reshape(x: Value, shape: readonly number[]): Value {
    const known = shape.filter((d) => d !== -1);
    const infer = shape.indexOf(-1);
    const resolved = shape.map((d) => (d === -1 ? numel(x.shape) / numel(known) : d));
    if (infer >= 0 && !Number.isInteger(resolved[infer])) throw new GraphError(`Reshape: [${x.shape}] cannot become [${shape}]`);
    if (numel(resolved) !== numel(x.shape))
      throw new GraphError(`Reshape: [${x.shape}] has ${numel(x.shape)} values, [${resolved}] needs ${numel(resolved)}`);
    if (resolved.every((d, i) => d === x.shape[i]) && resolved.length === x.shape.length) return x;
    return this.node('Reshape', [x, this.ints(resolved)], [{ dtype: x.dtype, shape: resolved }])[0];
  }

  transpose(x: Value, perm: number[]): Value {
    if (perm.length !== x.shape.length) throw new GraphError(`Transpose: perm [${perm}] for rank ${x.shape.length}`);
    if (perm.every((p, i) => p === i)) return x;
    return this.node('Transpose', [x], [{ dtype: x.dtype, shape: perm.map((p) => x.shape[p]) }], { perm })[0];
  }

  concat(xs: Value[], axis: number): Value {
    if (xs.length === 1) return xs[0];
    const a = norm(axis, xs[0].shape.length);
    const shape = [...xs[0].shape];
    shape[a] = xs.reduce((s, x) => s + x.shape[a], 0);
    return this.node('Concat', xs, [{ dtype: xs[0].dtype, shape }], { axis: a })[0];
  }

  /** static Slice with unit steps */
  slice(x: Value, starts: number[], ends: number[], axes: number[]): Value {
    const shape = [...x.shape];
    const ax = axes.map((a) => norm(a, x.shape.length));
    const st: number[] = [],
      en: number[] = [];
    ax.forEach((a, i) => {
      const d = x.shape[a];
      const s = Math.min(Math.max(starts[i] < 0 ? starts[i] + d : starts[i], 0), d);
      const e = Math.min(Math.max(ends[i] < 0 ? ends[i] + d : ends[i], 0), d);
      shape[a] = Math.max(0, e - s);
      st.push(s);
      en.push(e);
    });
    return this.node('Slice', [x, this.ints(st), this.ints(en), this.ints(ax)], [{ dtype: x.dtype, shape }])[0];
  }

  /** constant-mode Pad; pads = [begin_0, ..., begin_n, end_0, ..., end_n] */
  pad(x: Value, pads: number[]): Value {
    const r = x.shape.length;
    const shape = x.shape.map((d, i) => d + pads[i] + pads[i + r]);
    return this.node('Pad', [x, this.ints(pads)], [{ dtype: x.dtype, shape }], { mode: 'constant' })[0];
  }

  gather(data: Value, indices: Value, axis = 0): Value {
    const a = norm(axis, data.shape.length);
    const shape = [...data.shape.slice(0, a), ...indices.shape, ...data.shape.slice(a + 1)];
    return this.node('Gather', [data, indices], [{ dtype: data.dtype, shape }], { axis: a })[0];
  }

  gatherElements(data: Value, indices: Value, axis: number): Value {
    return this.node('GatherElements', [data, indices], [{ dtype: data.dtype, shape: indices.shape }], {
      axis: norm(axis, data.shape.length),
    })[0];
  }

  cast(x: Value, to: DType): Value {
    if (x.dtype === to) return x;
    return this.node('Cast', [x], [{ dtype: to, shape: x.shape }], { to: ONNX_DTYPE[to] })[0];
  }

  expand(x: Value, shape: readonly number[]): Value {
    const out = broadcastShapes(x.shape, shape);
    if (out.length === x.shape.length && out.every((d, i) => d === x.shape[i])) return x;
    return this.node('Expand', [x, this.ints(shape as number[])], [{ dtype: x.dtype, shape: out }])[0];
  }

  /** 2-D convolution, NCHW, no dilation */
  conv(x: Value, w: Value, b: Value | null, o: { strides: [number, number]; pads?: [number, number, number, number] }): Value {
    const [n, c, h, wd] = x.shape,
      [m, cw, kh, kw] = w.shape;
    if (c !== cw) throw new GraphError(`Conv: input has ${c} channels, kernel ${w.name} expects ${cw}`);
    const pads = o.pads ?? [0, 0, 0, 0];
    const oh = Math.floor((h + pads[0] + pads[2] - kh) / o.strides[0]) + 1;
    const ow = Math.floor((wd + pads[1] + pads[3] - kw) / o.strides[1]) + 1;
    return this.node('Conv', b ? [x, w, b] : [x, w], [{ dtype: x.dtype, shape: [n, m, oh, ow] }], {
      strides: o.strides,
      pads,
      kernel_shape: [kh, kw],
      dilations: [1, 1],
      group: 1,
    })[0];
  }

  /**
   * com.microsoft MatMulNBits: Y = A · dequant(B)ᵀ with B stored as [N, K/block, block·bits/8] uint8 blocks,
   * scales [N·K/block] and optional packed zero points (quant.ts makes these from float weights).
   */
  matMulNBits(
    a: Value,
    bq: Value,
    scales: Value,
    zeroPoints: Value | null,
    o: { K: number; N: number; blockSize: number; bits?: number },
  ): Value {
    if (a.shape[a.shape.length - 1] !== o.K)
      throw new GraphError(`MatMulNBits: ${a.name} has last dim ${a.shape.at(-1)}, K is ${o.K}`);
    const inputs = zeroPoints ? [a, bq, scales, zeroPoints] : [a, bq, scales];
    return this.node(
      'MatMulNBits',
      inputs,
      [{ dtype: a.dtype, shape: [...a.shape.slice(0, -1), o.N] }],
      { K: o.K, N: o.N, bits: o.bits ?? 4, block_size: o.blockSize },
      MS_DOMAIN,
    )[0];
  }

  /** zeros of a shape, as Expand of a scalar (no large initializer) */
  zeros(shape: readonly number[], dtype: DType = 'float32'): Value {
    return this.node('Expand', [this.scalar(0, dtype), this.ints(shape as number[])], [{ dtype, shape }])[0];
  }

  /** the K x K identity, built from two small int64 ranges */
  eye(k: number, dtype: DType = 'float32'): Value {
    const r = this.constant(
      BigInt64Array.from({ length: k }, (_, i) => BigInt(i)),
      [k],
      'int64',
      'range',
    );
    const rows = this.reshape(r, [k, 1]),
      cols = this.reshape(r, [1, k]);
    return this.cast(this.equal(rows, cols), dtype);
  }

  /** a copy that shares the forward's values, nodes and constants, without its outputs: backward graphs grow from it */
  cloneForward(name = `${this.name}_backward`): GraphBuilder {
    const c = new GraphBuilder(name);
    c.adopt(this);
    return c;
  }

  assertFloat(x: Value, who: string): void {
    if (!isFloat(x.dtype)) throw new GraphError(`${who}: ${x.name} must be a float tensor, not ${x.dtype}`);
  }
}
