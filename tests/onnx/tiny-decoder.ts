/**
 * A two-layer Llama-style decoder (RMSNorm, RoPE, GQA attention with an explicit causal mask, SwiGLU) with
 * PEFT-style LoRA on all seven linears of each layer, optionally with int4-frozen base linears. Used by the
 * Node and browser gradient tests and by `vco-lab bench ops`.
 */
import type { Tensor } from 'onnxruntime-common';
import { type Backward, buildBackward } from '../../src/onnx/autodiff.js';
import type { DType, TypedArray, Value } from '../../src/onnx/ir.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { numel } from '../../src/onnx/ir.js';
import {
  type DecoderLayerWeights,
  type Int4Linear,
  type LinearWeights,
  causalMask,
  decoderLayer,
  linear,
  rmsNorm,
  ropeTables,
  tokenLogprobs,
} from '../../src/onnx/nn.js';
import { GraphBuilder } from '../../src/onnx/ops.js';
import { quantizeInt4 } from '../../src/onnx/quant.js';
import { rng } from '../helpers.js';
import { randn, toTensor } from './gradcheck.js';

export interface TinyConfig {
  hidden: number;
  heads: number;
  kvHeads: number;
  inter: number;
  vocab: number;
  T: number;
  layers: number;
  r: number;
  alpha: number;
  int4: boolean;
  dtype: DType;
}

export const TINY: TinyConfig = {
  hidden: 32,
  heads: 4,
  kvHeads: 2,
  inter: 64,
  vocab: 24,
  T: 6,
  layers: 2,
  r: 2,
  alpha: 4,
  int4: false,
  dtype: 'float64',
};

type LinearName = 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down';

export function linearShape(c: TinyConfig, name: LinearName): [number, number] {
  const hd = c.hidden / c.heads;
  switch (name) {
    case 'q':
      return [c.heads * hd, c.hidden];
    case 'k':
    case 'v':
      return [c.kvHeads * hd, c.hidden];
    case 'o':
      return [c.hidden, c.heads * hd];
    case 'gate':
    case 'up':
      return [c.inter, c.hidden];
    case 'down':
      return [c.hidden, c.inter];
  }
}

export interface TinyDecoder {
  g: GraphBuilder;
  out: Value;
  lora: Value[];
  base: Value[];
  feeds: Record<string, TypedArray>;
}

export function buildTinyDecoder(c: TinyConfig, seed = 1): TinyDecoder {
  const g = new GraphBuilder('tiny_decoder');
  const r = rng(seed);
  const feeds: Record<string, TypedArray> = {};
  const arr = (xs: number[]) => (c.dtype === 'float64' ? Float64Array.from(xs) : Float32Array.from(xs));
  const input = (name: string, shape: number[], data: TypedArray, dtype: DType = c.dtype) => {
    feeds[name] = data;
    return g.input(name, dtype, shape);
  };
  const rand = (name: string, shape: number[], scale: number, offset = 0) =>
    input(name, shape, arr(randn(r, numel(shape)).map((x) => offset + scale * x)));
  const base: Value[] = [],
    lora: Value[] = [];
  const hd = c.hidden / c.heads;

  const ids = input(
    'input_ids',
    [1, c.T],
    BigInt64Array.from({ length: c.T }, () => BigInt(Math.floor(r() * c.vocab))),
    'int64',
  );
  const targets = input(
    'targets',
    [1, c.T],
    BigInt64Array.from({ length: c.T }, () => BigInt(Math.floor(r() * c.vocab))),
    'int64',
  );
  const { cos, sin } = ropeTables(
    Array.from({ length: c.T }, (_, i) => i),
    hd,
    10000,
  );
  const cosV = input('rope_cos', [c.T, hd], arr(Array.from(cos))),
    sinV = input('rope_sin', [c.T, hd], arr(Array.from(sin)));
  const mask = input('attn_mask', [c.T, c.T], arr(Array.from(causalMask(c.T))));
  const embed = rand('embed_tokens', [c.vocab, c.hidden], 0.5);
  base.push(embed);
  let x = g.gather(embed, ids, 0);

  for (let l = 0; l < c.layers; l++) {
    const p = `layers.${l}`;
    const lin = (name: LinearName): LinearWeights => {
      const [out, inn] = linearShape(c, name);
      const w = randn(r, out * inn).map((v) => v / Math.sqrt(inn));
      let weight: Value | Int4Linear;
      if (c.int4) {
        const q = quantizeInt4(w, out, inn, { blockSize: 32 });
        const nb = inn / 32;
        weight = {
          N: out,
          K: inn,
          blockSize: 32,
          bq: input(`${p}.${name}.qweight`, [out, nb, 16], q.packed, 'uint8'),
          scales: input(`${p}.${name}.scales`, [out * nb], Float32Array.from(q.scales), 'float32'),
          zeroPoints: input(`${p}.${name}.qzeros`, [out, Math.ceil(nb / 2)], q.zeroPoints!, 'uint8'),
        };
      } else {
        weight = input(`${p}.${name}.weight`, [out, inn], arr(w));
        base.push(weight);
      }
      const A = rand(`${p}.${name}.lora_A`, [c.r, inn], 1 / Math.sqrt(inn));
      const B = rand(`${p}.${name}.lora_B`, [out, c.r], 0.2);
      lora.push(A, B);
      return { weight, lora: { A, B, scale: c.alpha / c.r } };
    };
    const w: DecoderLayerWeights = {
      inputNorm: rand(`${p}.input_layernorm`, [c.hidden], 0.1, 1),
      postNorm: rand(`${p}.post_attention_layernorm`, [c.hidden], 0.1, 1),
      q: lin('q'),
      k: lin('k'),
      v: lin('v'),
      o: lin('o'),
      gate: lin('gate'),
      up: lin('up'),
      down: lin('down'),
    };
    base.push(w.inputNorm, w.postNorm);
    x = decoderLayer(g, x, w, { heads: c.heads, kvHeads: c.kvHeads, eps: 1e-5, cos: cosV, sin: sinV, mask });
  }
  const norm = rand('norm', [c.hidden], 0.1, 1);
  const head = rand('lm_head', [c.vocab, c.hidden], 1 / Math.sqrt(c.hidden));
  base.push(norm, head);
  const logits = linear(g, rmsNorm(g, x, norm, 1e-5), { weight: head });
  const out = g.output(tokenLogprobs(g, logits, targets), 'token_logprobs');
  return { g, out, lora, base, feeds };
}

/** the float32 backward graph of the block (gradients of Σ seed_t·log p(target_t) for every LoRA A and B) and its feeds */
export function blockBackward(int4: boolean): { decoder: TinyDecoder; bw: Backward; feeds: Record<string, TypedArray> } {
  const decoder = buildTinyDecoder({ ...TINY, int4, dtype: 'float32' });
  const bw = buildBackward(decoder.g, { objective: { weighted: [decoder.out] }, wrt: decoder.lora, keep: [decoder.out] });
  const feeds = { ...decoder.feeds, [bw.seeds[decoder.out.name]]: Float32Array.from(randn(rng(3), TINY.T)) };
  return { decoder, bw, feeds };
}

/** run the block's backward graph on a runtime; every output as float32 */
export async function runBlockBackward(rt: Runtime, int4: boolean): Promise<Record<string, Float32Array>> {
  const { bw, feeds } = blockBackward(int4);
  const s = await rt.session(bw.graph);
  const tensors: Record<string, Tensor> = {};
  for (const v of bw.graph.inputs) tensors[v.name] = toTensor(rt, v, feeds[v.name]);
  const out = await s.run(tensors);
  await s.release();
  return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, Float32Array.from(t.data as Float32Array)]));
}
