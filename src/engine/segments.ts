/**
 * The model cut into segments, each a forward graph and (built on demand) its backward graph:
 *   vision  pixels -> image features            (the tower: frozen, or with LoRA)
 *   embed   ids + image features -> hidden_0     (backward only to reach a trainable tower)
 *   layer   hidden_l -> hidden_{l+1}             (one graph for every LM layer; inputs named `layer.*`)
 *   head    hidden_L -> log p(targets)           (final norm + lm_head on the predicting positions only)
 * The backward pass runs layer by layer from the top, recomputing each layer from its stored input, so only
 * layer inputs are kept between the forward and the backward pass.
 */
import { type Backward, buildBackward } from '../onnx/autodiff.js';
import type { Value } from '../onnx/ir.js';
import { GraphBuilder } from '../onnx/ops.js';
import { type BuildOptions, type LoraInput, ParamResolver, type VlmSpec, embedTokens, headLogprobs, prefixes, textLayer,
  visionFeatures } from '../model/vlm.js';

export interface Segment {
  g: GraphBuilder;
  /** the output the next segment consumes */
  out: Value;
  /** differentiable inputs: the incoming activation (if any) and LoRA A/B */
  activationIn?: Value;
  lora: Map<string, { A: Value; B: Value }>;
}

export interface SegmentWithBackward extends Segment {
  backward: Backward;
}

export const LAYER_PREFIX = 'layer.';

/** graph input name `layer.X` -> the store name of layer l's X */
export function layerAlias(spec: VlmSpec, l: number): (input: string) => string {
  const p = `${prefixes(spec).text}.layers.${l}.`;
  return (input) => (input.startsWith(LAYER_PREFIX) ? p + input.slice(LAYER_PREFIX.length) : input);
}

export function visionSegment(spec: VlmSpec, nImages: number, o: BuildOptions): Segment {
  const g = new GraphBuilder(`vision_${nImages}`);
  const r = new ParamResolver(g, spec, o);
  const px = g.input('pixel_values', 'float32', [nImages, 3, spec.vision.imageSize, spec.vision.imageSize]);
  const out = g.output(visionFeatures(r, px), 'image_features');
  return { g, out, lora: r.lora };
}

export function embedSegment(spec: VlmSpec, L: number, nFeatures: number): Segment {
  const g = new GraphBuilder(`embed_${L}_${nFeatures}`);
  const r = new ParamResolver(g, spec, {});
  const ids = g.input('input_ids', 'int64', [1, L]);
  const feats = g.input('image_features', 'float32', [Math.max(1, nFeatures), spec.text.hidden]);
  const index = g.input('image_index', 'int64', [L]), mask = g.input('image_mask', 'bool', [L, 1]);
  const out = g.output(embedTokens(r, ids, feats, index, mask), 'hidden_out');
  return { g, out, activationIn: feats, lora: r.lora };
}

/**
 * One LM layer with generic input names; `lora` gives the rank and scale of each adapted module type
 * (`self_attn.q_proj`, ...), the same in every layer that carries LoRA.
 */
export function layerSegment(spec: VlmSpec, L: number, lora: Map<string, LoraInput> | null, int4: boolean,
  int4Block?: (K: number) => number): Segment {
  const g = new GraphBuilder(`layer_${L}_${lora ? 'lora' : 'frozen'}${int4 ? '_int4' : ''}`);
  const p0 = `${prefixes(spec).text}.layers.0.`;
  const rename = (n: string) => (n.startsWith(p0) ? LAYER_PREFIX + n.slice(p0.length) : n);
  const modules = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
  const r = new ParamResolver(g, spec, {
    rename,
    lora: lora ? new Map([...lora].map(([m, v]) => [p0 + m, v])) : null,
    int4: int4 ? new Set(modules.map((m) => p0 + m)) : undefined,
    int4Block: int4Block ? (_m, K) => int4Block(K) : undefined,
  });
  const hd = spec.text.headDim;
  const h = g.input('hidden_in', 'float32', [1, L, spec.text.hidden]);
  const cos = g.input('rope_cos', 'float32', [L, hd]), sin = g.input('rope_sin', 'float32', [L, hd]);
  const mask = g.input('attn_mask', 'float32', [L, L]);
  const out = g.output(textLayer(r, h, 0, { cos, sin, mask }), 'hidden_out');
  return { g, out, activationIn: h, lora: r.lora };
}

export function headSegment(spec: VlmSpec, L: number, R: number): Segment {
  const g = new GraphBuilder(`head_${L}_${R}`);
  const r = new ParamResolver(g, spec, {});
  const h = g.input('hidden_in', 'float32', [1, L, spec.text.hidden]);
  const predict = g.input('predict_index', 'int64', [R]), targets = g.input('targets', 'int64', [R]);
  const out = g.output(headLogprobs(r, h, predict, targets), 'logprobs');
  return { g, out, activationIn: h, lora: r.lora };
}

/** the segment's backward graph: gradients of <seed, out> for its activation input and LoRA */
export function withBackward(seg: Segment, needActivation: boolean): SegmentWithBackward {
  const wrt = [...(needActivation && seg.activationIn ? [seg.activationIn] : []), ...[...seg.lora.values()].flatMap((l) => [l.A, l.B])];
  return { ...seg, backward: buildBackward(seg.g, { objective: { weighted: [seg.out] }, wrt }) };
}
