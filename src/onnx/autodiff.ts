/**
 * Reverse-mode autodiff over the IR: given a forward graph, an objective (a scalar output, or a weighted sum
 * Σ <w_i, y_i> of outputs with the weights as new graph inputs) and the inputs to differentiate, it emits a
 * backward graph that recomputes the forward and returns the gradients. Only plain ONNX operators that the
 * ORT WebGPU EP implements appear in it: onnxruntime-web has no training package and no *Grad ops.
 *
 * One VJP rule per operator, each a few lines, in the spirit of llm.c's forward/backward pairs. Rules get the
 * node (so its inputs and outputs are at hand: the backward graph contains the forward) and the gradients of
 * its outputs, and return gradients for the inputs that need one.
 */
import { type DType, GraphError, type Node, type Value, isFloat, numel } from './ir.js';
import { GraphBuilder } from './ops.js';

type Vjp = (g: GraphBuilder, n: Node, dy: Value, need: boolean[]) => Array<Value | null>;

/** sum a broadcast gradient back down to the shape of the operand it came from */
export function unbroadcast(g: GraphBuilder, grad: Value, shape: readonly number[]): Value {
  let d = grad;
  const extra = d.shape.length - shape.length;
  if (extra > 0) d = g.reduceSum(d, [...Array(extra).keys()], false);
  const axes = shape.map((s, i) => (s === 1 && d.shape[i] !== 1 ? i : -1)).filter((i) => i >= 0);
  if (axes.length) d = g.reduceSum(d, axes, true);
  return g.reshape(d, shape);
}

const lastTwoT = (g: GraphBuilder, x: Value) => {
  const r = x.shape.length;
  return g.transpose(x, [...Array(r - 2).keys(), r - 1, r - 2]);
};

const [A, B] = [0, 1];
const inp = (n: Node, i: number) => n.inputs[i] as Value;
const out = (n: Node) => n.outputs[0];

/** the axes an int64 constant input holds (reductions, Slice); read back from the node's initializer */
function intsOf(g: GraphBuilder, v: Value): number[] {
  const init = g.initializers.find((i) => i.value.name === v.name);
  if (!init) throw new GraphError(`${v.name} must be a constant for differentiation`);
  return Array.from(init.data as BigInt64Array, Number);
}

export const VJP: Record<string, Vjp> = {
  Identity: (_g, _n, dy) => [dy],
  Add: (g, n, dy, need) => [
    need[A] ? unbroadcast(g, dy, inp(n, A).shape) : null,
    need[B] ? unbroadcast(g, dy, inp(n, B).shape) : null,
  ],
  Sub: (g, n, dy, need) => [
    need[A] ? unbroadcast(g, dy, inp(n, A).shape) : null,
    need[B] ? unbroadcast(g, g.neg(dy), inp(n, B).shape) : null,
  ],
  Mul: (g, n, dy, need) => [
    need[A] ? unbroadcast(g, g.mul(dy, inp(n, B)), inp(n, A).shape) : null,
    need[B] ? unbroadcast(g, g.mul(dy, inp(n, A)), inp(n, B).shape) : null,
  ],
  // y = a / b:  da = dy / b,  db = -dy · y / b
  Div: (g, n, dy, need) => [
    need[A] ? unbroadcast(g, g.div(dy, inp(n, B)), inp(n, A).shape) : null,
    need[B] ? unbroadcast(g, g.neg(g.div(g.mul(dy, out(n)), inp(n, B))), inp(n, B).shape) : null,
  ],
  // y = a^p (p not differentiated):  da = dy · p · a^(p-1)
  Pow: (g, n, dy, need) => {
    if (need[B]) throw new GraphError('Pow: gradient with respect to the exponent is not supported');
    const p = inp(n, B);
    return [unbroadcast(g, g.mul(g.mul(dy, p), g.pow(inp(n, A), g.sub(p, 1))), inp(n, A).shape), null];
  },
  Neg: (g, _n, dy) => [g.neg(dy)],
  Exp: (g, n, dy) => [g.mul(dy, out(n))],
  Log: (g, n, dy) => [g.div(dy, inp(n, A))],
  Sqrt: (g, n, dy) => [g.div(g.mul(dy, 0.5), out(n))],
  Reciprocal: (g, n, dy) => [g.neg(g.mul(dy, g.mul(out(n), out(n))))],
  // d erf(x) = 2/√π · exp(-x²)
  Erf: (g, n, dy) => {
    const x = inp(n, A);
    return [g.mul(dy, g.mul(g.exp(g.neg(g.mul(x, x))), 2 / Math.sqrt(Math.PI)))];
  },
  Tanh: (g, n, dy) => [g.mul(dy, g.sub(g.scalar(1, dy.dtype), g.mul(out(n), out(n))))],
  Sigmoid: (g, n, dy) => [g.mul(dy, g.mul(out(n), g.sub(g.scalar(1, dy.dtype), out(n))))],
  Where: (g, n, dy, need) => [
    null,
    need[1] ? unbroadcast(g, g.where(inp(n, 0), dy, 0), inp(n, 1).shape) : null,
    need[2] ? unbroadcast(g, g.where(inp(n, 0), 0, dy), inp(n, 2).shape) : null,
  ],
  // y = a @ b:  da = dy @ bᵀ,  db = aᵀ @ dy (summed over broadcast batch dims)
  MatMul: (g, n, dy, need) => [
    need[A] ? unbroadcast(g, g.matmul(dy, lastTwoT(g, inp(n, B))), inp(n, A).shape) : null,
    need[B] ? unbroadcast(g, g.matmul(lastTwoT(g, inp(n, A)), dy), inp(n, B).shape) : null,
  ],
  // y = softmax(x):  dx = y ⊙ (dy - Σ dy ⊙ y)
  Softmax: (g, n, dy) => {
    const y = out(n),
      axis = n.attrs.axis as number;
    return [g.mul(y, g.sub(dy, g.reduceSum(g.mul(dy, y), [axis])))];
  },
  // y = log softmax(x):  dx = dy - exp(y) · Σ dy
  LogSoftmax: (g, n, dy) => {
    const y = out(n),
      axis = n.attrs.axis as number;
    return [g.sub(dy, g.mul(g.exp(y), g.reduceSum(dy, [axis])))];
  },
  ReduceSum: (g, n, dy) => [reduceBack(g, n, dy, 1)],
  ReduceMean: (g, n, dy) => {
    const x = inp(n, A);
    const count = intsOf(g, inp(n, 1)).reduce((c, a) => c * x.shape[a], 1);
    return [reduceBack(g, n, dy, 1 / count)];
  },
  // ties share the gradient equally
  ReduceMax: (g, n, dy) => {
    const x = inp(n, A),
      keep = keepShape(g, n);
    const mask = g.cast(g.equal(x, g.reshape(out(n), keep)), x.dtype);
    return [g.div(g.mul(mask, g.reshape(dy, keep)), g.reduceSum(mask, intsOf(g, inp(n, 1))))];
  },
  Reshape: (g, n, dy) => [g.reshape(dy, inp(n, A).shape)],
  Transpose: (g, n, dy) => {
    const perm = n.attrs.perm as number[];
    const inv = perm.map((_, i) => perm.indexOf(i));
    return [g.transpose(dy, inv)];
  },
  Concat: (g, n, dy, need) => {
    const axis = n.attrs.axis as number;
    let at = 0;
    return n.inputs.map((x, i) => {
      const v = x as Value,
        start = at;
      at += v.shape[axis];
      return need[i] ? g.slice(dy, [start], [start + v.shape[axis]], [axis]) : null;
    });
  },
  Slice: (g, n, dy) => {
    const x = inp(n, A);
    const starts = intsOf(g, inp(n, 1)),
      ends = intsOf(g, inp(n, 2)),
      axes = intsOf(g, inp(n, 3));
    const r = x.shape.length,
      pads = new Array(2 * r).fill(0);
    axes.forEach((a, i) => {
      pads[a] = starts[i];
      pads[a + r] = x.shape[a] - ends[i];
    });
    return [g.pad(dy, pads), null, null, null];
  },
  Pad: (g, n, dy) => {
    const x = inp(n, A),
      pads = intsOf(g, inp(n, 1)),
      r = x.shape.length;
    const axes = [...Array(r).keys()];
    return [
      g.slice(
        dy,
        axes.map((a) => pads[a]),
        axes.map((a) => pads[a] + x.shape[a]),
        axes,
      ),
      null,
    ];
  },
  Expand: (g, n, dy) => [unbroadcast(g, dy, inp(n, A).shape), null],
  Cast: (g, n, dy) => [isFloat(inp(n, A).dtype) ? g.cast(dy, inp(n, A).dtype) : null],
  // embedding lookup: dTable = onehot(indices)ᵀ @ dy, with the one-hot from Equal against a range (no ScatterND)
  Gather: (g, n, dy, need) => {
    if ((n.attrs.axis as number) !== 0) throw new GraphError('Gather: only axis 0 is differentiable');
    if (!need[A]) return [null, null];
    const table = inp(n, A),
      idx = inp(n, B);
    const V = table.shape[0],
      N = numel(idx.shape),
      rest = table.shape.slice(1);
    const oneHot = g.cast(g.equal(g.reshape(g.cast(idx, 'int64'), [N, 1]), arange(g, V, [1, V])), table.dtype);
    const d = g.matmul(g.transpose(oneHot, [1, 0]), g.reshape(dy, [N, numel(rest)]));
    return [g.reshape(d, table.shape), null];
  },
  // picks along `axis`: scatter dy back through a one-hot of the indices
  GatherElements: (g, n, dy) => {
    const data = inp(n, A),
      idx = g.cast(inp(n, B), 'int64'),
      axis = n.attrs.axis as number;
    const r = data.shape.length,
      D = data.shape[axis];
    const rangeShape = data.shape.map((_, i) => (i === axis ? D : 1));
    const range = arange(g, D, rangeShape);
    let acc: Value | null = null;
    for (let j = 0; j < idx.shape[axis]; j++) {
      const ij = idx.shape[axis] === 1 ? idx : g.slice(idx, [j], [j + 1], [axis]);
      const dj = dy.shape[axis] === 1 ? dy : g.slice(dy, [j], [j + 1], [axis]);
      const term = g.where(g.equal(ij, range), dj, 0);
      acc = acc ? g.add(acc, term) : term;
    }
    void r;
    return [unbroadcast(g, acc as Value, data.shape), null];
  },
  Conv: convVjp,
  // frozen int4 linear: dA = dy @ W, with W read out of MatMulNBits itself (A = I) so the backward uses
  // exactly the dequantized values the forward multiplies by (WebGPU's DequantizeLinear has no int4)
  MatMulNBits: (g, n, dy, need) => {
    if (need.slice(1).some(Boolean)) throw new GraphError('MatMulNBits: quantized weights are frozen; no gradient for them');
    const K = n.attrs.K as number,
      N = n.attrs.N as number;
    const wt = g.matMulNBits(g.eye(K, dy.dtype), inp(n, 1), inp(n, 2), (n.inputs[3] ?? null) as Value | null, {
      K,
      N,
      blockSize: n.attrs.block_size as number,
      bits: n.attrs.bits as number,
    }); // [K, N] = Wᵀ
    return [g.matmul(dy, g.transpose(wt, [1, 0])), null, null, null];
  },
};

function keepShape(g: GraphBuilder, n: Node): number[] {
  const axes = intsOf(g, inp(n, 1));
  return inp(n, A).shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

function reduceBack(g: GraphBuilder, n: Node, dy: Value, scale: number): Value {
  const x = inp(n, A);
  const d = g.expand(g.reshape(dy, keepShape(g, n)), x.shape);
  return scale === 1 ? d : g.mul(d, scale);
}

function arange(g: GraphBuilder, n: number, shape: number[]): Value {
  return g.constant(
    BigInt64Array.from({ length: n }, (_, i) => BigInt(i)),
    shape,
    'int64',
    'range',
  );
}

/** Conv with stride == kernel and no padding (patch embedding), as the matmul it is (im2col without overlap) */
function convVjp(g: GraphBuilder, n: Node, dy: Value, need: boolean[]): Array<Value | null> {
  const x = inp(n, 0),
    w = inp(n, 1);
  const [N, C, H, W] = x.shape,
    [M, , kh, kw] = w.shape;
  const strides = n.attrs.strides as number[],
    pads = n.attrs.pads as number[];
  if (strides[0] !== kh || strides[1] !== kw || pads.some((p) => p !== 0) || H % kh || W % kw) {
    throw new GraphError('Conv: only non-overlapping patch convolutions (stride == kernel, no padding) are differentiable');
  }
  const oh = H / kh,
    ow = W / kw,
    P = N * oh * ow,
    F = C * kh * kw;
  const dyMat = g.reshape(g.transpose(dy, [0, 2, 3, 1]), [P, M]);
  const res: Array<Value | null> = [null, null, null];
  if (need[0]) {
    const dp = g.matmul(dyMat, g.reshape(w, [M, F])); // [P, F]
    const six = g.transpose(g.reshape(dp, [N, oh, ow, C, kh, kw]), [0, 3, 1, 4, 2, 5]);
    res[0] = g.reshape(six, [N, C, H, W]);
  }
  if (need[1]) {
    const patches = g.reshape(g.transpose(g.reshape(x, [N, C, oh, kh, ow, kw]), [0, 2, 4, 1, 3, 5]), [P, F]);
    res[1] = g.reshape(g.matmul(g.transpose(dyMat, [1, 0]), patches), w.shape);
  }
  if (need[2]) res[2] = g.reduceSum(dy, [0, 2, 3], false);
  return res;
}

export interface BackwardSpec {
  /** a scalar output, or outputs weighted by new same-shaped inputs `seed_<name>` (the objective Σ <seed, y>) */
  objective: { scalar: Value } | { weighted: Value[] };
  /** the graph inputs to differentiate with respect to */
  wrt: Value[];
  /** also return these forward values (e.g. the outputs whose weights are the seeds) */
  keep?: Value[];
}

export interface Backward {
  graph: GraphBuilder;
  /** gradient output name for each wrt input name */
  grads: Record<string, string>;
  /** seed input name for each weighted output name */
  seeds: Record<string, string>;
}

/** Emit the backward graph (forward recomputed inside it) for `spec` over `forward`. */
export function buildBackward(forward: GraphBuilder, spec: BackwardSpec): Backward {
  const g = forward.cloneForward();
  const seeds: Record<string, string> = {};
  const contrib = new Map<string, Value[]>();
  const push = (v: Value, d: Value) => {
    const l = contrib.get(v.name);
    if (l) l.push(d);
    else contrib.set(v.name, [d]);
  };

  if ('scalar' in spec.objective) {
    const y = spec.objective.scalar;
    if (numel(y.shape) !== 1) throw new GraphError(`objective ${y.name} must be a scalar, has shape [${y.shape}]`);
    push(y, g.reshape(g.scalar(1, y.dtype), y.shape));
  } else {
    for (const y of spec.objective.weighted) {
      const s = g.input(`seed_${y.name}`, y.dtype, y.shape);
      seeds[y.name] = s.name;
      push(y, s);
    }
  }

  // which values depend on a wrt input (only those need a gradient)
  const requires = new Set(spec.wrt.map((v) => v.name));
  for (const n of forward.nodes)
    if (n.inputs.some((x) => x && requires.has(x.name))) n.outputs.forEach((o) => requires.add(o.name));

  for (let k = forward.nodes.length - 1; k >= 0; k--) {
    const n = forward.nodes[k];
    const outGrads = n.outputs.map((o) => contrib.get(o.name));
    if (!outGrads[0]) continue;
    if (n.outputs.length !== 1) throw new GraphError(`${n.op}: multi-output nodes are not differentiable here`);
    const need = n.inputs.map((x) => !!x && requires.has(x.name) && isFloat(x.dtype));
    if (!need.some(Boolean)) continue;
    const rule = VJP[n.op];
    if (!rule) throw new GraphError(`no VJP rule for ${n.op} (node output ${n.outputs[0].name})`);
    const dy = sumAll(g, outGrads[0]);
    const dx = rule(g, n, dy, need);
    n.inputs.forEach((x, i) => {
      if (x && need[i] && dx[i]) push(x, dx[i] as Value);
    });
  }

  const grads: Record<string, string> = {};
  for (const v of spec.wrt) {
    const l = contrib.get(v.name);
    // an input the objective does not reach gets an exact zero gradient
    const d = l ? sumAll(g, l) : g.zeros(v.shape, v.dtype as DType);
    grads[v.name] = g.output(d.name === v.name ? g.identity(d) : d, `grad_${v.name}`).name;
  }
  for (const v of spec.keep ?? []) g.output(v);
  return { graph: g, grads, seeds };
}

function sumAll(g: GraphBuilder, xs: Value[]): Value {
  let acc = xs[0];
  for (let i = 1; i < xs.length; i++) acc = g.add(acc, xs[i]);
  return acc;
}
