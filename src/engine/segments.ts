/**
 * The model cut into segments, each a forward graph and (built on demand) its backward graph, over a batch
 * of B rows of L tokens:
 *   vision  pixels [n,3,S,S] -> image features [n·T, D]    (the tower: frozen, or with LoRA)
 *   embed   ids [B,L] + image features -> hidden [B,L,D]   (backward only to reach a trainable tower)
 *   layer   hidden -> hidden                              (one graph for every LM layer; inputs named `layer.*`)
 *   head    hidden -> log p(targets) [R]                   (final norm + lm_head on the predicting positions only)
 * The segmented backward pass runs layer by layer from the top, recomputing each layer from its stored input,
 * so only layer inputs are kept between the forward and the backward pass.
 *
 * `fused` is the same builders composed into one graph (vision through head). It recomputes nothing, so it is
 * the plan for many short rows trained in every weight (the default model's SFT), where memory is no issue.
 */
import { type Backward, buildBackward } from '../onnx/autodiff.js';
import type { Value } from '../onnx/ir.js';
import { GraphBuilder } from '../onnx/ops.js';
import {
  type BuildOptions,
  type LoraInput,
  ParamResolver,
  type VlmSpec,
  embedTokens,
  headLogprobs,
  prefixes,
  textLayer,
  visionFeatures,
} from '../model/vlm.js';

export interface Segment {
  g: GraphBuilder;
  /** the output the next segment consumes */
  out: Value;
  /** differentiable inputs: the incoming activation (if any) and LoRA A/B */
  activationIn?: Value;
  lora: Map<string, { A: Value; B: Value }>;
  /** every weight input, by parameter name */
  weights: Map<string, Value>;
}

export interface SegmentWithBackward extends Segment {
  backward: Backward;
}

/** the shape of a batch as the graphs take it */
export interface BatchShape {
  /** rows */
  B: number;
  /** tokens per row (the longest row, rounded up; shorter rows are padded at the end) */
  L: number;
  /** scored tokens over the batch (padded with unused entries) */
  R: number;
}

export const LAYER_PREFIX = 'layer.';

/** graph input name `layer.X` -> the store name of layer l's X */
export function layerAlias(spec: VlmSpec, l: number): (input: string) => string {
  const p = `${prefixes(spec).text}.layers.${l}.`;
  return (input) => (input.startsWith(LAYER_PREFIX) ? p + input.slice(LAYER_PREFIX.length) : input);
}

/** the per-batch inputs every LM layer reads: RoPE tables [B,1,L,hd] and the additive mask [B,1,L,L] */
function layerInputs(g: GraphBuilder, spec: VlmSpec, { B, L }: BatchShape) {
  const hd = spec.text.headDim;
  return {
    cos: g.input('rope_cos', 'float32', [B, 1, L, hd]),
    sin: g.input('rope_sin', 'float32', [B, 1, L, hd]),
    mask: g.input('attn_mask', 'float32', [B, 1, L, L]),
  };
}

export function visionSegment(spec: VlmSpec, nImages: number, o: BuildOptions): Segment {
  const g = new GraphBuilder(`vision_${nImages}`);
  const r = new ParamResolver(g, spec, o);
  const px = g.input('pixel_values', 'float32', [nImages, 3, spec.vision.imageSize, spec.vision.imageSize]);
  const out = g.output(visionFeatures(r, px), 'image_features');
  return { g, out, lora: r.lora, weights: r.weights };
}

function embedInputs(g: GraphBuilder, { B, L }: BatchShape) {
  return {
    ids: g.input('input_ids', 'int64', [B, L]),
    index: g.input('image_index', 'int64', [B * L]),
    mask: g.input('image_mask', 'bool', [B * L, 1]),
  };
}

export function embedSegment(spec: VlmSpec, shape: BatchShape, nFeatures: number): Segment {
  const g = new GraphBuilder(`embed_${shape.B}x${shape.L}_${nFeatures}`);
  const r = new ParamResolver(g, spec, {});
  const e = embedInputs(g, shape);
  const feats = g.input('image_features', 'float32', [Math.max(1, nFeatures), spec.text.hidden]);
  const out = g.output(embedTokens(r, e.ids, feats, e.index, e.mask), 'hidden_out');
  return { g, out, activationIn: feats, lora: r.lora, weights: r.weights };
}

/** the LM linears of one layer, by module type */
export const LAYER_MODULES = [
  'self_attn.q_proj',
  'self_attn.k_proj',
  'self_attn.v_proj',
  'self_attn.o_proj',
  'mlp.gate_proj',
  'mlp.up_proj',
  'mlp.down_proj',
] as const;

/**
 * One LM layer with generic input names; `lora` gives the rank and scale of each adapted module type
 * (`self_attn.q_proj`, ...), the same in every layer that carries LoRA.
 */
export function layerSegment(
  spec: VlmSpec,
  shape: BatchShape,
  lora: ReadonlyMap<string, LoraInput> | null,
  int4: boolean,
  int4Block?: (K: number) => number,
): Segment {
  const g = new GraphBuilder(`layer_${shape.B}x${shape.L}_${lora ? 'lora' : 'frozen'}${int4 ? '_int4' : ''}`);
  const layer0 = `${prefixes(spec).text}.layers.0.`;
  const rename = (n: string) => (n.startsWith(layer0) ? LAYER_PREFIX + n.slice(layer0.length) : n);
  const r = new ParamResolver(g, spec, {
    rename,
    lora: lora ? new Map([...lora].map(([m, v]) => [layer0 + m, v])) : null,
    int4: int4 ? new Set(LAYER_MODULES.map((m) => layer0 + m)) : undefined,
    int4Block: int4Block ? (_m, K) => int4Block(K) : undefined,
  });
  const h = g.input('hidden_in', 'float32', [shape.B, shape.L, spec.text.hidden]);
  const out = g.output(textLayer(r, h, 0, layerInputs(g, spec, shape)), 'hidden_out');
  return { g, out, activationIn: h, lora: r.lora, weights: r.weights };
}

function headInputs(g: GraphBuilder, { R }: BatchShape) {
  return { predict: g.input('predict_index', 'int64', [R]), targets: g.input('targets', 'int64', [R]) };
}

export function headSegment(spec: VlmSpec, shape: BatchShape): Segment {
  const g = new GraphBuilder(`head_${shape.B}x${shape.L}_${shape.R}`);
  const r = new ParamResolver(g, spec, {});
  const h = g.input('hidden_in', 'float32', [shape.B, shape.L, spec.text.hidden]);
  const { predict, targets } = headInputs(g, shape);
  const out = g.output(headLogprobs(r, h, predict, targets), 'logprobs');
  return { g, out, activationIn: h, lora: r.lora, weights: r.weights };
}

/**
 * The whole model in one graph: pixel_values [nImages,3,S,S] and every input of embed, layer and head; output
 * `logprobs` [R]. Its weights and LoRA are named by parameter (no layer aliasing).
 */
export function fusedSegment(spec: VlmSpec, shape: BatchShape, nImages: number, o: BuildOptions): Segment {
  const g = new GraphBuilder(`${spec.family}_fused_${shape.B}x${shape.L}_${nImages}_${shape.R}`);
  const r = new ParamResolver(g, spec, o);
  const px = g.input('pixel_values', 'float32', [nImages, 3, spec.vision.imageSize, spec.vision.imageSize]);
  const e = embedInputs(g, shape);
  const c = layerInputs(g, spec, shape);
  const { predict, targets } = headInputs(g, shape);
  let h = embedTokens(r, e.ids, visionFeatures(r, px), e.index, e.mask);
  for (let l = 0; l < spec.text.layers; l++) h = textLayer(r, h, l, c);
  const out = g.output(headLogprobs(r, h, predict, targets), 'logprobs');
  return { g, out, lora: r.lora, weights: r.weights };
}

/**
 * the segment's backward graph: gradients of <seed, out> for its activation input (`activation`) and its LoRA,
 * or (`allWeights`) every weight it reads; `keepOutput` also returns the forward output
 */
export function withBackward(
  seg: Segment,
  o: { activation?: boolean; allWeights?: boolean; keepOutput?: boolean } = {},
): SegmentWithBackward {
  const params = o.allWeights ? [...seg.weights.values()] : [...seg.lora.values()].flatMap((l) => [l.A, l.B]);
  const wrt = [...(o.activation && seg.activationIn ? [seg.activationIn] : []), ...params];
  return {
    ...seg,
    backward: buildBackward(seg.g, { objective: { weighted: [seg.out] }, wrt, keep: o.keepOutput ? [seg.out] : [] }),
  };
}
