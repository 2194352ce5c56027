/**
 * Transformer layers as compositions of IR operators, so the autodiff differentiates them with the per-op
 * rules. Weights are graph inputs in HF layout (Linear: [out, in]); LoRA follows PEFT: y = x Wᵀ + b +
 * (α/r)·(x Aᵀ) Bᵀ with A [r, in], B [out, r].
 */
import type { Value } from './ir.js';
import type { GraphBuilder } from './ops.js';

/** a frozen linear layer stored as int4 MatMulNBits blocks */
export interface Int4Linear {
  bq: Value;
  scales: Value;
  zeroPoints: Value | null;
  N: number;
  K: number;
  blockSize: number;
}

export interface LinearWeights {
  /** [out, in] float, or an int4 frozen weight */
  weight: Value | Int4Linear;
  bias?: Value | null;
  lora?: { A: Value; B: Value; scale: number } | null;
}

const isInt4 = (w: Value | Int4Linear): w is Int4Linear => (w as Int4Linear).bq !== undefined;

export function linear(g: GraphBuilder, x: Value, p: LinearWeights): Value {
  let y: Value;
  if (isInt4(p.weight)) {
    y = g.matMulNBits(x, p.weight.bq, p.weight.scales, p.weight.zeroPoints, {
      K: p.weight.K,
      N: p.weight.N,
      blockSize: p.weight.blockSize,
    });
  } else {
    y = g.matmul(x, g.transpose(p.weight, [1, 0]));
  }
  if (p.bias) y = g.add(y, p.bias);
  if (p.lora) {
    const down = g.matmul(x, g.transpose(p.lora.A, [1, 0]));
    y = g.add(y, g.mul(g.matmul(down, g.transpose(p.lora.B, [1, 0])), p.lora.scale));
  }
  return y;
}

/** RMSNorm as HF Llama/Qwen2: w · x / sqrt(mean(x²) + eps) */
export function rmsNorm(g: GraphBuilder, x: Value, w: Value, eps: number): Value {
  const ms = g.reduceMean(g.mul(x, x), [-1]);
  return g.mul(g.div(x, g.sqrt(g.add(ms, eps))), w);
}

/** LayerNorm as a composition (SigLIP): (x - μ) / sqrt(σ² + eps) · w + b */
export function layerNorm(g: GraphBuilder, x: Value, w: Value, b: Value, eps: number): Value {
  const mu = g.reduceMean(x, [-1]);
  const xc = g.sub(x, mu);
  const v = g.reduceMean(g.mul(xc, xc), [-1]);
  return g.add(g.mul(g.div(xc, g.sqrt(g.add(v, eps))), w), b);
}

export function silu(g: GraphBuilder, x: Value): Value {
  return g.mul(x, g.sigmoid(x));
}

/** GELU, tanh approximation (gelu_pytorch_tanh) */
export function geluTanh(g: GraphBuilder, x: Value): Value {
  const inner = g.mul(g.add(x, g.mul(g.mul(g.mul(x, x), x), 0.044715)), Math.sqrt(2 / Math.PI));
  return g.mul(g.mul(x, 0.5), g.add(g.tanh(inner), 1));
}

/** GELU, exact (erf) */
export function geluErf(g: GraphBuilder, x: Value): Value {
  return g.mul(g.mul(x, 0.5), g.add(g.erf(g.mul(x, Math.SQRT1_2)), 1));
}

/** rotary embedding as HF's rotate_half: x·cos + [-x2, x1]·sin, x [..., T, D], cos/sin [T, D] */
export function rope(g: GraphBuilder, x: Value, cos: Value, sin: Value): Value {
  const D = x.shape[x.shape.length - 1],
    h = D / 2;
  const x1 = g.slice(x, [0], [h], [-1]),
    x2 = g.slice(x, [h], [D], [-1]);
  const rot = g.concat([g.neg(x2), x1], -1);
  return g.add(g.mul(x, cos), g.mul(rot, sin));
}

/**
 * RoPE tables for positions [T] (they may restart: packed sequences), as HF builds them: frequency i of
 * head_dim/2 is `invFreq[i]` (default: 1 / theta^(2i/headDim); a scaled variant passes its own table), and
 * both halves of a head share it (rotate_half layout)
 */
export function ropeTables(
  positions: ArrayLike<number>,
  headDim: number,
  theta: number | ArrayLike<number>,
): { cos: Float32Array; sin: Float32Array } {
  const T = positions.length,
    h = headDim / 2;
  const inv = typeof theta === 'number' ? Array.from({ length: h }, (_, i) => 1 / theta ** ((2 * i) / headDim)) : theta;
  if (inv.length !== h) throw new Error(`internal: ${inv.length} RoPE frequencies for head_dim ${headDim}`);
  const cos = new Float32Array(T * headDim),
    sin = new Float32Array(T * headDim);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < h; i++) {
      const a = positions[t] * inv[i];
      cos[t * headDim + i] = cos[t * headDim + i + h] = Math.cos(a);
      sin[t * headDim + i] = sin[t * headDim + i + h] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/** [B, T, H·D] -> [B, H, T, D] */
export function splitHeads(g: GraphBuilder, x: Value, heads: number): Value {
  const [B, T, HD] = x.shape;
  return g.transpose(g.reshape(x, [B, T, heads, HD / heads]), [0, 2, 1, 3]);
}

/** [B, H, T, D] -> [B, T, H·D] */
export function mergeHeads(g: GraphBuilder, x: Value): Value {
  const [B, H, T, D] = x.shape;
  return g.reshape(g.transpose(x, [0, 2, 1, 3]), [B, T, H * D]);
}

/**
 * softmax(q kᵀ / √d + mask) v with an explicit additive mask [.., Tq, Tk] (0 or a large negative), and
 * grouped-query attention: k/v have Hkv heads, each shared by H/Hkv query heads.
 */
export function attention(g: GraphBuilder, q: Value, k: Value, v: Value, mask: Value | null): Value {
  const [B, H, , D] = q.shape,
    Hkv = k.shape[1],
    Tk = k.shape[2];
  const repeat = (x: Value) => {
    if (Hkv === H) return x;
    const e = g.expand(g.reshape(x, [B, Hkv, 1, Tk, D]), [B, Hkv, H / Hkv, Tk, D]);
    return g.reshape(e, [B, H, Tk, D]);
  };
  let s = g.mul(g.matmul(q, g.transpose(repeat(k), [0, 1, 3, 2])), 1 / Math.sqrt(D));
  if (mask) s = g.add(s, mask);
  return g.matmul(g.softmax(s, -1), repeat(v));
}

/** the additive causal mask [T, T]: 0 on and below the diagonal, -1e9 above */
export function causalMask(T: number): Float32Array {
  const m = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) m[i * T + j] = -1e9;
  return m;
}

export interface DecoderLayerWeights {
  inputNorm: Value;
  postNorm: Value;
  q: LinearWeights;
  k: LinearWeights;
  v: LinearWeights;
  o: LinearWeights;
  gate: LinearWeights;
  up: LinearWeights;
  down: LinearWeights;
}

/** one Llama/Qwen2 decoder layer: pre-norm attention with RoPE, then a SwiGLU MLP, each with a residual */
export function decoderLayer(
  g: GraphBuilder,
  x: Value,
  w: DecoderLayerWeights,
  c: { heads: number; kvHeads: number; eps: number; cos: Value; sin: Value; mask: Value | null },
): Value {
  const h = rmsNorm(g, x, w.inputNorm, c.eps);
  const q = rope(g, splitHeads(g, linear(g, h, w.q), c.heads), c.cos, c.sin);
  const k = rope(g, splitHeads(g, linear(g, h, w.k), c.kvHeads), c.cos, c.sin);
  const v = splitHeads(g, linear(g, h, w.v), c.kvHeads);
  const x1 = g.add(x, linear(g, mergeHeads(g, attention(g, q, k, v, c.mask)), w.o));
  const h2 = rmsNorm(g, x1, w.postNorm, c.eps);
  const mlp = linear(g, g.mul(silu(g, linear(g, h2, w.gate)), linear(g, h2, w.up)), w.down);
  return g.add(x1, mlp);
}

/** log p(target_t) for every position: log-softmax over the vocabulary, then a GatherElements pick */
export function tokenLogprobs(g: GraphBuilder, logits: Value, targets: Value): Value {
  const lp = g.logSoftmax(logits, -1);
  const picked = g.gatherElements(lp, g.reshape(targets, [...targets.shape, 1]), -1);
  return g.reshape(picked, targets.shape);
}
